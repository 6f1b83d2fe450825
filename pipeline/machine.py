"""The machine a measurement or a training run belongs to, from /proc/cpuinfo read once.

The model name alone is often too vague (a cloud VM reports "Intel(R) Xeon(R) Processor"),
and the same code, data and seed gave other weights on another CPU: records keep the
family/model/stepping and a hash of the instruction-set flags too, so two records can be
checked to come from the same kind of CPU. deploy/onnx_latency.py repeats the name lookup on
purpose: it is copied alone to the target device (numpy + onnxruntime only).
"""

from __future__ import annotations

import hashlib
import os
import platform
from functools import cache
from typing import Any

VNNI = (("avx512_vnni", "AVX512-VNNI"), ("avx_vnni", "AVX-VNNI"))


@cache
def cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ({} where there is none: not Linux)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    if fields:
                        break  # the first processor is enough: they are alike
                    continue
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo, else what `platform` knows."""
    info = cpuinfo()
    for key in ("model name", "Model", "Hardware"):
        if info.get(key):
            return info[key]
    return platform.processor() or platform.machine()


def vnni() -> str:
    """The CPU's 8-bit dot-product instructions, which INT8 speed depends on: "AVX512-VNNI",
    "AVX-VNNI", both, "no VNNI", or "VNNI unknown" where /proc/cpuinfo has no flags (not Linux x86)."""
    flags = cpuinfo().get("flags")
    if flags is None:
        return "VNNI unknown"
    found = [name for flag, name in VNNI if flag in flags.split()]
    return ", ".join(found) or "no VNNI"


def fingerprint() -> dict[str, Any]:
    """CPU name, family/model/stepping, a short hash of its flags, VNNI and core count."""
    info = cpuinfo()
    flags = " ".join(sorted(info.get("flags", "").split()))
    family = "/".join(info.get(key, "?") for key in ("cpu family", "model", "stepping"))
    return {"cpu": cpu_name(), "family_model_stepping": family, "vnni": vnni(), "cores": os.cpu_count(),
            "flags_hash": hashlib.sha256(flags.encode()).hexdigest()[:12] if flags else None}
