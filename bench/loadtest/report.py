"""The load test's section of docs/benchmarks.md, between its own markers (rewritten on each run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.report import replace_section

BEGIN = "<!-- loadtest:begin -->"
END = "<!-- loadtest:end -->"


def section(r: dict[str, Any], json_path: Path) -> str:
    s, loader, load = r["search"], r["loader"], r["machine"]["load_avg_1_5_15_at_start"]
    lines = [
        BEGIN,
        "## Load test",
        "",
        f"`{r['command']}` (what `make loadtest` runs) at commit {r.get('commit', '?')}, {r['when']}: "
        "`make run`'s processes (fresh data directory), "
        f"{r['users']} locust clients posting `/search` back to back for {r['duration_s']} s while the loader "
        f"posted {loader['documents']:,} SciFact abstracts (batches of {loader['batch_size']}), /healthz of both "
        f"services probed every 100 ms. {r['machine']['cpus']} CPUs; load average at the start "
        f"{load[0]} / {load[1]} / {load[2]} (1/5/15 min){': shared with other jobs' if load[0] > 1.5 else ''}.",
        "",
        "| | result |",
        "|---|---|",
        f"| errors (search + loader + probes) | **{r['errors']}** |",
        f"| /search | {s['requests']:,} requests, {s['throughput_rps']} req/s, p50 {s['p50_ms']:g} ms, "
        f"p99 {s['p99_ms']:g} ms, max {s['max_ms']:g} ms |",
        f"| loader | {loader['documents']:,} documents in {loader['seconds']:g} s ({loader['docs_per_s']} docs/s), "
        f"exit {loader['exit_code']}; collection holds {loader['collection_count_after']} |",
    ]
    for name, h in r["healthz"].items():
        lines.append(
            f"| /healthz {name} | {h['probes']} probes, p50 {h['p50_ms']} ms, **p99 {h['p99_ms']} ms**, "
            f"max {h['max_ms']} ms, {h['errors']} errors |"
        )
    for name, m in r["rss"].items():
        lines.append(
            f"| RSS {name} ({m['processes']} process{'es' if m['processes'] > 1 else ''}) | "
            f"{m['after_warmup_mib']:g} MiB after warm-up → {m['end_mib']:g} MiB at the end ({m['growth']:+.1%}) |"
        )
    verdict = ", ".join(f"{k}: {'yes' if ok else 'NO'}" for k, ok in r["checks"].items())
    lines += [
        "",
        f"Checks: {verdict}. Latency percentiles are locust's (rounded to 2 significant "
        f"digits above 100 ms). Raw numbers: `{json_path.name}` beside this file.",
        END,
    ]
    return "\n".join(lines) + "\n"


def update_doc(doc: Path, results: dict[str, Any], json_path: Path) -> None:
    """Replace this section (between its markers), or append it."""
    replace_section(doc, BEGIN, END, section(results, json_path))
