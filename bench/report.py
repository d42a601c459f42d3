"""The benchmark's section of docs/benchmarks.md and the engine ratios it is judged by."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

BEGIN = "<!-- bench:engines:begin (written by `make bench`; edit bench/report.py instead) -->"
END = "<!-- bench:engines:end -->"

# What the engines are judged by: onnx against torch in the same run, and HTTP against the floor.
TARGETS = {
    "search_p50_c1": ("<=", 0.55),
    "throughput_c8": (">=", 2.0),
    "ingest_docs_per_s": (">=", 1.4),
    "http_p50_over_floor": ("<=", 1.3),
}


def _meets(value: float, target: tuple[str, float]) -> bool:
    op, bound = target
    return value <= bound if op == "<=" else value >= bound


def ratios(configs: dict[str, Any], base: str = "torch", new: str = "onnx") -> dict[str, Any]:
    """onnx / torch for the three speed rows, HTTP p50 / floor for onnx, total errors."""
    out: dict[str, Any] = {"errors": sum(_errors(c) for c in configs.values()), "lines": []}
    if base in configs and new in configs:
        b, n = configs[base], configs[new]
        concurrent = next(k for k in n["search"] if not k.startswith("c1"))
        out["search_p50_c1"] = round(
            n["search"]["c1"]["client"]["p50_ms"] / b["search"]["c1"]["client"]["p50_ms"], 3
        )
        out["throughput_c8"] = round(
            n["search"][concurrent]["queries_per_s"] / b["search"][concurrent]["queries_per_s"], 3
        )
        out["ingest_docs_per_s"] = round(n["ingest"]["docs_per_s"] / b["ingest"]["docs_per_s"], 3)
    if new in configs:
        out["http_p50_over_floor"] = configs[new]["http_p50_over_floor"]
    for key, target in TARGETS.items():
        if key in out:
            mark = "meets" if _meets(out[key], target) else "MISSES"
            out["lines"].append(f"{key}: {out[key]} ({mark} {target[0]} {target[1]})")
    out["lines"].append(f"errors: {out['errors']} ({'meets' if out['errors'] == 0 else 'MISSES'} == 0)")
    return out


def _errors(config: dict[str, Any]) -> int:
    return int(config["ingest"]["errors"]) + sum(int(s["errors"]) for s in config["search"].values())


def _rss(peaks: dict[str, float]) -> str:
    workers = [v for k, v in peaks.items() if k != "main"]
    if not workers:
        return f"{peaks.get('main', 0):.0f}"
    return f"{max(workers):.0f} per worker ×{len(workers)}"


def section(results: dict[str, Any], json_path: Path) -> str:
    configs = results["configs"]
    names = list(configs)
    concurrent = next(k for k in next(iter(configs.values()))["search"] if not k.startswith("c1"))
    cells: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("ingestion, docs/s", lambda c: f"{c['ingest']['docs_per_s']}"),
        ("`/search` c=1, p50 / p95 / p99 ms", lambda c: _lat(c["search"]["c1"])),
        ("`/search` c=1, queries/s", lambda c: f"{c['search']['c1']['queries_per_s']}"),
        (
            '`/search` c=1 `"mode": "hybrid"`, p50 / p95 / p99 ms',
            lambda c: _lat(c["search"]["c1_hybrid"]) if "c1_hybrid" in c["search"] else "—",
        ),
        (f"`/search` c={concurrent[1:]}, p50 / p95 / p99 ms", lambda c: _lat(c["search"][concurrent])),
        (f"`/search` c={concurrent[1:]}, queries/s", lambda c: f"{c['search'][concurrent]['queries_per_s']}"),
        ("errors (ingest + search)", lambda c: str(_errors(c))),
        (
            "in-process floor p50 ms (encode + Chroma)",
            lambda c: (
                f"{c['floor']['total']['p50_ms']} ({c['floor']['encode']['p50_ms']} + "
                f"{c['floor']['chroma_query']['p50_ms']})"
            ),
        ),
        ("HTTP p50 / floor p50", lambda c: f"{c['http_p50_over_floor']}×"),
        (
            "ms over the floor (c=1 p50s): in the search (`took_ms` − floor) + around it (HTTP − `took_ms`)",
            _over_floor,
        ),
        ("CPU ms per search (c=1): query service + Chroma", _cpu),
        ("peak RSS query, MiB", lambda c: _rss(c["peak_rss_mb"]["query"])),
        ("peak RSS ingest, MiB", lambda c: _rss(c["peak_rss_mb"]["ingest"])),
        ("peak RSS Chroma, MiB", lambda c: _rss(c["peak_rss_mb"]["chroma"])),
    ]
    rows = [(label, [cell(c) for c in configs.values()]) for label, cell in cells]
    w = results["workload"]
    s = results["services"]
    lines = [
        BEGIN,
        "## Serving speed by engine",
        "",
        f"One run of `make bench` on {results['date']}: {results['machine']['cpus']} CPUs "
        f"(load average {results['load_average_start']} at the start, {results['load_average_end']} at the end; "
        "other work on the machine skews every number, the ratios least). Each column started its own "
        f"Chroma and services under gunicorn ({s['query_workers']} query workers, {s['ingest_workers']} ingest "
        f"worker, default settings otherwise), serving version `{results['model_version']}`. "
        f"{w['documents']} {_corpus(w['corpus'])} documents posted in batches of {w['batch_size']}; "
        f"{w['queries']} queries one at a time, then {w['queries_concurrent']} from "
        f"{concurrent[1:]} concurrent clients, k={w['k']}, dense ranking (the towers' own; the hybrid row "
        f"adds BM25 over the candidates). Client-side latencies. Peak RSS is VmHWM per process "
        f"(gunicorn's master is not counted). Whole run: {results['duration_s']:.0f} s.",
        "",
        "| | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
        *[f"| {label} | " + " | ".join(values) + " |" for label, values in rows],
        "",
        "HTTP p50 / floor is 1 + the milliseconds serving adds over the floor: an engine with a faster "
        "floor and the same milliseconds added has the higher ratio.",
        "",
        "Ratios (onnx against torch, same run) and their targets:",
        "",
        *[f"- {line}" for line in results["ratios"]["lines"]],
        "",
        f"The configurations took turns, slice by slice, with all {len(names)} stacks up, so background load "
        "weighed on all alike. Command (JSON with every number, per-process memory included, in "
        f"`{json_path.name}`):",
        "",
        "```bash",
        "make bench        # python -m bench: publishes the base model to a temporary directory when weights/ has none",
        "```",
        END,
    ]
    return "\n".join(lines) + "\n"


def _over_floor(config: dict[str, Any]) -> str:
    """What serving adds to the floor, in ms, split at `took_ms`: in the search, then around it."""
    floor = config["floor"]["total"]["p50_ms"]
    c1 = config["search"]["c1"]
    took, http = c1["server_took"]["p50_ms"], c1["client"]["p50_ms"]
    if math.isnan(took):  # no search succeeded, so no `took_ms` to split at
        return f"{http - floor:.2f}"
    return f"{took - floor:.2f} + {http - took:.2f}"


def _cpu(config: dict[str, Any]) -> str:
    cpu = config.get("cpu_ms_per_search")
    return f"{cpu['query_service']} + {cpu['chroma']}" if cpu else "—"


def _corpus(name: str) -> str:
    path = Path(name)
    return path.parent.name if path.suffix == ".jsonl" else path.name


def _lat(s: dict[str, Any]) -> str:
    c = s["client"]
    return f"{c['p50_ms']} / {c['p95_ms']} / {c['p99_ms']}"


def update_doc(doc: Path, results: dict[str, Any], json_path: Path) -> None:
    """Replace this benchmark's section (between its markers), or append it."""
    replace_section(doc, BEGIN, END, section(results, json_path))


def replace_section(doc: Path, begin: str, end: str, new: str) -> None:
    """Put `new` in place of `doc`'s section between `begin` and `end`, or append it; keep the rest."""
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        text = head + new + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + new
    doc.write_text(text)
