"""The local stack (`make run`): Chroma, ingestion and query as separate local processes.

    python -m deploy.local.stack [--corpus PATH]

It runs what docker-compose.yml runs (see deploy/local/compose.py for how the file is mapped to
local hosts, ports and directories), waits until every service answers, loads the demo corpus
into an empty index with the loader CLI, prints example requests and stays in the foreground.
Ctrl-C (or SIGTERM) stops all three. Once everything is up, a service that dies is restarted, with
backoff (1 s doubling to 30 s), while the others keep serving; one that dies while the stack is
starting stops it, non-zero, with the last lines that service logged.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from deploy.local.compose import (
    ROOT,
    ComposeError,
    LocalLayout,
    LocalService,
    compose_variables,
    local_services,
)
from deploy.local.supervisor import ServiceExitedError, Supervisor
from twotower.engine.onnx_format import has_onnx
from twotower.registry import latest_version

log = logging.getLogger("stack")

READY_TIMEOUT = 600.0  # first start on a slow CPU: imports, model load per worker


class StopRequested(Exception):  # noqa: N818 - a request, not an error
    """SIGINT or SIGTERM: stop everything, cleanly."""


def _raise_shutdown(signum: int, frame: FrameType | None) -> None:
    raise StopRequested(signal.Signals(signum).name)


def child_environment(mapped: dict[str, str], root: Path) -> dict[str, str]:
    """The shell's environment as a container would see it, plus the service's mapped compose env.

    QUERY_* / INGEST_* variables from the shell are dropped: inside a container only the compose
    file sets them, and the local stack must behave the same (override them in .env instead).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUERY_", "INGEST_"))}
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    env.update({"PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    env.update(mapped)
    return env


def resolve(argv: list[str], env: dict[str, str]) -> list[str]:
    """The executable from the venv first (gunicorn, chroma), as the image's PATH puts its venv first."""
    found = shutil.which(argv[0], path=env["PATH"])
    if found is None:
        raise ComposeError(f"{argv[0]!r} not found on PATH (run `make install`)")
    return [found, *argv[1:]]


def ensure_ports_free(services: dict[str, LocalService], layout: LocalLayout) -> None:
    for name in services:
        port = layout.ports[name]
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((layout.host, port))
            except OSError:
                raise ComposeError(f"port {port} ({name}) is in use: is another stack running?") from None


def load_corpus(ingest_url: str, corpus: str, limit: int | None, env: dict[str, str]) -> None:
    """The loader CLI, in the foreground with its own progress bar; a non-empty index is left alone."""
    argv = [sys.executable, "-m", "services.loader", "--url", ingest_url, "--if-empty"]
    if corpus:
        argv += ["--corpus", corpus]
    if limit:
        argv += ["--limit", str(limit)]
    log.info("loading the demo corpus: %s", shlex.join(argv[1:]))
    subprocess.run(argv, env=env, cwd=ROOT, check=True)


def ensure_servable_model(weights_dir: Path, env: dict[str, str]) -> None:
    """The default engine (onnx) serves published versions only: publish the untrained base model
    with its ONNX export when nothing is published, and export LATEST when it has no ONNX yet."""
    version = latest_version(weights_dir)
    if version is not None and has_onnx(weights_dir / version):
        return
    argv = [sys.executable, "-m", "twotower.engine.export", "--weights-dir", str(weights_dir)]
    if version is None:
        argv += ["--base", "--out", str(weights_dir)]
    log.info("no servable model in %s yet: %s", weights_dir, shlex.join(argv[1:]))
    subprocess.run(argv, env=env, cwd=ROOT, check=True)


def examples(services: dict[str, LocalService], api_key: str) -> str:
    query, ingest = services["query"].url, services["ingest"].url
    key = f"-H 'X-API-Key: {api_key}' " if api_key else ""
    doc = '{"documents": [{"id": "hello-1", "title": "Greeting", "text": "Hello from the local stack."}]}'
    return "\n".join(
        [
            "",
            f"Search is up: {query}/docs (query API) and {ingest}/docs (ingestion API). Try:",
            f"  curl -s {query}/search -H 'Content-Type: application/json' "
            """-d '{"query": "how does a for loop work", "k": 3}'""",
            f"  curl -s {ingest}/documents {key}-H 'Content-Type: application/json' -d '{doc}'",
            f"  curl -s {ingest}/documents/hello-1",
            f"  curl -s -X DELETE {key}{ingest}/documents/hello-1",
            f"  curl -s {ingest}/stats",
            "The ingestion API key is INGEST_API_KEY in .env. Ctrl-C stops all three services.",
            "",
        ]
    )


def run(args: argparse.Namespace) -> int:
    layout = LocalLayout(
        ports={"chroma": args.chroma_port, "ingest": args.ingest_port, "query": args.query_port},
        data_dir=args.data_dir.resolve(),
        weights_dir=args.weights_dir.resolve(),
    )
    if not os.environ.get("INGEST_API_KEY"):
        subprocess.run([str(ROOT / "deploy" / "ensure-env.sh")], check=True)
    variables = compose_variables(ROOT)
    services = local_services(layout, variables=variables)
    ensure_ports_free(services, layout)
    layout.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        ensure_servable_model(layout.weights_dir, child_environment({}, ROOT))
    except subprocess.CalledProcessError as exc:
        log.error("could not publish a model to serve: %s", exc)
        return 1

    supervisor = Supervisor()
    started = time.monotonic()
    try:
        for service in services.values():
            env = child_environment(service.env, ROOT)
            log.info("starting %s: %s", service.name, shlex.join(service.argv))
            supervisor.start(service.name, resolve(service.argv, env), env, ROOT)
            if service.name == "chroma":  # the services need it up to become ready
                supervisor.wait_http(service.ready_url, READY_TIMEOUT)
        for service in services.values():
            supervisor.wait_http(service.ready_url, READY_TIMEOUT)
        log.info("all services up after %.0fs", time.monotonic() - started)

        api_key = variables.get("INGEST_API_KEY", "")
        loader_env = child_environment({"INGEST_API_KEY": api_key}, ROOT)
        load_corpus(services["ingest"].url, args.corpus, args.limit, loader_env)
        # The query service is ready once its model version's collection exists, i.e. now.
        supervisor.wait_http(services["query"].url + "/readyz", 60)
        sys.stdout.write(examples(services, api_key) + "\n")
        sys.stdout.flush()
        log.info("serving search after %.0fs; a service that dies is restarted", time.monotonic() - started)
        supervisor.watch()
    except StopRequested as exc:
        log.info("%s: stopping all services", exc)
        return 0
    except ServiceExitedError as exc:
        log.error("%s; stopping the others. Its last lines:\n%s", exc, "\n".join(exc.tail))
        return exc.returncode or 1
    except (subprocess.CalledProcessError, TimeoutError, ComposeError) as exc:
        log.error("%s; stopping all services", exc)
        return 1
    finally:
        # A second Ctrl-C must not cut the shutdown short and leave children behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        supervisor.stop()
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--corpus", default="", help="BEIR folder or JSONL file to load (default: the demo corpus)"
    )
    parser.add_argument("--limit", type=int, default=None, help="load at most this many documents")
    parser.add_argument("--query-port", type=int, default=8000)
    parser.add_argument("--ingest-port", type=int, default=8001)
    parser.add_argument("--chroma-port", type=int, default=8002)
    parser.add_argument(
        "--data-dir", type=Path, default=ROOT / "data", help="Chroma keeps its data in DIR/chroma"
    )
    parser.add_argument("--weights-dir", type=Path, default=ROOT / "weights", help="published model versions")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s  stack | %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # readiness polls are not news
    signal.signal(signal.SIGINT, _raise_shutdown)
    signal.signal(signal.SIGTERM, _raise_shutdown)
    try:
        return run(parse_args(argv))
    except ComposeError as exc:
        log.error("%s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
