"""scripts/v2_dry_run.sh refuses bad arguments before it does anything."""

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "v2_dry_run.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or not SCRIPT.is_file(),
                                reason="needs bash and scripts/v2_dry_run.sh")


@pytest.mark.parametrize(("args", "message"), [
    (["mr"], "setup must be hr or lr, got mr"),
    (["hr", "0"], "STEPS must be a positive integer, got 0"),
    (["lr", "1e3"], "STEPS must be a positive integer, got 1e3"),
])
def test_bad_arguments_exit_2_with_the_reason(args, message, tmp_path):
    proc = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 2 and message in proc.stdout
    assert not list(tmp_path.iterdir())  # nothing written
