"""The measurements `python -m bench.scale` makes at each size: loading through the index layer,
exact search, recall, latency through HTTP, the document routes, restarts and a crash."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from tqdm import tqdm

from bench.load import Searches, percentiles
from bench.stack import Process, restart, wait_ready
from twotower.index.documents import Document, DocumentIndex
from twotower.index.store import ChromaStore, Record

K = 10
TIE = 1e-5  # cosine similarity: results this close to the 10th nearest count as found
Row = dict[str, Any]


def load(
    index: DocumentIndex, rows: Iterator[Row], vectors: np.ndarray, start: int, stop: int, batch: int
) -> tuple[dict[str, Any], list[Row]]:
    """Write rows [start, stop) with their cached vectors, as ingestion lays documents out (one record
    each: these rows fit one passage), `batch` documents per write. Returns the rate as the collection
    grew (per tenth of the step) and the last batch's rows (to restore and check later)."""
    curve, done, seconds, last = [], start, 0.0, []
    mark, mark_s = start, 0.0
    tenth = max(batch, (stop - start) // 10)
    with tqdm(total=stop - start, desc=f"load to {stop:,}", unit="doc") as bar:
        while done < stop:
            last = [next(rows) for _ in range(min(batch, stop - done))]
            records = [write_records(index, r) for r in last]
            began = time.perf_counter()
            index.store.write(index.version, records, vectors[done : done + len(last)])
            seconds += time.perf_counter() - began
            done += len(last)
            bar.update(len(last))
            if done - mark >= tenth or done == stop:
                curve.append([done, round((done - mark) / (seconds - mark_s), 1)])
                mark, mark_s = done, seconds
    summary = {"from": start, "to": stop, "seconds": round(seconds, 1)}
    summary["docs_per_s"] = round((stop - start) / seconds, 1) if seconds else 0.0
    return {**summary, "curve": curve}, last


def write_records(index: DocumentIndex, row: Row) -> Record:
    document = Document(row["id"], row["text"], row["title"], row["metadata"])
    records, _ = index.records(document, [(0, len(row["text"]))])
    return records[0]


def exact_top(queries: np.ndarray, vectors: np.ndarray, k: int = K, block: int = 131_072) -> np.ndarray:
    """Row numbers of each query's `k` nearest vectors by exact cosine (unit vectors), best first."""
    best_ids = np.zeros((len(queries), 0), np.int64)
    best_sims = np.zeros((len(queries), 0), np.float32)
    for first in range(0, len(vectors), block):
        sims = queries @ np.asarray(vectors[first : first + block]).T
        top = np.argpartition(-sims, min(k, sims.shape[1] - 1), axis=1)[:, :k]
        best_ids = np.hstack([best_ids, top + first])
        best_sims = np.hstack([best_sims, np.take_along_axis(sims, top, axis=1)])
        keep = np.argsort(-best_sims, axis=1)[:, :k]
        best_ids = np.take_along_axis(best_ids, keep, axis=1)
        best_sims = np.take_along_axis(best_sims, keep, axis=1)
    return best_ids


def row_id(n: int) -> str:
    return f"scale-{n:08d}"  # bench.corpus's ids


@dataclass
class Truth:
    """Exact search's answer: each query's vector, and the similarity of its 10th nearest vector."""

    queries: np.ndarray
    vectors: np.ndarray
    tenth: np.ndarray

    @classmethod
    def of(cls, queries: np.ndarray, vectors: np.ndarray) -> Truth:
        top = exact_top(queries, vectors)
        return cls(queries, vectors, np.einsum("ij,ij->i", queries, vectors[top[:, -1]]))

    def head(self, n: int) -> Truth:
        return Truth(self.queries[:n], self.vectors, self.tenth[:n])

    def recall(self, found: list[list[str]]) -> float:
        """Share of the 10 results that are among the exact 10 nearest; a result tied with the 10th
        (similarity within TIE of it: the corpus holds repeated sentences, and float rounding orders
        equal vectors either way) counts, as in ann-benchmarks."""
        hits = 0
        for q, thr, ids in zip(self.queries, self.tenth, found, strict=True):
            rows = [int(i.removeprefix("scale-")) for i in ids[:K]]
            if rows:
                hits += int((self.vectors[rows] @ q >= thr - TIE).sum())
        return round(hits / (K * len(found)), 4)


def index_recall(store: ChromaStore, version: str, truth: Truth) -> dict[str, Any]:
    """Chroma's own HNSW answer for each query vector (k = 10, through the index layer) against exact."""
    found, ms = [], []
    for q in truth.queries:
        began = time.perf_counter()
        found.append([r.id for r in store.query(version, q, K)])
        ms.append((time.perf_counter() - began) * 1000)
    return {"recall_at_10": truth.recall(found), "latency": percentiles(ms)}


def http_recall(url: str, texts: list[str], truth: Truth) -> dict[str, Any]:
    """/search dense, k = 10, one client: recall of what it returns against exact, and its latency."""
    found, ms, errors = [], [], 0
    with httpx.Client(base_url=url, timeout=60) as http:
        for text in texts:
            began = time.perf_counter()
            response = http.post("/search", json={"query": text, "k": K, "mode": "dense"})
            ms.append((time.perf_counter() - began) * 1000)
            ok = response.status_code == 200
            errors += not ok
            found.append([h["id"] for h in response.json()["results"]] if ok else [])
    return {"recall_at_10": truth.recall(found), "latency": percentiles(ms), "errors": errors}


def searches(url: str, texts: list[str], mode: str, concurrency: int) -> dict[str, Any]:
    s = Searches(concurrency, K, mode)
    s.run(url, texts)
    return s.summary()


def timed(n: int, call: Any) -> tuple[dict[str, float], int]:
    """`call(i)` n times: latency percentiles (ms) and how many answers were not the expected one."""
    ms, errors = [], 0
    for i in range(n):
        began = time.perf_counter()
        errors += not call(i)
        ms.append((time.perf_counter() - began) * 1000)
    return percentiles(ms), errors


def document_routes(
    ingest_url: str, index: DocumentIndex, size: int, last: list[Row], vectors: np.ndarray, seed: int
) -> dict[str, Any]:
    """GET /documents/{id} on 100 random ids, GET /stats 5 times, DELETE /documents/{id} of 50
    documents of the last batch, which are then written back (same vectors) so the collection stays
    what the recall was measured on."""
    rng = random.Random(seed)
    ids = [row_id(rng.randrange(size)) for _ in range(100)]
    doomed = last[-50:]
    with httpx.Client(base_url=ingest_url, timeout=60) as http:
        get, get_err = timed(len(ids), lambda i: http.get(f"/documents/{ids[i]}").status_code == 200)
        stats, stats_err = timed(5, lambda i: http.get("/stats").json().get("count") == size)
        delete, del_err = timed(
            len(doomed), lambda i: http.delete(f"/documents/{doomed[i]['id']}").status_code == 200
        )
        first = size - len(doomed)
        index.store.write(index.version, [write_records(index, r) for r in doomed], vectors[first:size])
        restored = http.get("/stats").json().get("count") == size
    return {
        "get_document": {**get, "errors": get_err},
        "stats": {**stats, "errors": stats_err},
        "delete": {**delete, "errors": del_err},
        "restored": restored,
    }


def rewrite_rate(index: DocumentIndex, last: list[Row], vectors: np.ndarray, size: int) -> dict[str, float]:
    """The last batch upserted again, unchanged, in one timed write (a timed phase, unlike loading,
    which shares the machine): what an update costs at this size, in documents/s."""
    records = [write_records(index, r) for r in last]
    began = time.perf_counter()
    index.store.write(index.version, records, vectors[size - len(last) : size])
    seconds = time.perf_counter() - began
    return {"documents": len(last), "seconds": round(seconds, 2), "docs_per_s": round(len(last) / seconds, 1)}


def disk_mib(path: Path) -> float:
    used = sum(os.stat(Path(root) / f).st_blocks * 512 for root, _, files in os.walk(path) for f in files)
    return round(used / 2**20, 1)


def restart_to_ready(chroma: Process, query: Process, *, kill: bool) -> dict[str, float]:
    """Chroma stopped (SIGTERM, or kill -9) and started again: seconds until its heartbeat and
    until the query service's /readyz answers 200 again."""
    stop_s = restart(chroma, kill=kill)
    began = time.perf_counter()
    wait_ready(chroma, "/api/v2/heartbeat")
    heartbeat = time.perf_counter() - began
    wait_ready(query, "/readyz")
    return {
        "stop_s": round(stop_s, 2),
        "chroma_up_s": round(heartbeat, 2),
        "query_ready_s": round(time.perf_counter() - began, 2),
    }


def everything_there(
    index: DocumentIndex, size: int, last: list[Row], vectors: np.ndarray, seed: int
) -> dict[str, Any]:
    """After a crash: the count, every id, and for a sample (1,000 random rows and the last batch)
    the stored vector (and, for the last batch, text) against what was acknowledged."""
    store, version = index.store, index.version
    ids = set(store.ids(version))
    missing = len({row_id(i) for i in range(size)} - ids)
    rng = random.Random(seed)
    sample = sorted(
        {rng.randrange(size) for _ in range(1000)} | {size - len(last) + i for i in range(len(last))}
    )
    got = store.collection(version).get(ids=[row_id(i) for i in sample], include=["embeddings", "documents"])
    by_id = dict(zip(got["ids"], got["embeddings"] if got["embeddings"] is not None else [], strict=True))
    texts = dict(zip(got["ids"], got["documents"] or [], strict=True))
    wrong = sum(
        1
        for i in sample
        if row_id(i) not in by_id or float(np.abs(np.asarray(by_id[row_id(i)]) - vectors[i]).max()) > 1e-5
    )
    wrong_text = sum(texts.get(r["id"]) != r["text"] for r in last)
    return {
        "count": store.count(version),
        "expected": size,
        "ids_missing": missing,
        "sample": len(sample),
        "sample_wrong_vector": wrong,
        "last_batch_wrong_text": wrong_text,
    }
