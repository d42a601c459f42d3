"""The local stack (`make run`): Chroma, ingestion and query as local processes, as compose runs them.

It publishes the untrained base model when --weights-dir has nothing servable, runs each service of
docker-compose.yml (deploy/local/compose.py) under honcho, loads the demo corpus into an empty index
in the background and reports "serving search" once /search answers with results. Ctrl-C stops all
three; so does a service that exits (honcho's rule: compose and k8s restart services, this launcher
does not), after that service's last lines.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from dotenv import dotenv_values
from honcho.manager import Manager

from deploy.local.compose import ROOT, ComposeError, LocalLayout, LocalService, local_services
from twotower.engine.onnx_format import has_onnx
from twotower.registry import latest_version

log = logging.getLogger("stack")
READY_TIMEOUT_S = 900.0  # a first start on a busy CPU: imports, a model per worker, the first batch
BATCH = 8  # documents per POST of the demo corpus: search has results after the first one
PROBE = {"query": "how does a for loop work", "k": 3}


def child_environment(mapped: dict[str, str]) -> dict[str, str]:
    """The caller's environment, the venv first on PATH (as in the images), then the compose env."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return env | {"PATH": str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")} | mapped


def ensure_servable_model(weights_dir: Path) -> None:
    """The default engine (onnx) serves published versions only: publish the untrained base model
    with its ONNX export when nothing is published, export LATEST when it has no ONNX yet."""
    version = latest_version(weights_dir)
    if version is not None and has_onnx(weights_dir / version):
        return
    argv = [sys.executable, "-m", "twotower.engine.export", "--weights-dir", str(weights_dir)]
    log.info("preparing the model: exporting %s to ONNX, once (a minute or so)", version or "the base model")
    argv += ["--base", "--out", str(weights_dir)] if version is None else []
    subprocess.run(argv, env=child_environment({}), cwd=ROOT, check=True)


def answers(url: str, body: dict[str, object] | None = None) -> bool:
    """GET url answers 200, or POST body to it answers 200 with results."""
    try:
        response = httpx.get(url, timeout=5) if body is None else httpx.post(url, json=body, timeout=30)
        return response.status_code == 200 and (body is None or bool(response.json()["results"]))
    except httpx.HTTPError:
        return False


def load_corpus(args: argparse.Namespace, ingest: str, key: str) -> subprocess.Popen[bytes]:
    """The loader CLI, in the background, into an empty index only."""
    argv = ["-m", "services.loader", "--url", ingest, "--if-empty", "--batch-size", str(BATCH)]
    argv += ["--corpus", args.corpus] if args.corpus else []
    argv += ["--limit", str(args.limit)] if args.limit else []
    log.info("loading the demo corpus: %s", shlex.join(argv))
    return subprocess.Popen([sys.executable, *argv], env=child_environment({"INGEST_API_KEY": key}), cwd=ROOT)


def bring_up(args: argparse.Namespace, services: dict[str, LocalService], key: str, state: dict) -> None:
    """Beside honcho's loop: wait for the services, load the corpus, report; on failure stop all."""
    query, ingest = services["query"].url, services["ingest"].url
    checks = [(s.name, s.ready_url, None) for s in services.values()]
    if args.limit != 0:
        checks.append(("search with results", query + "/search", PROBE))
    try:
        for what, url, body in checks:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while not answers(url, body):
                loader = state.get("loader")
                if loader is not None and loader.poll() not in (None, 0):
                    raise RuntimeError(f"the corpus loader exited with status {loader.returncode}")
                if state["stopped"].is_set() or time.monotonic() > deadline:
                    raise TimeoutError(f"{what}: not ready after {READY_TIMEOUT_S:.0f}s")
                time.sleep(1)
            if what == "ingest" and args.limit != 0:  # while the query workers load their models
                state["loader"] = load_corpus(args, ingest, key)
        key_header = f"-H 'X-API-Key: {key}' " if key else ""
        doc = '{"documents": [{"id": "hello", "text": "Hello from the local stack."}]}'
        sys.stdout.write(
            f"\nSearch is up: {query}/docs (query API) and {ingest}/docs (ingestion API). Try:\n"
            f"  curl -s {query}/search -H 'Content-Type: application/json' -d '{json.dumps(PROBE)}'\n"
            f"  curl -s {ingest}/documents {key_header}-H 'Content-Type: application/json' -d '{doc}'\n"
            "The ingestion API key is INGEST_API_KEY in .env. Ctrl-C stops all three services.\n\n"
        )
        loader = state.get("loader")
        rest = "; the rest of the corpus loads in the background" if loader and loader.poll() is None else ""
        log.info("serving search after %.0fs%s", time.monotonic() - state["started"], rest)
        if loader is not None:
            if loader.wait() != 0:
                raise RuntimeError(f"the corpus loader exited with status {loader.returncode}")
            log.info("the whole corpus is loaded, after %.0fs", time.monotonic() - state["started"])
    except Exception as exc:  # any failure here stops the stack, reported
        if not state["stopped"].is_set():
            log.error("%s; stopping all services", exc)
            state["failed"] = True
            state["manager"].terminate()


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    ports = {"chroma": args.chroma_port, "ingest": args.ingest_port, "query": args.query_port}
    layout = LocalLayout(ports, args.data_dir.resolve(), args.weights_dir.resolve())
    if not os.environ.get("INGEST_API_KEY"):
        subprocess.run([str(ROOT / "deploy" / "ensure-env.sh")], check=True)
    variables = {k: v or "" for k, v in dotenv_values(ROOT / ".env").items()} | dict(os.environ)
    services = local_services(layout, variables, os.environ)
    for name, port in ports.items():
        with socket.socket() as s:
            if s.connect_ex((layout.host, port)) == 0:
                raise ComposeError(f"port {port} ({name}) is in use; stop what listens there")
    layout.data_dir.mkdir(parents=True, exist_ok=True)
    ensure_servable_model(layout.weights_dir)

    manager = Manager()
    for s in services.values():
        manager.add_process(s.name, shlex.join(s.argv), env=child_environment(s.env), cwd=str(ROOT))
    state = {"manager": manager, "stopped": threading.Event(), "started": started, "failed": False}
    key = variables.get("INGEST_API_KEY", "")
    threading.Thread(target=bring_up, args=(args, services, key, state), daemon=True).start()
    manager.loop()  # until Ctrl-C, SIGTERM or a service exits: then it stops them all
    state["stopped"].set()
    if state.get("loader") is not None:
        state["loader"].terminate()  # no-op once it has finished
    log.info("all services stopped")
    return 1 if state["failed"] else 0 if manager.returncode in (None, 130, 143) else manager.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--corpus", default="", help="BEIR folder or JSONL file to load (default: the demo)")
    parser.add_argument("--limit", type=int, default=None, help="load at most N documents (0: none)")
    for name, port in (("query", 8000), ("ingest", 8001), ("chroma", 8002)):
        parser.add_argument(f"--{name}-port", type=int, default=port)
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data", help="Chroma's data: DIR/chroma")
    parser.add_argument("--weights-dir", type=Path, default=ROOT / "weights", help="published model versions")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s  stack | %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # readiness polls are not news
    try:
        return run(args)
    except (ComposeError, subprocess.CalledProcessError) as exc:
        log.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
