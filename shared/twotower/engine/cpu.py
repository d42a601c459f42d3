"""The onnx engine's runtime and precision for the CPU it runs on, chosen at start-up.

`rule`: documents run the fp32 graphs on OpenVINO (faster than ONNX Runtime fp32, without int8's
cost in ranking quality; OpenVINO computes in bfloat16 on a CPU with AMX or AVX-512 BF16, in f32
elsewhere); queries run the int8 graphs on ONNX Runtime (the fastest single query). On an AVX2-only
CPU too, where f32 documents are slowest: int8 document vectors lower served nDCG@10 by more than
0.002, the most a speed-up may cost (docs/benchmarks.md, engines and their defaults).
`python -m bench.engines` measures every variant beside the rule's choice. A setting that names a
variant or backend wins over the rule (`auto`, the services' default, asks for it). The choice is
logged and, where prometheus_client is installed (the services), exported as the gauge
`twotower_engine_choice`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)

Variant = Literal["fp32", "int8"]
Backend = Literal["onnxruntime", "openvino"]
AUTO = "auto"
BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})
VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
REPORTED_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


@dataclass(frozen=True)
class CpuFeatures:
    model: str
    flags: frozenset[str]

    @classmethod
    def read(cls, cpuinfo: str | Path = "/proc/cpuinfo") -> CpuFeatures:
        """The first processor's model name and flags; none where the file is missing (not Linux)."""
        model, flags = "unknown", frozenset[str]()
        try:
            text = Path(cpuinfo).read_text()
        except OSError:
            return cls(model, flags)
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown":
                model = value.strip()
            elif key.strip() == "flags":
                flags = frozenset(value.split())
                break
        return cls(model, flags)

    @property
    def bf16(self) -> bool:
        return bool(self.flags & BF16_FLAGS)

    @property
    def level(self) -> str:
        """The CPU's class: bf16, vnni (AVX-512 VNNI or AVX-VNNI) or avx2 (neither)."""
        return "bf16" if self.bf16 else "vnni" if self.flags & VNNI_FLAGS else "avx2"

    def summary(self) -> dict[str, Any]:
        flags = [f for f in REPORTED_FLAGS if f in self.flags]
        return {"model": self.model, "level": self.level, "flags": flags}


@dataclass(frozen=True)
class Choice:
    tower: str
    variant: Variant
    backend: Backend
    threads: int
    level: str  # the CPU's class (CpuFeatures.level)
    source: str  # "rule" or "setting"

    @property
    def precision(self) -> str:
        """int8, fp32, or bf16: OpenVINO runs the fp32 graphs in bfloat16 where the CPU has it."""
        if self.variant == "int8":
            return "int8"
        return "bf16" if self.backend == "openvino" and self.level == "bf16" else "fp32"

    @property
    def labels(self) -> tuple[str, ...]:
        """The gauge's labels: tower, engine, precision, threads, source, cpu."""
        return (self.tower, self.backend, self.precision, str(self.threads), self.source, self.level)


def rule(tower: str, features: CpuFeatures) -> tuple[Variant, Backend]:
    """(variant, backend) for `tower` on a CPU with `features` (OpenVINO picks bfloat16 or f32 itself)."""
    return ("int8", "onnxruntime") if tower == "query" else ("fp32", "openvino")


def choose(
    towers: Sequence[str], variant: str, backend: str, threads: int, features: CpuFeatures | None = None
) -> Choice:
    """`variant` and `backend`, each where set, else the rule's for the first tower loaded now
    (documents before queries when both are: the heavier work)."""
    tower = "document" if "document" in towers or not towers else "query"
    features = features or CpuFeatures.read()
    auto_variant, auto_backend = rule(tower, features)
    chosen_variant: Variant = auto_variant if variant == AUTO else variant  # type: ignore[assignment]
    chosen_backend: Backend = auto_backend if backend == AUTO else backend  # type: ignore[assignment]
    source = "rule" if AUTO in (variant, backend) else "setting"
    return Choice(tower, chosen_variant, chosen_backend, threads, features.level, source)


_GAUGE: Any = None


def announce(choice: Choice) -> None:
    """Log the choice and set `twotower_engine_choice{tower, engine, precision, threads, source,
    cpu}` to 1 (when prometheus_client is installed: the services have it, training need not)."""
    global _GAUGE
    log.info("%s tower: %s %s, %s threads (%s, %s CPU)", *choice.labels)
    try:
        from prometheus_client import Gauge
    except ImportError:
        return
    if _GAUGE is None:
        _GAUGE = Gauge(
            "twotower_engine_choice",
            "The runtime, precision and threads a tower runs with (1 = in use), and whether the CPU "
            "rule or a setting chose them",
            ["tower", "engine", "precision", "threads", "source", "cpu"],
            multiprocess_mode="livemax",
        )
    _GAUGE.labels(*choice.labels).set(1)
