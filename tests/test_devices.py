"""Naming the CPU (`specutils_cinn.devices.cpu_name`) from /proc/cpuinfo, and its fallbacks.

Device choice and bfloat16 detection are tested with the estimator (tests/test_estimator.py,
tests/flows/test_sampling_precision.py).
"""

import platform

import pytest

from specutils_cinn import devices
from specutils_cinn.devices import cpu_name

CPUINFO = """\
processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu vme avx512_bf16 amx_bf16

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
"""


def test_cpu_name_reads_the_first_model_name_line(tmp_path, monkeypatch):
    fake = tmp_path / "cpuinfo"
    fake.write_text(CPUINFO)
    monkeypatch.setattr(devices, "_CPUINFO", str(fake))
    assert cpu_name() == "Intel(R) Xeon(R) Platinum 8480+"
    # the same file is what has_bfloat16_hardware reads
    assert devices.has_bfloat16_hardware("cpu")


@pytest.mark.parametrize("content", [None, "processor\t: 0\nflags\t\t: fpu\n",
                                     "model name\t:\n"])
def test_cpu_name_falls_back_to_platform(tmp_path, monkeypatch, content):
    """No file (macOS, Windows), no ``model name`` line (ARM) or an empty one."""
    fake = tmp_path / "cpuinfo"
    if content is not None:
        fake.write_text(content)
    monkeypatch.setattr(devices, "_CPUINFO", str(fake))
    monkeypatch.setattr(platform, "processor", lambda: "")
    monkeypatch.setattr(platform, "machine", lambda: "arm64")
    assert cpu_name() == "arm64"
    monkeypatch.setattr(platform, "processor", lambda: "i386")
    assert cpu_name() == "i386"
    monkeypatch.setattr(platform, "processor", lambda: "")
    monkeypatch.setattr(platform, "machine", lambda: "")
    assert cpu_name() == "unknown CPU"
