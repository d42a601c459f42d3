"""The measured section of docs/scaling.md, written by `make bench-scale` from runs/bench-scale.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

BEGIN = "<!-- bench:scale:begin (written by `make bench-scale`; edit bench/scale/report.py instead) -->"
END = "<!-- bench:scale:end -->"


def _p(s: dict[str, Any]) -> str:
    return f"{s['p50_ms']:.1f} / {s['p99_ms']:.1f}"


def section(results: dict[str, Any], json_path: Path) -> str:
    m, v, h = results["machine"], results["vectors"], results["hnsw"]
    synth = v.get("synthetic", {})
    lines = [
        BEGIN,
        "## Measured curve",
        "",
        f"`{results['command']}`, {results['duration_s']:.0f} s, on {m['cpus']} CPUs ({m['processor']}), "
        f"load average {results['load_average_start'][0]:.1f} at the start (a shared machine). "
        f"Model {results['model_version']}; HNSW ef_search {h['ef_search']}, ef_construction "
        f"{h['ef_construction']}, max_neighbors {h['max_neighbors']}; {results['queries']} real queries "
        f"(SciFact and NPL). Vectors: the first {v.get('real', 0):,} rows the document tower's own "
        f"({v.get('real_rows_per_s', '?')} rows/s on this machine), the rest synthetic from them "
        f"(bench/scale/vectors.py; median nearest-neighbour distance {synth.get('median_nn_distance', '?')}). "
        f"Raw numbers: `{json_path.name}`.",
        "",
        "| documents | recall@10 /search (dense) | recall@10 Chroma HNSW | dense p50 / p99 ms c=1 | dense c=8 | "
        "hybrid p50 / p99 ms c=1 | hybrid c=8 | load docs/s | Chroma RSS MiB | disk MiB | restart → ready s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for size, at in results["sizes"].items():
        s = at["search"]
        dense8 = next(v for k, v in s.items() if k.startswith("dense c") and k != "dense c1")
        hybrid8 = next(v for k, v in s.items() if k.startswith("hybrid c") and k != "hybrid c1")
        lines.append(
            f"| {int(size):,} | {at['recall_http']['recall_at_10']:.3f} | {at['recall_index']['recall_at_10']:.3f} | "
            f"{_p(s['dense c1']['client'])} | {_p(dense8['client'])} ms, {dense8['queries_per_s']:.0f} q/s | "
            f"{_p(s['hybrid c1']['client'])} | {_p(hybrid8['client'])} ms, {hybrid8['queries_per_s']:.0f} q/s | "
            f"{at['load']['docs_per_s']:.0f} | {at['chroma_rss_mib']:.0f} (after restart "
            f"{at['chroma_rss_after_restart_mib']:.0f}) | {at['chroma_disk_mib']:.0f} | {at['restart']['query_ready_s']:.1f} |"
        )
    lines += [
        "",
        "| documents | GET /documents/{id} p50 / p99 ms | GET /stats p50 / p99 ms | DELETE /documents/{id} p50 / p99 ms | "
        "upsert of 2,000 stored documents, docs/s | errors |",
        "|---|---|---|---|---|---|",
    ]
    errors = 0
    for size, at in results["sizes"].items():
        d = at["documents"]
        e = sum(d[k]["errors"] for k in ("get_document", "stats", "delete")) + at["recall_http"]["errors"]
        e += sum(x["errors"] for x in at["search"].values())
        errors += e
        lines.append(
            f"| {int(size):,} | {_p(d['get_document'])} | {_p(d['stats'])} | {_p(d['delete'])} | "
            f"{at['rewrite']['docs_per_s']:.0f} | {e} |"
        )
    lines += ["", f"Errors in all: {errors}."]
    for size, at in results["sizes"].items():
        if "ef_sweep" in at:
            lines += [
                "",
                f"ef_search on the {int(size):,}-document collection (changed in place, `python -m ops.hnsw`):",
                "",
                "| ef_search | recall@10 Chroma | Chroma query p50 / p99 ms | recall@10 /search | /search dense p50 / p99 ms |",
                "|---|---|---|---|---|",
            ]
            for p in at["ef_sweep"]:
                lines.append(
                    f"| {p['ef_search']} | {p['index']['recall_at_10']:.3f} | {_p(p['index']['latency'])} | "
                    f"{p['http_dense_c1']['recall_at_10']:.3f} | {_p(p['http_dense_c1']['latency'])} |"
                )
        if "kill9" in at:
            k = at["kill9"]
            lines += [
                "",
                f"kill -9 of Chroma at {int(size):,} documents: query service ready {k['query_ready_s']:.1f} s "
                f"after the restart; {k['count']:,} of {k['expected']:,} records counted, {k['ids_missing']} ids "
                f"missing, {k['sample_wrong_vector']} wrong vectors in a sample of {k['sample']:,}, "
                f"{k['last_batch_wrong_text']} wrong texts in the last batch written.",
            ]
    growth = []
    for at in results["sizes"].values():
        growth += [f"{n:,}: {r:.0f}" for n, r in at["load"]["curve"]]
    lines += [
        "",
        "Write rate into the index as it grew (documents in the collection: docs/s): "
        + ", ".join(growth)
        + ".",
        END,
    ]
    return "\n".join(lines) + "\n"
