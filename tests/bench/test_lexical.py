"""`python -m bench.lexical` runs the hybrid mode's BM25 step on real SciFact texts, one fresh thread
per repetition, and reports one timing per repetition."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.lexical import main, measure


def test_one_timing_per_repetition(scifact_dir: Path) -> None:
    timings = measure(scifact_dir, queries=4, candidates=20, repeats=3)
    assert len(timings) == 3 and all(t > 0 for t in timings)


def test_the_command_reports_ms_per_search(scifact_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="bench.lexical")
    assert main(["--data", str(scifact_dir), "--queries", "3", "--candidates", "10", "--repeats", "1"]) == 0
    assert "ms per search" in caplog.text
