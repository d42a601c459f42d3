"""The in-process floor of a search: encode one query, one Chroma query on a cached collection
handle, in this process, with the engine and thread count one query worker has. What HTTP, the
framework and the service's own work add on top is the served p50 minus this."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import chromadb
from chromadb.config import Settings as ChromaSettings

from bench.load import percentiles
from twotower.engine import Engine, open_encoder


def _collection(client: chromadb.api.ClientAPI, prefix: str, version: str) -> Any:
    names = [c.name for c in client.list_collections()]
    name = f"{prefix}-{version}"
    if name not in names:
        raise LookupError(f"no collection {name!r} in Chroma (have {names})")
    return client.get_collection(name)


def floor(
    engine: Engine,
    weights_dir: Path,
    version: str,
    chroma_port: int,
    prefix: str,
    queries: list[str],
    k: int,
    threads: int,
    variant: Literal["fp32", "int8"] = "fp32",
    warmup: int = 10,
) -> dict[str, Any]:
    encoder = open_encoder(
        [weights_dir],
        version,
        engine=engine,
        threads=threads,
        towers=("query",),
        device="cpu",
        variant=variant,
    )
    client = chromadb.HttpClient(
        host="127.0.0.1", port=chroma_port, settings=ChromaSettings(anonymized_telemetry=False)
    )
    collection = _collection(client, prefix, version)
    total: list[float] = []
    encode: list[float] = []
    chroma: list[float] = []
    try:
        for i, query in enumerate(queries[:warmup] + queries):
            t0 = time.perf_counter()
            vector = encoder.encode_queries([query])
            t1 = time.perf_counter()
            collection.query(
                query_embeddings=vector, n_results=k, include=["documents", "metadatas", "distances"]
            )
            t2 = time.perf_counter()
            if i >= warmup:
                total.append((t2 - t0) * 1000)
                encode.append((t1 - t0) * 1000)
                chroma.append((t2 - t1) * 1000)
    finally:
        encoder.close()
    return {
        "threads": threads,
        "total": percentiles(total),
        "encode": percentiles(encode),
        "chroma_query": percentiles(chroma),
    }
