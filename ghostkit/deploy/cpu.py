"""What the CPU can do for inference, read once: vector width, 8-bit dot products (VNNI), AMX tiles; and the INT8
settings chosen from it.

x86 INT8 kernels (ONNX Runtime's MLAS, OpenVINO's oneDNN) multiply unsigned 8-bit activations by signed 8-bit
weights. With AVX-512 VNNI or AVX-VNNI (``vpdpbusd``) and with AMX-INT8 the products are summed straight into 32
bits. Without them (AVX2, AVX-512 F only) the kernels use ``vpmaddubsw``, which adds pairs of u8 x s8 products in a
saturating 16-bit lane: full-range weights overflow it, 7-bit weights cannot. So weights get 7 bits there and 8 bits
where the hardware sums in 32 bits (and on non-x86 CPUs, whose kernels do not have this problem). On a 2-core AVX2
virtual machine the demo digits classifier lost 5.0 top1 points in ONNX Runtime and 0.56 in OpenVINO with 8-bit
weights, none with 7-bit ones (docs/benchmarks.md). An INT8 export is meant for the kind of CPU it was made on.
"""

from __future__ import annotations

import dataclasses
import functools
import platform
import re

__all__ = ["CpuFeatures", "cpu_features", "Int8Plan", "int8_plan"]


@dataclasses.dataclass(frozen=True)
class CpuFeatures:
    """``x86``: an x86 CPU; ``avx2``, ``avx512``: its widest float vectors; ``vnni``: AVX-512 VNNI or AVX-VNNI;
    ``amx``: AMX-INT8 tiles; ``bf16``: AVX-512 BF16 or AMX-BF16; ``known``: the flags could be read."""

    x86: bool
    avx2: bool = False
    avx512: bool = False
    vnni: bool = False
    amx: bool = False
    bf16: bool = False
    known: bool = True

    @property
    def int8_dot(self) -> str:
        """The CPU's 8-bit multiply-accumulate: ``amx``, ``vnni``, ``16-bit pairs`` (x86 without VNNI) or ``native``
        (non-x86)."""
        if not self.x86:
            return "native"
        return "amx" if self.amx else "vnni" if self.vnni else "16-bit pairs"

    def describe(self) -> str:
        """One phrase for reports: ``"AVX-512, AVX-512 VNNI"``, ``"AVX2, no VNNI"``, ..."""
        if not self.x86:
            return platform.machine() or "non-x86"
        if not self.known:
            return "x86, flags unknown"
        parts = ["AVX-512" if self.avx512 else "AVX2" if self.avx2 else "SSE"]
        parts.append("AMX-INT8" if self.amx else "VNNI" if self.vnni else "no VNNI")
        return ", ".join(parts)


def _flags() -> set[str] | None:
    try:
        with open("/proc/cpuinfo") as f:
            found = re.search(r"^flags\s*:\s*(.*)$", f.read(), re.MULTILINE)
    except OSError:
        return None
    return set(found.group(1).split()) if found else None


@functools.cache
def cpu_features() -> CpuFeatures:
    """This CPU's features (Linux ``/proc/cpuinfo`` flags; elsewhere an x86 CPU counts as unknown, which picks the
    settings that are safe everywhere)."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"):
        return CpuFeatures(x86=False)
    flags = _flags()
    if flags is None:
        return CpuFeatures(x86=True, known=False)
    return CpuFeatures(x86=True, avx2="avx2" in flags, avx512="avx512f" in flags,
                       vnni="avx512_vnni" in flags or "avx_vnni" in flags, amx="amx_int8" in flags,
                       bf16="avx512_bf16" in flags or "amx_bf16" in flags)


@dataclasses.dataclass(frozen=True)
class Int8Plan:
    """The INT8 settings for one CPU. ``weight_bits``: 8, or 7 where the CPU sums 8-bit product pairs in 16 bits;
    ``ghost_channels``: ghost modules whose halves have at most this many channels lose their concat
    (:mod:`ghostkit.deploy.graph_ghost`): half the int32 lanes of the CPU's widest vector (8 with AVX-512, 4 with
    AVX2; 0, off, elsewhere), where doubling the channels costs the padded integer kernels nothing;
    ``cpu``: the features it was chosen for."""

    cpu: str
    int8_dot: str
    weight_bits: int
    ghost_channels: int = 0

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def int8_plan(features: CpuFeatures | None = None) -> Int8Plan:
    """The INT8 settings for ``features`` (default: this CPU's)."""
    f = features or cpu_features()
    lanes = 16 if f.avx512 else 8 if f.avx2 else 0  # int32 lanes per vector
    return Int8Plan(cpu=f.describe(), int8_dot=f.int8_dot, weight_bits=8 if f.int8_dot != "16-bit pairs" else 7,
                    ghost_channels=lanes // 2 if f.x86 and f.known else 0)
