"""`make bench` rewrites only its own section of docs/benchmarks.md and judges the engines right."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.load import percentiles
from bench.report import BEGIN, END, ratios, update_doc


def config(p50_c1: float, qps_c8: float, docs_per_s: float, errors: int = 0) -> dict[str, Any]:
    search = {
        "client": {"p50_ms": p50_c1, "p95_ms": p50_c1 * 1.2, "p99_ms": p50_c1 * 1.5},
        "server_took": {"p50_ms": p50_c1 - 1.0},
        "queries_per_s": 1000 / p50_c1,
        "errors": errors,
    }
    concurrent = {
        "client": {"p50_ms": 40.0, "p95_ms": 60.0, "p99_ms": 80.0},
        "queries_per_s": qps_c8,
        "errors": 0,
    }
    floor = {"total": {"p50_ms": p50_c1 / 1.2}, "encode": {"p50_ms": 1.0}, "chroma_query": {"p50_ms": 1.0}}
    return {
        "ingest": {"docs_per_s": docs_per_s, "errors": 0},
        "search": {"c1": search, "c8": concurrent},
        "floor": floor,
        "http_p50_over_floor": 1.2,
        "peak_rss_mb": {n: {"main": 50.0, "worker1": 300.0} for n in ("query", "ingest", "chroma")},
    }


def results(configs: dict[str, Any]) -> dict[str, Any]:
    return {
        "date": "2026-11-27 06:00 UTC",
        "machine": {"cpus": 2},
        "load_average_start": [0.1, 0.1, 0.1],
        "load_average_end": [0.2, 0.1, 0.1],
        "model_version": "cede88c7ac25",
        "workload": {
            "documents": 256,
            "corpus": "scifact",
            "batch_size": 64,
            "queries": 200,
            "queries_concurrent": 400,
            "k": 10,
        },
        "services": {"query_workers": 2, "ingest_workers": 1},
        "duration_s": 300.0,
        "configs": configs,
        "ratios": ratios(configs),
    }


def test_ratios_are_onnx_over_torch_and_flag_missed_targets() -> None:
    judged = ratios({"torch": config(20.0, 50.0, 20.0), "onnx": config(10.0, 120.0, 25.0, errors=1)})
    assert (
        judged["search_p50_c1"] == 0.5
        and judged["throughput_c8"] == 2.4
        and judged["ingest_docs_per_s"] == 1.25
    )
    assert judged["errors"] == 1
    lines = "\n".join(judged["lines"])
    assert "search_p50_c1: 0.5 (meets" in lines and "ingest_docs_per_s: 1.25 (MISSES" in lines
    assert "errors: 1 (MISSES" in lines


def test_the_section_is_replaced_in_place_and_the_rest_kept(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n## Retrieval quality\n\nkept above\n")
    first = results({"torch": config(20.0, 50.0, 20.0), "onnx": config(10.0, 120.0, 30.0)})
    update_doc(doc, first, Path("runs/bench.json"))
    doc.write_text(doc.read_text() + "\n## Another team's section\n\nkept below\n")
    second = results({"torch": config(30.0, 40.0, 10.0), "onnx": config(12.0, 100.0, 20.0)})
    update_doc(doc, second, Path("runs/bench.json"))
    text = doc.read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    assert "kept above" in text and "kept below" in text
    assert text.index("kept above") < text.index(BEGIN) < text.index(END) < text.index("kept below")
    section = text[text.index(BEGIN) : text.index(END)]
    assert "| ingestion, docs/s | 10.0 | 20.0 |" in section  # the second run's numbers only
    assert "30.0" not in section.split("| ingestion")[1].split("\n")[0]


def test_the_ms_over_the_floor_are_split_at_took_ms(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n")
    # torch: floor 20 / 1.2 = 16.67 ms, took_ms 19.0, HTTP 20.0; onnx: floor 8.33, HTTP 10.0, and no
    # search succeeded, so its took_ms p50 is NaN (bench.load.percentiles of nothing)
    run = results({"torch": config(20.0, 50.0, 20.0), "onnx": config(10.0, 120.0, 30.0)})
    run["configs"]["onnx"]["search"]["c1"]["server_took"] = percentiles([])
    update_doc(doc, run, Path("runs/bench.json"))
    row = next(line for line in doc.read_text().splitlines() if line.startswith("| ms over the floor"))
    assert row.endswith("| 2.33 + 1.00 | 1.67 |")  # no took_ms to split at: the whole difference
