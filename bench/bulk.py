"""`python -m bench.bulk` (`make bench-bulk`): a bulk import, then two rollouts of the whole collection
while a writer posts, updates and deletes and a client searches, on a stack of its own (bench.stack).

1. `--n` rows of bench.corpus (short real sentences) are imported with `python -m ops.bulk_import`
   (niced, as the command is: a load, not a timed phase; `--phase load` does only this, and `--phase run` the rest on
   it), into version A of a weights folder holding A and B, on a fresh stack; the loaded stack is
   kept (`<work>/loaded`), and every run starts from a copy of it;
2. one search client alone for `--idle` s: /search latency idle; then with the writer alone;
3. `python -m ops.rollout B --workers 1` under the writer and the search client, then back to A with
   `--workers 2` (`--workers`: one rollout per number, `--max-docs-per-s`: their rate cap): the
   rollout's time, its backfill's rate (its own summary line), /search latency while it ran, and
   the cores each part kept busy (Chroma, the two services, the rollout command and its workers,
   this benchmark's clients), as in the idle and writer-alone windows;
4. after each rollout, every document the writer touched is read back from the version now served
   (GET /documents/{id}: its last acknowledged text, or 404 after a delete) and /stats must count
   the corpus plus the writer's new documents less its deletes.

Everything goes through the product's entry points (HTTP, the ops commands). Writes --out (JSON)
and prints the section of docs/scaling.md it supports.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.corpus import DEFAULT_DATA, queries
from bench.load import percentiles
from bench.stack import ROOT, Stack, running_stack, served_weights

log = logging.getLogger("bench.bulk")
KEY = "bench-bulk-key"
SUMMARY = re.compile(r"(\d+) records in (\d+) of (\d+) shards .*?, ([\d.]+)s, ([\d.]+) records/s")


def two_versions(weights_dir: Path, work: Path) -> tuple[Path, str, str]:
    """A weights folder with A (the served LATEST) and B (A with nudged heads: other vectors)."""
    import torch

    from twotower import load_published, publish
    from twotower.engine.export import export_published
    from twotower.registry import latest_version

    folder = work / "weights"
    marker = folder / "bench-bulk-versions.json"
    if marker.exists():
        a, b = json.loads(marker.read_text())
        return folder, a, b
    source, a = served_weights(weights_dir, work / "base")
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(source, folder)
    model = load_published(folder, a, device="cpu")
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for head in (model.query_head, model.doc_head):
            head.fc3.weight.add_(0.02 * torch.randn(head.fc3.weight.shape, generator=generator))
    b = publish(model, folder)
    export_published([folder], b)
    assert latest_version(folder) == b
    marker.write_text(json.dumps([a, b]))
    return folder, a, b


class Traffic:
    """A writer (one document a request, at `rate`/s) and one search client, each logging what it got."""

    def __init__(
        self, stack: Stack, ids: list[str], texts: list[str], questions: list[str], rate: float
    ) -> None:
        self.stack, self.ids, self.texts, self.questions, self.rate = stack, ids, texts, questions, rate
        self.rng = random.Random(11)
        self.expected: dict[str, str | None] = {}  # acknowledged: text, or None (deleted)
        self.existed: dict[str, bool] = {}  # whether each touched id was stored before its first write
        self.unsettled: set[str] = set()  # last write refused (503 while finalizing): either outcome
        self.searches: list[tuple[float, float]] = []  # (when, ms)
        self.search_errors: list[str] = []
        self.writes = 0
        self.writing = threading.Event()
        self.lock = threading.Lock()  # held by the writer over a write and its logging; a check holds it
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._write), threading.Thread(target=self._search)]
        self._n = 0

    def __enter__(self) -> Traffic:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=120)

    def _write(self) -> None:
        with httpx.Client(base_url=self.stack.ingest.url, headers={"X-API-Key": KEY}, timeout=60) as http:
            while not self._stop.is_set():
                if not self.writing.wait(timeout=0.2):
                    continue
                with self.lock:
                    self._write_one(http)
                time.sleep(1 / self.rate)

    def _write_one(self, http: httpx.Client) -> None:
        self._n += 1
        doc_id = self.rng.choice(self.ids) if self.rng.random() < 0.7 else f"bulk-new-{self._n}"
        if doc_id not in self.existed:  # an earlier run on this stack may have written or deleted it
            self.existed[doc_id] = http.get(f"/documents/{doc_id}").status_code == 200
        text = f"{self.rng.choice(self.texts)} (update {self._n})"
        delete = self.rng.random() < 0.25 and self.expected.get(doc_id, "") is not None
        if delete:
            response = http.delete(f"/documents/{doc_id}")
        else:
            response = http.post("/documents", json={"documents": [{"id": doc_id, "text": text}]})
        if response.status_code == 200 or (delete and response.status_code == 404):
            self.expected[doc_id] = None if delete else text
            self.unsettled.discard(doc_id)
            self.writes += 1
        else:
            assert response.status_code == 503, response.text
            self.unsettled.add(doc_id)

    def _search(self) -> None:
        with httpx.Client(base_url=self.stack.query.url, timeout=60) as http:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    response = http.post("/search", json={"query": self.rng.choice(self.questions), "k": 10})
                except httpx.TransportError as exc:
                    self.search_errors.append(repr(exc))
                    continue
                if response.status_code != 200:
                    self.search_errors.append(f"{response.status_code} {response.text[:200]}")
                else:
                    self.searches.append((time.monotonic(), 1000 * (time.perf_counter() - started)))

    def latencies(self, start: float, end: float) -> dict[str, Any]:
        """Percentiles of the searches that ended in [start, end], and when the slowest 3 began
        (seconds into the window), to place a stall in time."""
        window = [(t, ms) for t, ms in self.searches if start <= t <= end]
        slowest = sorted(window, key=lambda s: -s[1])[:3]
        return (
            {"searches": len(window)}
            | percentiles([ms for _, ms in window])
            | {"slowest_began_at_s": [[round(t - ms / 1000 - start, 1), round(ms, 1)] for t, ms in slowest]}
        )


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    return platform.machine()


class Cores:
    """CPU time of the stack's processes, of this process (the writer and the search client) and
    of the ops commands it ran and waited for, as cores busy between `start()` and `busy()`."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.start()

    def _now(self) -> dict[str, float]:
        own, commands = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return {
            "chroma": self.stack.chroma.cpu_seconds(),
            "query": self.stack.query.cpu_seconds(),
            "ingest": self.stack.ingest.cpu_seconds(),
            "ops_command": commands.ru_utime + commands.ru_stime,
            "bench_clients": own.ru_utime + own.ru_stime,
            "at": time.monotonic(),
        }

    def start(self) -> None:
        self.began = self._now()

    def busy(self) -> dict[str, float]:
        now, began = self._now(), self.began
        wall = now["at"] - began["at"]
        cores = {k: round((now[k] - began[k]) / wall, 3) for k in now if k != "at"}
        return {**cores, "total": round(sum(cores.values()), 3)}


def ops(module: str, stack: Stack, weights: Path, *args: str) -> tuple[float, str]:
    """Run an ops command against the stack (it lowers its own priority: --nice 10); its wall time
    and its log."""
    argv = [sys.executable, "-m", module, *args, "--weights-dir", str(weights), "--engine", "onnx"]
    argv += [
        "--chroma-host",
        "127.0.0.1",
        "--chroma-port",
        str(stack.chroma_port),
        "--collection-prefix",
        stack.prefix,
    ]
    started = time.monotonic()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"{module} failed:\n{done.stderr[-3000:]}")
    return seconds, done.stderr


def check(stack: Stack, traffic: Traffic, before: int) -> dict[str, Any]:
    """Every touched document as acknowledged in the version now served, and /stats' count: the
    `before` documents counted when the run began, plus those the writer stored that were not there
    before its first write, less those it deleted (the writer waits meanwhile)."""
    with traffic.lock:
        return _check(stack, traffic, before)


def _check(stack: Stack, traffic: Traffic, before: int) -> dict[str, Any]:
    wrong = []
    with httpx.Client(base_url=stack.ingest.url, headers={"X-API-Key": KEY}, timeout=60) as http:
        for doc_id, text in traffic.expected.items():
            if doc_id in traffic.unsettled:
                continue
            response = http.get(f"/documents/{doc_id}")
            got = response.json()["text"] if response.status_code == 200 else None
            if got != text:
                wrong.append(doc_id)
        stats = http.get("/stats").json()
    # Each settled document counts as it is now less as it was before the writer first touched it.
    expected = before + sum(
        (text is not None) - traffic.existed[doc_id]
        for doc_id, text in traffic.expected.items()
        if doc_id not in traffic.unsettled
    )
    count_ok = abs(stats["count"] - expected) <= len(traffic.unsettled)
    return {
        "writes_acknowledged": traffic.writes,
        "documents_touched": len(traffic.expected),
        "wrong": len(wrong),
        "count": stats["count"],
        "count_expected": expected,
        "exact": not wrong and count_ok,
        "model_version": stats["model_version"],
    }


def rollout(
    stack: Stack, weights: Path, traffic: Traffic, target: str, workers: int, before: int, per_s: float
) -> dict[str, Any]:
    start = time.monotonic()
    cores = Cores(stack)
    argv = [target, "--workers", str(workers), "--max-docs-per-s", str(per_s)]
    seconds, out = ops("ops.rollout", stack, weights, *argv)
    end = time.monotonic()
    busy = cores.busy()
    time.sleep(3)  # the services switch within their pointer poll
    found = SUMMARY.search(out)
    assert found, out[-2000:]
    records, _, shards, backfill_s, rate = found.groups()
    return {
        "target": target,
        "workers": workers,
        "max_docs_per_s": per_s,
        "seconds": round(seconds, 1),
        "backfill_records": int(records),
        "shards": int(shards),
        "backfill_s": float(backfill_s),
        "backfill_records_per_s": float(rate),
        "search_during": traffic.latencies(start, end),
        "cores_busy": busy,
        "check": check(stack, traffic, before),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.bulk", description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=100_000, help="documents (bench.corpus rows)")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "bulk", help="Chroma data, weights, logs")
    p.add_argument("--weights-dir", type=Path, default=ROOT / "weights")
    p.add_argument("--idle", type=float, default=60, help="seconds of searches before the rollouts")
    p.add_argument("--write-rate", type=float, default=4, help="writes per second during the rollouts")
    p.add_argument(
        "--workers",
        default="1,2",
        help="worker processes of each rollout, one rollout per number (A->B->A...)",
    )
    p.add_argument("--max-docs-per-s", type=float, default=0, help="the rollouts' rate cap (0: none)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding scifact/ and npl/")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "bulk.json")
    p.add_argument(
        "--phase",
        choices=["all", "load", "run"],
        default="all",
        help="load: the import alone (run it niced, outside a timed window); run: the rest, on that load",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s | %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    corpus = args.work / f"corpus-{args.n}.jsonl"
    folders = [args.data / "scifact", args.data / "npl"]
    if not corpus.exists():
        make = [sys.executable, "-m", "bench.corpus", "--n", str(args.n), "--out", str(corpus)]
        subprocess.run([*make, "--data", ",".join(map(str, folders))], check=True)
    rows = [json.loads(line) for line in corpus.read_text().splitlines()[: args.n]]
    ids = {r["id"] for r in rows}
    weights, a, b = two_versions(args.weights_dir, args.work)
    questions = queries(folders)
    report: dict[str, Any] = {
        "documents": len(rows),
        "machine": cpu_name(),
    }
    extra = {"INGEST_API_KEY": KEY, "INGEST_MODEL_VERSION": a, "QUERY_MODEL_VERSION": a}
    extra |= {"INGEST_POINTER_POLL_S": "1", "QUERY_POINTER_POLL_S": "1"}
    marker = args.work / "stack" / "loaded.json"
    # The run changes the stack (the writer, the rollouts): it runs on a copy of the loaded one.
    loaded = args.work / "loaded"
    if args.phase == "load" or not (loaded / "loaded.json").exists():
        shutil.rmtree(args.work / "stack", ignore_errors=True)
        with running_stack("onnx", weights, args.work / "stack", extra=extra) as stack:
            seconds, out = ops("ops.bulk_import", stack, weights, "--corpus", str(corpus))
        marker.write_text(json.dumps({"seconds": round(seconds, 1), "summary": out.strip().splitlines()[-1]}))
        log.info("import: %s", marker.read_text())
        shutil.rmtree(loaded, ignore_errors=True)
        shutil.copytree(args.work / "stack", loaded, symlinks=True)
        if args.phase == "load":
            return 0
    shutil.rmtree(args.work / "stack", ignore_errors=True)
    shutil.copytree(loaded, args.work / "stack", symlinks=True)
    report["import"] = json.loads(marker.read_text())
    with running_stack("onnx", weights, args.work / "stack", extra=extra) as stack:
        stats = httpx.get(f"{stack.ingest.url}/stats", timeout=30).json()
        first, second = (b, a) if stats["model_version"] == a else (a, b)
        texts = [r["text"] for r in rows[:2000]]
        with Traffic(stack, sorted(ids)[:5000], texts, questions, args.write_rate) as traffic:
            start, cores = time.monotonic(), Cores(stack)
            time.sleep(args.idle)
            report["search_idle"] = traffic.latencies(start, time.monotonic())
            report["cores_busy_idle"] = cores.busy()
            traffic.writing.set()
            start = time.monotonic()
            cores.start()
            time.sleep(args.idle)
            report["search_with_writer"] = traffic.latencies(start, time.monotonic())
            report["cores_busy_with_writer"] = cores.busy()
            targets = [first, second]
            report["rollouts"] = [
                rollout(stack, weights, traffic, targets[i % 2], int(n), stats["count"], args.max_docs_per_s)
                for i, n in enumerate(args.workers.split(","))
            ]
        report["search_errors"] = len(traffic.search_errors)
        report["search_error_samples"] = traffic.search_errors[:5]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    log.info("%s", json.dumps(report, indent=2))
    ok = report["search_errors"] == 0 and all(r["check"]["exact"] for r in report["rollouts"])
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
