"""The towers' encoding speed in this process, without HTTP or Chroma."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.workload import Workload
from services.common.modelload import load_serving_model
from services.common.settings import PACKAGED_BASE_MODEL
from twotower import format_document


def bench_model(work: Workload, weights_dir: Path, batch_size: int) -> dict[str, Any]:
    started = time.perf_counter()
    model, version = load_serving_model(weights_dir, None, PACKAGED_BASE_MODEL)
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
    model.encode_documents(texts, batch_size=batch_size)
    docs_s = time.perf_counter() - t0
    return {
        "model_version": version,
        "device": model.device_name,
        "load_s": round(load_s, 2),
        "encode_documents_per_s": round(len(texts) / docs_s, 2),
        "encode_queries_per_s": round(len(work.queries) / queries_s, 2),
        "encode_one_query_ms": round(single_ms, 2),
        "batch_size": batch_size,
    }
