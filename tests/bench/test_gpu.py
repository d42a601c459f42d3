"""`make bench-gpu` (bench/gpu.py): on this CPU-only machine it must say so and succeed, and its
measuring code (which only a GPU machine runs for real) must work end to end on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.gpu import EAGER_QUERIES, SENTENCE_TRANSFORMERS, SERVED, gpu_available, main

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(gpu_available() is not None, reason="a GPU is present: the real benchmark would run")
def test_without_a_gpu_it_says_so_and_exits_0() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.gpu"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "no GPU" in result.stdout + result.stderr


@pytest.mark.slow  # two model loads and an export check
def test_the_measuring_code_runs_on_the_cpu(published_base: Path, scifact_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    argv = ["--device", "cpu", "--corpus", str(scifact_dir), "--weights-dir", str(published_base)]
    argv += ["--docs", "12", "--request-size", "5", "--queries", "4", "--reference", "8", "--out", str(out)]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    assert report["documents"] == 12
    runs = report["runs"]
    assert set(runs) == {SERVED, EAGER_QUERIES, "torch fp32", SENTENCE_TRANSFORMERS, "onnx fp32"}
    for run in runs.values():
        assert run["cosine_ok"] and run["min_cosine_documents"] >= 0.999, run
    assert runs[SERVED]["query_graph_shapes"] == []  # CUDA graphs only on a GPU
