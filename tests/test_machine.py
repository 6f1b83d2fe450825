"""The machine fingerprint records and timings carry (pipeline/machine.py)."""

from __future__ import annotations

import re

import pytest

from pipeline import machine


@pytest.fixture
def fake_cpuinfo(tmp_path, monkeypatch):
    """Point /proc/cpuinfo reads at a file holding `text`."""
    def use(text: str) -> None:
        path = tmp_path / "cpuinfo"
        path.write_text(text)
        real_open = open
        monkeypatch.setattr("builtins.open", lambda f, *a, **k: real_open(path if f == "/proc/cpuinfo" else f, *a, **k))
        machine.cpuinfo.cache_clear()
    yield use
    machine.cpuinfo.cache_clear()


TWO_CORES = """processor\t: 0
cpu family\t: 6
model\t\t: 167
model name\t: Intel(R) Xeon(R) Processor
stepping\t: 1
flags\t\t: fpu sse avx512_vnni avx_vnni

processor\t: 1
cpu family\t: 6
model\t\t: 999
model name\t: another
flags\t\t: fpu
"""


def test_the_fingerprint_reads_the_first_processor(fake_cpuinfo):
    fake_cpuinfo(TWO_CORES)
    found = machine.fingerprint()
    assert found["cpu"] == "Intel(R) Xeon(R) Processor" and found["family_model_stepping"] == "6/167/1"
    assert found["vnni"] == "AVX512-VNNI, AVX-VNNI" and re.fullmatch(r"[0-9a-f]{12}", found["flags_hash"])


def test_other_flags_give_another_hash_and_no_vnni_is_said(fake_cpuinfo):
    fake_cpuinfo(TWO_CORES)
    first = machine.fingerprint()["flags_hash"]
    fake_cpuinfo(TWO_CORES.replace("avx512_vnni avx_vnni", "avx2"))
    assert machine.fingerprint()["flags_hash"] != first and machine.vnni() == "no VNNI"


def test_without_cpuinfo_the_fingerprint_still_builds(fake_cpuinfo):
    fake_cpuinfo("")
    assert machine.vnni() == "VNNI unknown" and machine.fingerprint()["flags_hash"] is None
