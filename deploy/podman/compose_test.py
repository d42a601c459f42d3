"""`make compose-test`: build the images, run docker-compose.yml under podman, check it end to end.

The images are built from the unchanged Dockerfiles, the unchanged docker-compose.yml is brought up
under podman, and the whole system is checked through its published ports.

    python -m deploy.podman.compose_test [--project NAME]   (as root; make compose-test)

Steps (each asserted; the run stops at the first failure and still cleans up):
  1. podman's Docker-compatible API on a private socket (`podman system service`), and a health-check
     ticker (deploy/podman/health_ticker.py: podman runs HEALTHCHECKs from systemd timers otherwise);
  2. the stand-in base images (deploy/podman/standin-images.sh: test fixtures, never pushed);
  3. `docker-compose build` of query, ingest and trainer, with the local torch CPU wheel offered to
     the builds through deploy/wheels/ (`TORCH_FIND_LINKS=/wheels`), nothing else changed;
  4. `docker-compose up -d`; every service healthy; only 8000 and 8001 published; non-root services
     with the weights volume read-only;
  5. the demo corpus loaded with the trainer image's loader (README's command); search on 8000;
     post, get, search and delete on 8001/8000 with the key from .env (401 without it);
     hostile probes: 1 MB and 128 MB headers answered 431 (or closed) within 1 s, before all is sent,
     while /healthz answers in < 100 ms; no log line forged by %0a or %0d%0a; a POST over
     INGEST_MAX_REQUEST_CHARS refused (413) with nothing of it stored;
  6. Chroma's container restarted, then `down` + `up`: every document found again each time;
  7. the trainer profile: a frozen-backbone 1-epoch run publishes a new version to the weights volume
     (LATEST moves), which the services see on their read-only mount;
  8. `python -m ops.rollout <new version>` from the trainer image: both services serve it within
     a minute, with no container restarted, and every document is found again.
On exit, whatever happened: `down -v` (containers, network, volumes), anything else labelled with the
project removed, the ticker and the API service stopped. The built images stay (the next run's cache).
Timings and image sizes go to .cache/compose-test/last-run.json (docs/benchmarks.md cites them).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deploy.podman.engine import HERE, ROOT, CheckError, Engine, check, http_json, wait_http
from deploy.podman.probes import REFUSED, healthz_timed, huge_header

CACHE = ROOT / ".cache" / "compose-test"
PUBLISHED = {8000, 8001}
QUERY, INGEST = "http://127.0.0.1:8000", "http://127.0.0.1:8001"
TRAIN = ["--no-train-backbone", "--epochs", "1"]

log = logging.getLogger("compose-test")


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def env_key() -> str:
    subprocess.run([str(ROOT / "deploy" / "ensure-env.sh")], check=True, timeout=30)
    for line in (ROOT / ".env").read_text().splitlines():
        if line.startswith("INGEST_API_KEY="):
            key = line.split("=", 1)[1].strip()
            check(key, ".env has an empty INGEST_API_KEY")
            return key
    raise CheckError(".env has no INGEST_API_KEY")


def torch_wheel() -> Path | None:
    """Put this machine's torch CPU wheel (the one the lock pins) into deploy/wheels/."""
    pin = next(
        line.split("==")[1].split()[0]
        for line in (ROOT / "requirements" / "train.lock").read_text().splitlines()
        if line.startswith("torch==")
    )
    source_dir = Path(os.environ.get("TORCH_WHEELS_DIR", "/opt/wheels"))
    found = sorted(source_dir.glob(f"torch-{pin}-cp311-*.whl"))
    if not found:
        log.info("no torch %s wheel in %s: the builds download it from PyTorch's CPU index", pin, source_dir)
        return None
    target = ROOT / "deploy" / "wheels" / found[0].name
    if not target.exists():
        shutil.copyfile(found[0], target)
    return target


@contextlib.contextmanager
def step(name: str, timings: dict[str, float]) -> Iterator[None]:
    log.info("== %s", name)
    started = time.monotonic()
    yield
    timings[name] = round(time.monotonic() - started, 1)
    log.info("== %s: ok (%.1f s)", name, timings[name])


def demo_ids(engine: Engine) -> list[str]:
    code = "from twotower.corpus import open_corpus\nfor d in open_corpus(None).documents: print(d['id'])"
    out = engine.compose("run", "--rm", "--no-deps", "trainer", "python", "-c", code, timeout=300).stdout
    return out.split()


def find_everything(ids: list[str], kept: dict[str, str], count: int) -> None:
    """Every demo document and the kept posted one are there, and a search finds the kept one first."""
    status, stats = http_json("GET", f"{INGEST}/stats")
    check(status == 200 and stats["count"] == count, f"/stats: {status} {stats}, expected count {count}")
    missing = [i for i in ids + list(kept) if http_json("GET", f"{INGEST}/documents/{i}")[0] != 200]
    check(not missing, f"documents missing: {missing[:10]} ({len(missing)} in all)")
    for doc_id, text in kept.items():
        status, found = http_json("POST", f"{QUERY}/search", {"query": text, "k": 3})
        check(status == 200 and found["results"][0]["id"] == doc_id, f"search for {doc_id}: {status} {found}")


def check_containers(engine: Engine) -> None:
    published: set[int] = set()
    for info in engine.containers():
        service = info["Config"]["Labels"]["com.docker.compose.service"]
        for bindings in (info["HostConfig"].get("PortBindings") or {}).values():
            published |= {int(b["HostPort"]) for b in bindings or [] if b.get("HostPort")}
        if service in ("query", "ingest"):
            uid = engine.run("podman", "exec", info["Id"], "id", "-u", quiet=True).stdout.strip()
            check(uid != "0", f"{service} runs as root")
            weights = [m for m in info["Mounts"] if m["Destination"] == "/weights"]
            check(
                len(weights) == 1 and not weights[0]["RW"], f"{service}: /weights is not read-only: {weights}"
            )
            denied = engine.run(
                "podman", "exec", info["Id"], "touch", "/weights/x", check_rc=False, quiet=True
            )
            check(denied.returncode != 0, f"{service} could write to /weights")
    check(published == PUBLISHED, f"published ports {sorted(published)}, expected {sorted(PUBLISHED)}")


def hostile_probes(engine: Engine, key: str) -> dict[str, Any]:
    """The probes of the module docstring, through the published ports; what they measured."""
    sent: list[tuple[int, int, float, str]] = []  # port, bytes, seconds, answer
    deadline = time.monotonic() + 30
    with healthz_timed(QUERY, INGEST) as healthz:
        while len(sent) < 8 or min(map(len, healthz.values())) < 20:  # /healthz meanwhile
            check(time.monotonic() < deadline, f"/healthz answered too few times meanwhile: {healthz}")
            for port, path in ((8001, "/documents"), (8000, "/search")):
                for size in (1 << 20, 128_000_000):
                    answer, seconds, all_out = huge_header(port, path, size)
                    sent.append((port, size, round(seconds, 3), answer[:12].decode() or "closed"))
                    check(answer[:12] in (b"", b"HTTP/1.1 431") and seconds < 1, f"{sent[-1]}")
                    check(size < 1e8 or not all_out, f"{sent[-1]}: all sent before the answer")
    for url, times in healthz.items():  # one late probe is the shared host's scheduling
        check(sorted(times)[-2] < 0.1 and max(times) < 1, f"{url}/healthz slowest: {sorted(times)[-5:]}")
    logs: dict[str, list[str]] = {}
    deadline = time.monotonic() + 10
    for service, url in (("query", QUERY), ("ingest", INGEST)):
        forged = f"ERROR forged-on-{service}"
        http_json("GET", f"{url}/documents/x%0a{forged}?q=1%0d%0a{forged}".replace(" ", "%20"))
        while not any(forged in line for line in logs.get(service, [])):
            check(time.monotonic() < deadline, f"{service}: the forged request is not logged")
            out = engine.run("podman", "logs", engine.container(service)["Id"], quiet=True)
            logs[service] = (out.stdout + out.stderr).splitlines()
        check(not [ln for ln in logs[service] if ln.startswith(forged)], f"{service}: a log line forged")
    refused = [float(ms) for lines in logs.values() for ms in REFUSED.findall("\n".join(lines))]
    check(len(refused) >= len(sent) and max(refused) < 100, f"server-side ms to 431: {refused}")
    big = [{"id": f"compose-test-big-{i}", "text": "word " * 20_000} for i in range(6)]
    status, answer = http_json("POST", f"{INGEST}/documents", {"documents": big}, key=key)
    check(status == 413 and "INGEST_MAX_REQUEST_CHARS" in str(answer), f"600,000 chars: {status} {answer}")
    stored = [d["id"] for d in big if http_json("GET", f"{INGEST}/documents/{d['id']}")[0] != 404]
    check(not stored, f"stored from the refused POST: {stored}")
    report = {
        "heads": dict(Counter(f"{port} {size} B: {answer}" for port, size, _, answer in sent)),
        "client_s_max": {
            f"{size} B": max(h[2] for h in sent if h[1] == size) for size in (1 << 20, 128_000_000)
        },
        "server_ms_max": max(refused),
        "healthz_ms_max": {url: round(max(t) * 1000, 1) for url, t in healthz.items()},
        "healthz_answers": {url: len(t) for url, t in healthz.items()},
        "413": answer,
    }
    log.info("probes: %s", report)
    return report


def run(engine: Engine, timings: dict[str, float], report: dict[str, Any]) -> None:
    with step("podman API service and health-check ticker", timings):
        engine.start()
    with step("stand-in base images", timings):
        subprocess.run([str(HERE / "standin-images.sh")], cwd=ROOT, env=engine.env, check=True, timeout=1800)
    key = env_key()
    build_args = ["--build-arg", "TORCH_FIND_LINKS=/wheels"] if torch_wheel() else []
    with step("build", timings):
        engine.compose("build", *build_args, timeout=3600)
    report["images"] = {
        name: int(engine.run("podman", "image", "inspect", "--format", "{{.Size}}", name, quiet=True).stdout)
        for name in (
            "twotower-query:latest",
            "twotower-ingest:latest",
            "twotower-trainer:latest",
            f"chromadb/chroma:{chroma_version()}",
            "python:3.11-slim",
        )
    }
    with step("up until every service is healthy", timings):
        engine.compose("up", "-d", timeout=900)
        engine.wait_healthy()
    timings["up to ready"] = timings["up until every service is healthy"]
    for url in (f"{QUERY}/healthz", f"{INGEST}/healthz"):
        check(http_json("GET", url)[0] == 200, f"{url} is not 200")
    check_containers(engine)

    with step("demo corpus loaded with the trainer image's loader", timings):
        out = engine.compose(
            "run", "--rm", "trainer", "python", "-m", "services.loader", "--url", "http://ingest:8001", "--if-empty",
            timeout=1200,
        )  # fmt: skip
        log.info(
            "loader: %s", out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr[-300:]
        )
        ids = demo_ids(engine)
        check(len(ids) > 50, f"demo corpus ids: {len(ids)}")
    with step("search on 8000; post, get, delete on 8001", timings):
        status, found = http_json("POST", f"{QUERY}/search", {"query": "how does a for loop work", "k": 3})
        check(status == 200, f"/search: {status} {found}")
        check("for" in [r["id"] for r in found["results"]], f"'for' not in the top 3: {found['results']}")
        docs = {
            "compose-test-kept": "Podman ran this stack from the unchanged compose file on a sandboxed host.",
            "compose-test-deleted": "A short-lived note about lighthouse keepers counting seabirds at dawn.",
        }
        body = {
            "documents": [
                {"id": i, "text": t, "metadata": {"source": "compose-test"}} for i, t in docs.items()
            ]
        }
        status, _ = http_json("POST", f"{INGEST}/documents", body)
        check(status == 401, f"POST without the key: {status}, expected 401")
        status, answer = http_json("POST", f"{INGEST}/documents", body, key=key)
        check(status == 200 and answer["upserted"] == 2, f"POST with the key: {status} {answer}")
        for doc_id, text in docs.items():
            status, doc = http_json("GET", f"{INGEST}/documents/{doc_id}")
            check(status == 200 and doc["text"] == text, f"GET {doc_id}: {status} {doc}")
        status, _ = http_json("DELETE", f"{INGEST}/documents/compose-test-deleted", key=key)
        check(status in (200, 204), f"DELETE: {status}")
        check(
            http_json("GET", f"{INGEST}/documents/compose-test-deleted")[0] == 404,
            "deleted document still there",
        )
        kept = {"compose-test-kept": docs["compose-test-kept"]}
        count = len(ids) + 1
        find_everything(ids, kept, count)
    with step("hostile probes: huge headers, forged log lines, a POST over the character bound", timings):
        report["probes"] = hostile_probes(engine, key)

    with step("Chroma restarted: every document found again", timings):
        engine.compose("restart", "chroma", timeout=180)
        engine.wait_healthy(("chroma",))
        wait_http(f"{QUERY}/readyz")
        find_everything(ids, kept, count)
    with step("down, then up: every document found again", timings):
        engine.compose("down", timeout=300)
        check(not engine.containers(all_=True), "containers left after down")
        engine.compose("up", "-d", timeout=900)
        engine.wait_healthy()
        wait_http(f"{QUERY}/readyz")
        find_everything(ids, kept, count)

    with step("trainer profile: a frozen-backbone 1-epoch run publishes a version", timings):
        before = http_json("GET", f"{QUERY}/")[1]["model_version"]
        command = ["python", "-m", "training.train", "--data", "/data/scifact", "--weights-dir", "/weights"]
        out = engine.compose("run", "--rm", "trainer", *command, "--wandb-dir", "/runs", *TRAIN, timeout=2400)
        log.info("trainer: %s", out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "")
        uid = engine.compose("run", "--rm", "--no-deps", "trainer", "id", "-u").stdout.strip()
        check(uid != "0", "the trainer runs as root")
        latest = engine.compose(
            "run", "--rm", "--no-deps", "trainer", "cat", "/weights/LATEST"
        ).stdout.strip()
        check(latest and latest != before, f"LATEST is {latest!r}; the services served {before!r}")
        # The services see it on their read-only mount of the same volume.
        for service in ("query", "ingest"):
            cid = engine.container(service)["Id"]
            seen = engine.run("podman", "exec", cid, "cat", f"/weights/{latest}/config.json", quiet=True)
            check(
                seen.stdout.strip().startswith("{"), f"{service} does not see /weights/{latest}/config.json"
            )
        check_containers(engine)

    with step("rollout of the new version from the trainer image: the services switch, no restart", timings):
        started = {
            s: (c["Id"], c["State"]["StartedAt"]) for s in ("query", "ingest") for c in [engine.container(s)]
        }
        engine.compose(
            "run", "--rm", "trainer", "python", "-m", "ops.rollout", latest,
            "--weights-dir", "/weights", "--chroma-host", "chroma", "--chroma-port", "8000", "--engine", "onnx",
            timeout=1200,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while {http_json("GET", f"{url}/")[1]["model_version"] for url in (QUERY, INGEST)} != {latest}:
            check(time.monotonic() < deadline, f"the services do not serve {latest} 60 s after the rollout")
            time.sleep(1)
        now = {
            s: (c["Id"], c["State"]["StartedAt"]) for s in ("query", "ingest") for c in [engine.container(s)]
        }
        check(now == started, f"a service was restarted by the rollout: {started} -> {now}")
        wait_http(f"{QUERY}/readyz")
        find_everything(ids, kept, count)
    report["model_version"] = latest


def chroma_version() -> str:
    for line in (ROOT / "requirements" / "chroma.lock").read_text().splitlines():
        if line.startswith("chromadb=="):
            return line.split("==")[1].split()[0]
    raise CheckError("chromadb not in requirements/chroma.lock")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.podman.compose_test", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--project", default="twotower-compose-test", help="compose project name")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="[compose-test %(asctime)s] %(message)s", datefmt="%H:%M:%S"
    )
    for port in sorted(PUBLISHED):
        if port_in_use(port):
            log.error("port %d is in use on this host; stop what listens there first", port)
            return 2
    CACHE.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    report: dict[str, Any] = {"timings_s": timings}
    started = time.monotonic()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="compose-test-") as workdir:
        engine = Engine(args.project, Path(workdir))
        ok = False
        try:
            run(engine, timings, report)
            ok = True
        except (CheckError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
            log.error("FAILED: %s", error)
            if engine.service_log.exists():
                log.error("podman service log (tail):\n%s", engine.service_log.read_text()[-2000:])
        finally:
            log.info("cleaning up: down -v, project containers/volumes/networks, ticker, API service")
            engine.cleanup()
    timings["total"] = round(time.monotonic() - started, 1)
    report["ok"] = ok
    (CACHE / "last-run.json").write_text(json.dumps(report, indent=2) + "\n")
    sizes = ", ".join(f"{k} {v / 1e6:.0f} MB" for k, v in report.get("images", {}).items())
    verdict = "passed" if ok else "FAILED"
    log.info("compose-test %s in %.0f s (build %.0f s, up to ready %.0f s); %s", verdict, timings["total"],
             timings.get("build", 0), timings.get("up to ready", 0), sizes)  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
