"""The in-process floor of a search: encode one query, one Chroma query on a cached collection
handle (through the store the service queries with, `ChromaStore.query`), in this process, with the
engine and thread count one query worker has. What HTTP, the framework and the service's own work
add on top is the served p50 minus this."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.load import percentiles
from twotower.engine import Engine, available_cpus, open_encoder
from twotower.engine.onnx_engine import Backend
from twotower.engine.onnx_format import Variant
from twotower.index.store import ChromaStore


def floor_threads(query_workers: int) -> int:
    """One query worker's intra-op threads as the service computes them: the CPUs over its workers."""
    return max(1, available_cpus() // query_workers)


class Floor:
    def __init__(
        self,
        engine: Engine,
        weights_dir: Path,
        version: str,
        chroma_port: int,
        prefix: str,
        k: int,
        threads: int,
        variant: Variant = "fp32",
        backend: Backend = "onnxruntime",
    ) -> None:
        self.k, self.threads = k, threads
        self.encoder = open_encoder(
            [weights_dir],
            version,
            engine=engine,
            threads=threads,
            towers=("query",),
            device="cpu",
            variant=variant,
            backend=backend,
        )
        self.version = version
        self.store = ChromaStore("127.0.0.1", chroma_port, prefix)
        if not self.store.exists(version):
            raise LookupError(f"no collection {self.store.collection_name(version)!r} in Chroma")
        self.total: list[float] = []
        self.encode: list[float] = []
        self.chroma: list[float] = []

    def run(self, queries: list[str], record: bool = True) -> None:
        for query in queries:
            t0 = time.perf_counter()
            vector = self.encoder.encode_queries([query])
            t1 = time.perf_counter()
            self.store.query(self.version, vector[0], self.k)
            t2 = time.perf_counter()
            if record:
                self.total.append((t2 - t0) * 1000)
                self.encode.append((t1 - t0) * 1000)
                self.chroma.append((t2 - t1) * 1000)

    def summary(self) -> dict[str, Any]:
        return {
            "threads": self.threads,
            "total": percentiles(self.total),
            "encode": percentiles(self.encode),
            "chroma_query": percentiles(self.chroma),
        }

    def close(self) -> None:
        self.encoder.close()
