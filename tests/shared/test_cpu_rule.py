"""twotower.engine.cpu: the rule picks each tower's runtime and precision from the CPU's flags (read
from a cpuinfo file, so every branch runs on any machine), and a setting wins over it."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from twotower.engine.cpu import CpuFeatures, announce, choose

AVX2 = "fpu sse4_2 avx avx2 fma"
VNNI = AVX2 + " avx512f avx512_vnni"
AVX_VNNI = AVX2 + " avx_vnni"  # Alder Lake and later client chips: VNNI without AVX-512
BF16 = VNNI + " avx512_bf16"
AMX = VNNI + " amx_tile amx_int8 amx_bf16"


def features(tmp_path: Path, flags: str) -> CpuFeatures:
    cpuinfo = tmp_path / "cpuinfo"
    processor = f"processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: {flags}\n\n"
    cpuinfo.write_text(processor + processor.replace(": 0", ": 1"))
    return CpuFeatures.read(cpuinfo)


@pytest.mark.parametrize(
    ("flags", "level", "document", "query"),
    [
        (AVX2, "avx2", ("fp32", "openvino", "fp32"), ("int8", "onnxruntime", "int8")),
        (VNNI, "vnni", ("fp32", "openvino", "fp32"), ("int8", "onnxruntime", "int8")),
        (AVX_VNNI, "vnni", ("fp32", "openvino", "fp32"), ("int8", "onnxruntime", "int8")),
        (BF16, "bf16", ("fp32", "openvino", "bf16"), ("int8", "onnxruntime", "int8")),
        (AMX, "bf16", ("fp32", "openvino", "bf16"), ("int8", "onnxruntime", "int8")),
        ("", "avx2", ("fp32", "openvino", "fp32"), ("int8", "onnxruntime", "int8")),
    ],
)
def test_rule_by_cpu_class(
    tmp_path: Path, flags: str, level: str, document: tuple[str, ...], query: tuple[str, ...]
) -> None:
    cpu = features(tmp_path, flags)
    assert cpu.level == level and cpu.model == "Test CPU"
    for towers, expected in (
        (("document",), document),
        (("query",), query),
        (("query", "document"), document),
    ):
        choice = choose(towers, "auto", "auto", 3, cpu)
        assert (choice.variant, choice.backend, choice.precision) == expected
        assert (choice.threads, choice.source, choice.level) == (3, "rule", level)


def test_a_setting_wins_over_the_rule(tmp_path: Path) -> None:
    bf16, avx2 = features(tmp_path, BF16), features(tmp_path, AVX2)
    pinned = choose(("document",), "fp32", "onnxruntime", 2, bf16)
    assert (pinned.variant, pinned.backend, pinned.precision, pinned.source) == (
        "fp32",
        "onnxruntime",
        "fp32",
        "setting",
    )
    # One of the two set: that one is kept, the rule fills in the other.
    half = choose(("query",), "fp32", "auto", 2, bf16)
    assert (half.variant, half.backend, half.source) == ("fp32", "onnxruntime", "rule")
    # ONNX Runtime named for documents: the rule keeps their fp32 graphs; OpenVINO without bf16: f32.
    assert choose(("document",), "auto", "onnxruntime", 2, bf16).precision == "fp32"
    assert choose(("document",), "auto", "openvino", 2, avx2).precision == "fp32"


def test_missing_cpuinfo_means_no_features(tmp_path: Path) -> None:
    cpu = CpuFeatures.read(tmp_path / "absent")
    assert (cpu.level, cpu.flags, cpu.summary()["flags"]) == ("avx2", frozenset(), [])


def test_the_choice_is_exported(tmp_path: Path) -> None:
    choice = choose(("document",), "auto", "auto", 4, features(tmp_path, BF16))
    announce(choice)
    labels = {
        "tower": "document",
        "engine": "openvino",
        "precision": "bf16",
        "threads": "4",
        "source": "rule",
        "cpu": "bf16",
    }
    assert REGISTRY.get_sample_value("twotower_engine_choice", labels) == 1.0
