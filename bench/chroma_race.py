"""`python -m bench.chroma_race`: how often Chroma fails a read that races writes to the same
collection, and how many of those failures reach the store's caller (the query service).

    python -m bench.chroma_race --seconds 60

Starts its own `chroma run` on deploy/chroma/config.yaml (`bench.stack.running_chroma`), stores
`--records` documents of 384-d vectors, then for `--seconds` runs writer threads (update a document
with a passage, delete one, replace one's metadata, removing keys) and reader threads (20-result
queries, the dense search's n) through `twotower.index.store.ChromaStore`. Counts each read Chroma
failed (every try, from the store's observer) and each read that failed for the caller after the
store's retries. Logs one JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from bench.stack import free_port, running_chroma
from twotower.index.store import ChromaStore, Record, StoreUnavailable

log = logging.getLogger("bench.chroma_race")
DIM = 384
READS = ("query", "get", "get ids", "count")


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


class Retried(logging.Handler):
    """The reasons the store gave for sending a read again (its log)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.reasons: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "sending the read again" in message:
            self.reasons.add(message.split(";")[0])


def race(host: str, port: int, records: int, seconds: float, writers: int, readers: int) -> dict[str, Any]:
    store = ChromaStore(host, port, "race")
    attempts: Counter[str] = Counter()
    failed_tries: Counter[str] = Counter()
    lock = threading.Lock()

    def observe(what: str, _seconds: float, ok: bool) -> None:
        with lock:
            attempts[what] += 1
            if not ok:
                failed_tries[what] += 1

    store.collection("c", create=True)
    rng = np.random.default_rng(0)
    rows = [Record(f"d{i}", "t " * 100, {"_parent": f"d{i}", "a": 1, "b": "x"}) for i in range(records)]
    store.write("c", rows, unit(rng, records))
    store.observer = observe
    retried = Retried()
    store_log = logging.getLogger("twotower.index.store")
    level = store_log.level
    store_log.addHandler(retried)
    store_log.setLevel(logging.INFO)
    stop = threading.Event()
    caller_errors: list[str] = []
    done: Counter[str] = Counter()

    def write(seed: int) -> None:
        r = np.random.default_rng(seed)
        n = 0
        while not stop.is_set():
            n += 1
            k = f"d{int(r.integers(records))}"
            try:
                roll = r.random()
                if roll < 0.3:
                    store.delete("c", ids=[k, f"{k}#1"])
                elif roll < 0.6:
                    removed: dict[str, Any] = {"a": n, "b": None, "_parent": None}
                    store.write("c", [Record(k, "u " * 100, removed)], unit(r, 1))
                else:
                    passage = Record(f"{k}#1", "p " * 100, {"_parent": k, "a": n})
                    store.write("c", [passage, Record(k, "u " * 100, {"a": n, "b": "y"})], unit(r, 2))
                    store.delete("c", ids=[f"{k}#2", f"{k}#3"])
            except StoreUnavailable:
                pass  # a write Chroma failed: counted by the observer, not what this measures
            with lock:
                done["writes"] += 1

    def read(seed: int) -> None:
        r = np.random.default_rng(seed)
        while not stop.is_set():
            try:
                store.query("c", unit(r, 1)[0], 20)
            except StoreUnavailable as exc:
                with lock:
                    caller_errors.append(str(exc))
            with lock:
                done["queries"] += 1

    threads = [threading.Thread(target=write, args=(1 + i,)) for i in range(writers)]
    threads += [threading.Thread(target=read, args=(100 + i,)) for i in range(readers)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    store_log.removeHandler(retried)
    store_log.setLevel(level)
    return {
        "seconds": seconds,
        "writers": writers,
        "readers": readers,
        "records": records,
        "queries": done["queries"],
        "writes": done["writes"],
        "read_tries": sum(attempts[w] for w in READS),
        "read_tries_chroma_failed": {w: failed_tries[w] for w in READS if failed_tries[w]},
        "write_tries_chroma_failed": {w: n for w, n in failed_tries.items() if w not in READS},
        "retried_because": sorted(retried.reasons)[:5],
        "reads_failed_for_the_caller": len(caller_errors),
        "errors": sorted(set(caller_errors))[:5],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--records", type=int, default=300)
    parser.add_argument("--writers", type=int, default=1)
    parser.add_argument("--readers", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    log.setLevel(logging.INFO)
    with tempfile.TemporaryDirectory(prefix="chroma-race-") as work_dir:
        port = free_port()
        with running_chroma(Path(work_dir), port):
            result = race("127.0.0.1", port, args.records, args.seconds, args.writers, args.readers)
    log.info("%s", json.dumps(result))


if __name__ == "__main__":
    main()
