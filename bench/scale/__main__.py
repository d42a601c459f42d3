"""`python -m bench.scale` (`make bench-scale`): the product at 10k, 100k and 1M documents in one run.

One Chroma server and the two services (bench.stack), one collection that grows through the sizes.
At each size: the rows of `bench.corpus` up to it are written through the index layer with their
cached vectors (`make bench-scale-cache` first: bench.scale.vectors), then measured:

- recall@10 against exact search (numpy, the same vectors) of `/search` (dense, through HTTP) and of
  Chroma's own HNSW answer (the index layer, the same query vectors), on `--queries` real queries;
- `/search` p50/p99 at concurrency 1 and `--concurrency`, dense and hybrid (the default mode);
- write throughput as the collection grows; Chroma's RSS and disk;
- `GET /documents/{id}`, `GET /stats`, `DELETE /documents/{id}` (the deleted ones written back);
- Chroma stopped and started again: seconds until the query service's /readyz is 200;
- at the largest size: ef_search swept on the collection (recall against latency), then kill -9 of
  Chroma and every acknowledged document checked (count, every id, a sample's vectors and texts).

Timed phases hold `--lock` (flock) when given; loading does not. Results: runs/bench-scale.json and
the measured section of docs/scaling.md.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.corpus import queries as corpus_queries
from bench.corpus import rows
from bench.report import replace_section
from bench.scale import measure
from bench.scale.report import BEGIN, END, section
from bench.scale.vectors import DEFAULT_CACHE, folders, vectors
from bench.stack import Stack, running_stack
from twotower.index.documents import DocumentIndex
from twotower.index.store import ChromaStore, HnswSettings

log = logging.getLogger("bench.scale")
ROOT = Path(__file__).resolve().parents[2]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n")[0])
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="built by bench.scale.vectors")
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--queries", type=int, default=600, help="real queries for recall (>= 500)")
    p.add_argument("--latency-queries", type=int, default=200, help="per mode at concurrency 1 (x2 at c)")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--batch", type=int, default=2000, help="documents per write while loading")
    p.add_argument("--ef-sweep", default="16,32,48,64,100,150,200", help="ef_search values, largest size")
    p.add_argument("--ef-search", type=int, default=HnswSettings.ef_search)
    p.add_argument("--ef-construction", type=int, default=HnswSettings.ef_construction)
    p.add_argument("--max-neighbors", type=int, default=HnswSettings.max_neighbors)
    p.add_argument("--query-workers", type=int, default=2, help="as in docker-compose.yml")
    p.add_argument("--work-dir", type=Path, help="Chroma's data (default <cache>/run, emptied first)")
    p.add_argument(
        "--sweep-only",
        action="store_true",
        help="only the ef_search sweep, on the collection an earlier run left in --work-dir at the "
        "largest --sizes (kept, not emptied); JSON only",
    )
    p.add_argument("--lock", type=Path, help="flock this file during timed phases")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-scale.json")
    p.add_argument("--doc", type=Path, default=ROOT / "docs" / "scaling.md", help="section rewritten here")
    p.add_argument("--no-doc", action="store_true", help="only the JSON")
    return p.parse_args(argv)


@contextmanager
def held(lock: Path | None, stack: Stack) -> Iterator[None]:
    """A timed phase: `lock` held (flock) and, when this run was started under `nice` (loading is
    background work on a shared machine), this process and the stack's at normal priority
    meanwhile (needs root; otherwise they stay as they are)."""
    if lock is None:
        yield
        return

    def pids() -> list[int]:  # asked again at the end: a restart replaces Chroma's process
        return [os.getpid(), *(p for proc in (stack.chroma, stack.ingest, stack.query) for p in proc.pids())]

    niceness = os.getpriority(os.PRIO_PROCESS, 0)
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            _renice(pids(), 0)
            yield
        finally:
            _renice(pids(), niceness)
            fcntl.flock(f, fcntl.LOCK_UN)


def _renice(pids: list[int], niceness: int) -> None:
    for pid in pids:
        with suppress(PermissionError, ProcessLookupError):
            os.setpriority(os.PRIO_PROCESS, pid, niceness)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s | %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(",") if s)
    meta = json.loads((args.cache / "meta.json").read_text())
    weights, version = Path(meta["weights_dir"]), meta["version"]
    args.version = version
    work = args.work_dir or args.cache / "run"
    if args.sweep_only:
        args.no_doc = True
    elif (work / "chroma").exists():
        import shutil

        shutil.rmtree(work / "chroma")
    began = time.perf_counter()
    hnsw = HnswSettings(args.ef_search, args.ef_construction, args.max_neighbors)
    texts = corpus_queries(folders(meta["data"]))[:: max(1, 1202 // args.queries)][: args.queries]
    qvecs = query_vectors(weights, version, texts)
    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {
            "cpus": len(os.sched_getaffinity(0)),
            "processor": cpu_name(),
            "platform": platform.platform(),
        },
        "load_average_start": list(os.getloadavg()),
        "model_version": version,
        "vectors": {k: meta[k] for k in ("real", "real_rows_per_s", "synthetic") if k in meta},
        "hnsw": hnsw.configuration()["hnsw"],
        "queries": len(texts),
        "sizes": {},
    }
    settings = {f"INGEST_HNSW_{k.upper()}": str(v) for k, v in vars(hnsw).items()}
    with running_stack("onnx", weights, work, query_workers=args.query_workers, extra=settings) as stack:
        store = ChromaStore("127.0.0.1", stack.chroma_port, stack.prefix, timeout_s=300, hnsw=hnsw)
        index = DocumentIndex(store, version)
        if args.sweep_only:
            size = sizes[-1]
            if store.count(version) != size:
                raise SystemExit(f"--sweep-only: {work} holds {store.count(version):,} records, not {size:,}")
            truth = measure.Truth.of(qvecs, vectors(args.cache, size))
            with held(args.lock, stack):
                results["sizes"][str(size)] = {"ef_sweep": ef_sweep(store, stack, texts, truth, args)}
            save(args, results, began)
            log.info("wrote %s in %.0f s", args.out, results["duration_s"])
            return 0
        index.create()
        source = rows(folders(meta["data"]), sizes[-1], args.seed)
        done, last = 0, list[measure.Row]()
        for size in sizes:
            log.info("== %s documents", f"{size:,}")
            vecs = vectors(args.cache, size)
            loaded, last = measure.load(index, source, vecs, done, size, args.batch)
            done = size
            truth = measure.Truth.of(qvecs, vecs)
            at: dict[str, Any] = {"load": loaded, "chroma_rss_mib": stack.chroma.memory_mib()["main"]}
            at["chroma_disk_mib"] = measure.disk_mib(work / "chroma")
            with held(args.lock, stack):
                at["recall_index"] = measure.index_recall(store, version, truth)
                at["recall_http"] = measure.http_recall(stack.query.url, texts, truth)
                at["search"] = {
                    f"{mode} c{c}": measure.searches(
                        stack.query.url, texts[: n * args.latency_queries], mode, c
                    )
                    for mode in ("dense", "hybrid")
                    for c, n in ((1, 1), (args.concurrency, 2))
                }
                at["rewrite"] = measure.rewrite_rate(index, last, vecs, size)
                at["documents"] = measure.document_routes(
                    stack.ingest.url, index, size, last, vecs, args.seed
                )
                at["restart"] = measure.restart_to_ready(stack.chroma, stack.query, kill=False)
            at["chroma_rss_after_restart_mib"] = stack.chroma.memory_mib()["main"]
            if size == sizes[-1]:
                with held(args.lock, stack):
                    at["ef_sweep"] = ef_sweep(store, stack, texts, truth, args)
                at["kill9"] = measure.restart_to_ready(stack.chroma, stack.query, kill=True)
                at["kill9"].update(measure.everything_there(index, size, last, vecs, args.seed))
            results["sizes"][str(size)] = at
            log.info("%s: %s", f"{size:,}", summary_line(at))
            save(args, results, began)
    save(args, results, began)
    log.info(
        "wrote %s%s in %.0f s", args.out, "" if args.no_doc else f" and {args.doc}", results["duration_s"]
    )
    return 0


def ef_sweep(
    store: ChromaStore, stack: Stack, texts: list[str], truth: measure.Truth, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Each ef_search set on the collection, then Chroma restarted (it applies a changed ef_search
    when it loads the index again): Chroma's recall and latency, and /search's. Ends on --ef-search."""
    curve = []
    version = args.version
    for ef in [int(e) for e in args.ef_sweep.split(",") if e]:
        store.set_ef_search(version, ef)
        measure.restart_to_ready(stack.chroma, stack.query, kill=False)
        point: dict[str, Any] = {"ef_search": ef, "applied": store.hnsw_of(version).get("ef_search")}
        point["index"] = measure.index_recall(store, version, truth)
        point["http_dense_c1"] = measure.http_recall(
            stack.query.url, texts[: args.latency_queries], truth.head(args.latency_queries)
        )
        curve.append(point)
        log.info(
            "ef_search %d: recall %.4f (index) %.4f (http), p50 %.2f ms (index) %.2f ms (http)",
            ef,
            point["index"]["recall_at_10"],
            point["http_dense_c1"]["recall_at_10"],
            point["index"]["latency"]["p50_ms"],
            point["http_dense_c1"]["latency"]["p50_ms"],
        )
    store.set_ef_search(version, args.ef_search)
    measure.restart_to_ready(stack.chroma, stack.query, kill=False)
    return curve


def query_vectors(weights: Path, version: str, texts: list[str]) -> np.ndarray:
    """The query tower as the query service runs it (same engine choice, one thread per worker)."""
    from twotower.engine import open_encoder

    encoder = open_encoder([weights], version, engine="onnx", towers=("query",), threads=1)
    try:
        return np.vstack([encoder.encode_queries([t]) for t in texts]).astype(np.float32)
    finally:
        encoder.close()


def cpu_name() -> str:
    """The CPU's model name and the vector features the engines choose by."""
    info = Path("/proc/cpuinfo").read_text().splitlines()
    name = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "")
    flags = next((line.split(":", 1)[1].split() for line in info if line.startswith("flags")), [])
    features = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{name or platform.processor()}, {' '.join(features) or 'no AVX2'}"


def summary_line(at: dict[str, Any]) -> str:
    dense = at["search"]["dense c1"]["client"]
    return (
        f"load {at['load']['docs_per_s']} docs/s, recall@10 {at['recall_http']['recall_at_10']} (http) "
        f"{at['recall_index']['recall_at_10']} (index), dense c1 p50 {dense['p50_ms']} ms, "
        f"RSS {at['chroma_rss_mib']} MiB, disk {at['chroma_disk_mib']} MiB, ready {at['restart']['query_ready_s']} s"
    )


def save(args: argparse.Namespace, results: dict[str, Any], began: float) -> None:
    results["load_average_end"] = list(os.getloadavg())
    results["duration_s"] = round(time.perf_counter() - began, 1)
    results["command"] = "make bench-scale" + (
        f" ARGS='--sizes {args.sizes}'" if args.sizes != "10000,100000,1000000" else ""
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    if not args.no_doc:
        replace_section(args.doc, BEGIN, END, section(results, args.out))


if __name__ == "__main__":
    raise SystemExit(main())
