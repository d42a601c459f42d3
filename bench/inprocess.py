"""The towers' encoding speed in this process, without HTTP or Chroma."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.workload import Workload
from twotower import format_document
from twotower.engine import open_encoder
from twotower.registry import latest_version


def bench_model(work: Workload, weights_dir: Path, batch_size: int) -> dict[str, Any]:
    started = time.perf_counter()
    model = open_encoder([weights_dir], latest_version(weights_dir))
    version = model.version
    load_s = time.perf_counter() - started
    model.encode_queries(work.queries[:4])  # warm-up
    t0 = time.perf_counter()
    model.encode_queries(work.queries, batch_size=batch_size)
    queries_s = time.perf_counter() - t0
    single = work.queries[: min(50, len(work.queries))]
    t0 = time.perf_counter()
    for query in single:
        model.encode_queries([query])
    single_ms = (time.perf_counter() - t0) * 1000 / len(single)
    # Queries first, as in the query service, which never encodes a large document batch.
    texts = [format_document(d["text"], d.get("title")) for d in work.documents]
    model.encode_documents(texts[:4])  # warm-up
    t0 = time.perf_counter()
    model.encode_documents(texts)
    docs_s = time.perf_counter() - t0
    return {
        "model_version": version,
        "engine": model.engine,
        "load_s": round(load_s, 2),
        "encode_documents_per_s": round(len(texts) / docs_s, 2),
        "encode_queries_per_s": round(len(work.queries) / queries_s, 2),
        "encode_one_query_ms": round(single_ms, 2),
        "batch_size": batch_size,
    }
