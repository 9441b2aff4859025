"""scripts/v2_models.sh refuses bad arguments before it does anything; its dry-run copy."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "v2_models.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or not SCRIPT.is_file(),
                                reason="needs bash and scripts/v2_models.sh")


@pytest.mark.parametrize(("args", "env", "message"), [
    (["mr"], {}, "setup must be hr or lr, got mr"),
    (["hr"], {"DRY_RUN": "0"}, "DRY_RUN must be a positive integer (training steps), got 0"),
    (["lr"], {"FROM": "training"}, "FROM must be one of: prepare emulator error"),
    (["lr"], {"UNTIL": "emu"}, "UNTIL must be one of: prepare emulator error"),
])
def test_bad_arguments_exit_2_with_the_reason(args, env, message, tmp_path):
    proc = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          cwd=tmp_path, env={"PATH": "/usr/bin:/bin", **env})
    assert proc.returncode == 2 and message in proc.stdout
    assert not list(tmp_path.iterdir())  # nothing written


@pytest.mark.skipif(not Path("/usr/bin/time").is_file() or shutil.which("git") is None,
                    reason="needs /usr/bin/time and git")
def test_finished_steps_are_skipped_and_from_redoes_the_rest(tmp_path):
    """The pipeline against stub commands that only log their arguments."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(SCRIPT, repo / "scripts")
    (repo / "grid" / "4most-lte-v2").mkdir(parents=True)
    (repo / "grid" / "4most-lte-v2" / "shard_00000.h5").write_bytes(b"")
    (repo / "configs").mkdir()
    (repo / "configs" / "4most-hr-lte-v2.toml").write_text('[model]\nversion = "9.8.7"\n')
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    stubs = tmp_path / "bin"
    stubs.mkdir()
    log = tmp_path / "calls.log"
    for name in ("specutils-cinn", "python"):
        (stubs / name).write_text(f'#!/bin/sh\necho "{name} $*" >> {log}\n')
        (stubs / name).chmod(0o755)
    env = {"PATH": f"{stubs}:/usr/bin:/bin"}

    def run(**extra):
        log.write_text("")
        proc = subprocess.run(["bash", "scripts/v2_models.sh", "hr"], cwd=repo, text=True,
                              capture_output=True, env={**env, **extra})
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return log.read_text().splitlines(), proc.stdout

    calls, out = run()
    assert len(calls) == 11 and "pipeline is done" in out
    assert calls[0].startswith("specutils-cinn emulator prepare --shards grid/4most-lte-v2")
    assert "train configs/4most-hr-lte-v2.toml --checkpoint" in calls[6]
    assert "scripts/calibrate_mismatch.py --model work/models/4most-hr-lte-v2-cal" in calls[9]
    # the calibrated models carry the configuration's version
    assert all("--version 9.8.7" in calls[i] for i in (7, 8, 9))
    assert "--write work/models/4most-hr-lte-v2-mm" in calls[9]
    assert "--output docs/validation/4most-hr-lte-v2.rst" in calls[10]
    assert "--model work/models/4most-hr-lte-v2-mm" in calls[10]
    assert (repo / "work" / "v2-models" / "hr" / "train.done").read_text().strip()
    calls, out = run()
    assert calls == [] and out.count("done before") == 11
    (repo / "grid" / "4most-lte-v2" / "shard_00001.h5").write_bytes(b"")
    calls, out = run(FROM="fit_flag")
    assert [c.split()[1:3] for c in calls] == [["calibrate", "fit-flag"],
                                               ["calibrate", "posterior"],
                                               ["scripts/calibrate_mismatch.py", "--model"],
                                               ["scripts/validation_report.py", "--model"]]
    assert "has 2 shards, 1 when 'prepare' ran" in out
    calls, out = run(FROM="posterior", UNTIL="posterior")
    assert [c.split()[1:3] for c in calls] == [["calibrate", "posterior"]]
    assert "stopped after posterior (UNTIL=posterior)" in out
    calls, out = run(UNTIL="continuum")          # a finished step stops the run too
    assert calls == [] and "stopped after continuum" in out
