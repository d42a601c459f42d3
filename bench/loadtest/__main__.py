"""`python -m bench.loadtest` (`make loadtest`): search clients and the loader at once, against the
stack `make run` starts (bench.stack, settings as docker-compose.yml sets them), on free ports with
a fresh data directory.

1. start the stack, load the demo corpus, warm up the search clients for --warmup s; record RSS;
2. --users locust clients post /search for --duration s while the loader posts --docs SciFact
   abstracts, and /healthz of both services is probed every 100 ms;
3. record RSS again once the loader is done; stop the stack.

Writes JSON (--json) and its section of docs/benchmarks.md. Exits non-zero unless there were zero
errors, /healthz p99 < 100 ms on both services, and every service's RSS at the end within 10% of
its RSS after warm-up.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.load import percentiles
from bench.loadtest.report import update_doc
from bench.stack import Stack, _wait, running_stack, served_weights
from bench.workload import DEFAULT_CORPUS
from twotower.beir import load_queries

log = logging.getLogger("loadtest")
ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
HEALTHZ_BUDGET_MS = 100.0
RSS_GROWTH_BUDGET = 0.10


def snapshot(stack: Stack) -> dict[str, dict[str, float]]:
    """Resident memory of each service's processes (master and workers), MiB."""
    return {p.name: p.memory_mib("VmRSS") for p in (stack.chroma, stack.ingest, stack.query)}


class Prober(threading.Thread):
    """GET /healthz on each URL every `every_s` seconds; latencies in ms, failures counted."""

    def __init__(self, urls: dict[str, str], every_s: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.urls, self.every_s = urls, every_s
        self.times: dict[str, list[float]] = {name: [] for name in urls}
        self.errors: dict[str, int] = dict.fromkeys(urls, 0)
        self.stopped = threading.Event()

    def run(self) -> None:
        clients = {name: httpx.Client(base_url=url, timeout=5) for name, url in self.urls.items()}
        while not self.stopped.wait(self.every_s):
            for name, client in clients.items():
                started = time.perf_counter()
                try:
                    ok = client.get("/healthz").status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.times[name].append((time.perf_counter() - started) * 1000)
                self.errors[name] += not ok
        for client in clients.values():
            client.close()

    def summary(self) -> dict[str, dict[str, float]]:
        out = {}
        for name, times in self.times.items():
            stats = percentiles(times)
            out[name] = {"probes": len(times), "errors": self.errors[name]}
            out[name].update({k: stats[k] for k in ("p50_ms", "p99_ms", "max_ms")})
        return out


def locust(
    query_url: str, users: int, seconds: int, prefix: Path, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    argv = [
        str(Path(sys.executable).with_name("locust")),
        *("-f", str(LOCUSTFILE), "--headless", "--only-summary", "--loglevel", "WARNING"),
        *("-u", str(users), "-r", str(users), "-t", f"{seconds}s", "--host", query_url, "--csv", str(prefix)),
    ]
    with prefix.with_suffix(".log").open("wb") as out:
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def locust_stats(prefix: Path) -> dict[str, Any]:
    with open(f"{prefix}_stats.csv", newline="") as f:
        (row,) = [r for r in csv.DictReader(f) if r["Name"] == "Aggregated"]
    return {
        "requests": int(row["Request Count"]),
        "errors": int(row["Failure Count"]),
        "throughput_rps": round(float(row["Requests/s"]), 2),
        "p50_ms": float(row["50%"]),
        "p99_ms": float(row["99%"]),
        "max_ms": round(float(row["Max Response Time"]), 1),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    key = secrets.token_hex(16)
    env = {**os.environ, "INGEST_API_KEY": key, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    # What docker-compose.yml sets beside the services' defaults.
    compose = {
        "INGEST_API_KEY": key,
        "QUERY_LOG_LEVEL": "info",
        "INGEST_LOG_LEVEL": "info",
        "RUST_LOG": "warn",
    }
    with tempfile.TemporaryDirectory(prefix="loadtest-") as tmp:
        work = Path(tmp)
        queries = work / "queries.txt"
        queries.write_text("\n".join(load_queries(args.corpus).values()) + "\n")
        env["LOADTEST_QUERIES"] = str(queries)
        started = time.monotonic()
        weights, _ = served_weights(args.weights_dir, work)
        log.info("starting Chroma and the services (data in %s)", work)
        with running_stack("onnx", weights, work, extra=compose) as stack:
            urls = {"query": stack.query.url, "ingest": stack.ingest.url}
            loader = [sys.executable, "-m", "services.loader", "--url", urls["ingest"]]
            subprocess.run(loader, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, timeout=900)
            _wait(stack.query, "/readyz", 60)  # its collection exists once documents are stored
            log.info(
                "stack up after %.0f s; warming up: %d clients for %d s",
                time.monotonic() - started,
                args.users,
                args.warmup,
            )
            warm = locust(urls["query"], args.users, args.warmup, work / "warmup", env)
            if warm.wait(timeout=args.warmup + 120) != 0:
                raise RuntimeError(f"warm-up locust failed: {(work / 'warmup.log').read_text()[-2000:]}")
            after_warmup = snapshot(stack)
            load_avg = os.getloadavg()

            log.info(
                "load: %d clients for %d s, loader posting %d documents", args.users, args.duration, args.docs
            )
            prober = Prober(urls)
            prober.start()
            clients = locust(urls["query"], args.users, args.duration, work / "search", env)
            loader_started = time.monotonic()
            loader += ["--corpus", str(args.corpus), "--limit", str(args.docs)]
            loader += ["--batch-size", str(args.batch_size)]
            with (work / "loader.log").open("wb") as out:
                loaded = subprocess.run(loader, cwd=ROOT, env=env, stdout=out, stderr=out, timeout=1800)
            loader_rc = loaded.returncode
            loader_s = time.monotonic() - loader_started
            clients_rc = clients.wait(timeout=args.duration + 120)
            prober.stopped.set()
            prober.join()
            end = snapshot(stack)
            search = locust_stats(work / "search")
            stored = httpx.get(f"{urls['ingest']}/stats", timeout=30).json()
        loader_tail = (work / "loader.log").read_text(errors="replace").strip().splitlines()[-1:]

    rss = {
        name: {
            "after_warmup_mib": round(sum(after_warmup[name].values()), 1),
            "end_mib": round(sum(end[name].values()), 1),
            "growth": round(sum(end[name].values()) / sum(after_warmup[name].values()) - 1, 4),
            "processes": len(end[name]),
            "each_after_warmup_mib": after_warmup[name],
            "each_end_mib": end[name],
        }
        for name in sorted(after_warmup.keys() & end.keys())
    }
    healthz = prober.summary()
    errors = (
        search["errors"] + (loader_rc != 0) + sum(h["errors"] for h in healthz.values()) + (clients_rc != 0)
    )
    checks = {
        "zero errors": errors == 0,
        f"/healthz p99 < {HEALTHZ_BUDGET_MS:g} ms": all(
            h["p99_ms"] < HEALTHZ_BUDGET_MS for h in healthz.values()
        ),
        f"RSS growth within {RSS_GROWTH_BUDGET:.0%}": all(
            abs(r["growth"]) <= RSS_GROWTH_BUDGET for r in rss.values()
        ),
    }
    return {
        "command": f"python -m bench.loadtest {args.raw}".strip(),
        "commit": _commit(),
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {"cpus": os.cpu_count(), "load_avg_1_5_15_at_start": [round(x, 2) for x in load_avg]},
        "users": args.users,
        "duration_s": args.duration,
        "search": search,
        "loader": {
            "documents": args.docs,
            "batch_size": args.batch_size,
            "exit_code": loader_rc,
            "seconds": round(loader_s, 1),
            "docs_per_s": round(args.docs / loader_s, 1),
            "last_line": loader_tail[0] if loader_tail else "",
            "collection_count_after": stored.get("count"),
        },
        "healthz": healthz,
        "rss": rss,
        "errors": errors,
        "checks": checks,
        "passed": all(checks.values()),
    }


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
    except OSError:
        return "unknown"
    return out.stdout.strip() or "unknown"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.loadtest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--users", type=int, default=16, help="concurrent search clients (default 16)")
    p.add_argument("--duration", type=int, default=60, help="seconds of search load (default 60)")
    p.add_argument("--warmup", type=int, default=30, help="seconds of search load before the RSS baseline")
    p.add_argument("--docs", type=int, default=1000, help="documents the loader posts (default 1000)")
    p.add_argument("--batch-size", type=int, default=64, help="loader documents per POST (its default)")
    p.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="BEIR folder: documents and queries")
    p.add_argument(
        "--weights-dir", type=Path, default=ROOT / "weights", help="published versions, as make run"
    )
    p.add_argument("--json", type=Path, default=ROOT / "docs" / "loadtest.json")
    p.add_argument("--doc", type=Path, default=ROOT / "docs" / "benchmarks.md")
    p.add_argument("--no-doc", action="store_true", help="write the JSON only")
    args = p.parse_args(argv)
    args.raw = " ".join(argv if argv is not None else sys.argv[1:])
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s loadtest | %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = parse_args(argv)
    results = run(args)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    if not args.no_doc:
        update_doc(args.doc, results, args.json)
    s, h, loader = results["search"], results["healthz"], results["loader"]
    failed = [k for k, ok in results["checks"].items() if not ok]
    log.info(
        f"search: {s['requests']} requests, {s['errors']} errors, {s['throughput_rps']:.1f} req/s, "
        f"p50 {s['p50_ms']:.0f} ms, p99 {s['p99_ms']:.0f} ms; /healthz p99 query {h['query']['p99_ms']:.1f} "
        f"ms, ingest {h['ingest']['p99_ms']:.1f} ms; loader {loader['documents']} docs in "
        f"{loader['seconds']:.0f} s; {'FAILED: ' + ', '.join(failed) if failed else 'PASSED'}"
    )
    return 0 if results["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
