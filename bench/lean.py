"""`python -m bench.lean`: how near the in-process floor can a server get at all?

Issue 9 asks for an HTTP p50 at most 1.3× the in-process floor (encode one query + one Chroma
query, `bench.floor`). This measures, in one run and taking turns slice by slice:

    service                     the query service as `make bench` runs it (gunicorn, FastAPI)
    lean, search in a thread    `LeanApp` under uvicorn: the service's own `search()` on the same
                                state (model, store, metrics), but no routing, middleware,
                                dependency injection or exception handlers; the search runs in a
                                pool thread as the service runs it
    lean, search on the loop    the same with the search on the event loop: no thread hop, but the
                                worker answers nothing else (probes included) while a search runs
    floor                       `bench.floor.Floor`, in this process

with the bench's own client (`bench.load.Searches`: one connection, dense, k=10) on one onnx stack
(the services' defaults). Each server is measured with two clients, taking turns: httpx (what
`make bench` and the peer comparison use) and `bench.load.PlainClient` (the standard library's
`http.client`), whose difference is the client's own share of the HTTP latency. The lean servers
are not products: they answer nothing but `POST /search` and `GET /healthz`, and exist to tell
what leaving FastAPI would buy.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from bench.__main__ import load_average, served_weights
from bench.floor import Floor, floor_threads
from bench.load import CLIENTS, ClientKind, Ingestion, Searches, rotations
from bench.stack import Process, _process, _service_env, _wait, free_port, running_stack
from bench.workload import DEFAULT_CORPUS, load_workload
from services.query.config import Settings as QuerySettings
from services.query.schemas import SearchRequest, SearchResponse

log = logging.getLogger("bench.lean")
ROOT = Path(__file__).resolve().parents[1]

SERVICE = "service"
LEAN = {"lean, search in a thread": "thread", "lean, search on the loop": "inline"}
_JSON = [(b"content-type", b"application/json")]


class LeanApp:
    """`POST /search` and `GET /healthz` as one raw ASGI callable. The body is validated by
    `SearchRequest` (a 422 with pydantic's errors otherwise), `search` answers it, `SearchResponse`
    serializes the answer. `inline`: the search runs on the event loop instead of a pool thread."""

    def __init__(self, search: Callable[[SearchRequest], SearchResponse], *, inline: bool) -> None:
        self.search, self.inline = search, inline

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["method"] == "GET" and scope["path"] == "/healthz":
            await _answer(send, 200, b'{"status":"ok"}')
        elif scope["method"] == "POST" and scope["path"] == "/search":
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            try:
                request = SearchRequest.model_validate_json(body)
            except ValidationError as exc:
                detail = exc.json(include_url=False, include_context=False, include_input=False)
                await _answer(send, 422, b'{"detail":' + detail.encode() + b"}")
                return
            if self.inline:
                result = self.search(request)
            else:
                result = await run_in_threadpool(self.search, request)
            await _answer(send, 200, result.model_dump_json().encode())
        else:
            await _answer(send, 404, b'{"detail":"Not Found"}')


async def _answer(send: Send, status: int, body: bytes) -> None:
    headers = [*_JSON, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def serve(mode: str, port: int) -> None:
    """A `LeanApp` on 127.0.0.1:`port` over the query service's state, opened from its QUERY_*
    settings as its lifespan opens it (encoder wrappers and metrics included)."""
    import uvicorn

    from services.common.observability import observed
    from services.common.state import open_state
    from services.query.batching import query_batching
    from services.query.search import search

    settings = QuerySettings()
    state = open_state(settings, "query", None, query_batching(settings), observed("query"))
    try:
        app = LeanApp(partial(search, state), inline=mode == "inline")
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", lifespan="off",
            log_level="warning", access_log=False,
        )  # fmt: skip
        uvicorn.Server(config).run()
    finally:
        state.release()


@contextmanager
def running_lean(mode: str, env: dict[str, str], log_path: Path) -> Iterator[Process]:
    port = free_port()
    argv = [sys.executable, "-m", "bench.lean", "serve", "--mode", mode, "--port", str(port)]
    with _process(f"lean {mode}", argv, env, f"http://127.0.0.1:{port}", log_path) as process:
        _wait(process, "/healthz")
        yield process


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command")
    s = sub.add_parser("serve", help="one lean server (what a run starts for itself)")
    s.add_argument("--mode", choices=sorted(set(LEAN.values())), required=True)
    s.add_argument("--port", type=int, required=True)
    p.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="BEIR folder (empty: pydoc topics)")
    p.add_argument("--weights-dir", type=Path, default=ROOT / "weights")
    p.add_argument("--docs", type=int, default=256)
    p.add_argument("--queries", type=int, default=200, help="distinct queries, sent in slices")
    p.add_argument("--rounds", type=int, default=12, help="slices of `--slice` queries per server")
    p.add_argument("--slice", type=int, default=50)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--query-workers", type=int, default=2, help="the service's (and the floor's threads)")
    p.add_argument(
        "--clients",
        type=_clients,
        default=["httpx", "stdlib"],
        help="comma-separated HTTP clients to measure every server with: httpx, stdlib",
    )
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "lean.json")
    return p.parse_args(argv)


def _clients(value: str) -> list[ClientKind]:
    names = [c.strip() for c in value.split(",") if c.strip()]
    unknown = sorted(set(names) - set(CLIENTS))
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"clients are among {', '.join(CLIENTS)}: got {value!r}")
    return [CLIENTS[c] for c in dict.fromkeys(names)]


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = parse_args(argv)
    if args.command == "serve":
        serve(args.mode, args.port)
        return 0
    work = load_workload(args.corpus or None, args.docs, args.queries)
    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average_start": load_average(),
    }
    with tempfile.TemporaryDirectory(prefix="bench-lean-") as tmp, ExitStack() as running:
        scratch = Path(tmp)
        weights, version = served_weights(args.weights_dir, scratch)
        stack = running.enter_context(
            running_stack("onnx", weights, scratch / "stack", query_workers=args.query_workers)
        )
        with httpx.Client(base_url=stack.ingest.url, timeout=600) as http:
            ingestion = Ingestion(64)
            for i in range(0, len(work.documents), 64):
                ingestion.post(http, work.documents[i : i + 64])
        if ingestion.errors:
            raise RuntimeError(f"{ingestion.errors} ingestion errors")
        env = _service_env("QUERY_", {**stack.settings, "workers": str(args.query_workers)})
        urls = {SERVICE: stack.query.url}
        for name, mode in LEAN.items():
            urls[name] = running.enter_context(running_lean(mode, env, scratch / f"lean-{mode}.log")).url
        variant = QuerySettings.model_fields["onnx_variant"].default
        threads = floor_threads(args.query_workers)
        floor = Floor("onnx", weights, version, stack.chroma_port, stack.prefix, args.k, threads, variant)
        running.callback(floor.close)
        searches = {(name, c): Searches(1, args.k, client=c) for name in urls for c in args.clients}
        for name, c in searches:  # warm-up, not kept
            Searches(1, args.k, client=c).run(urls[name], work.queries[:10])
        floor.run(work.queries[:10], record=False)
        slices = max(1, len(work.queries) // args.slice)
        begun = time.perf_counter()
        for r, order in rotations(list(searches), args.rounds):
            part = work.queries[(r % slices) * args.slice : (r % slices + 1) * args.slice]
            for name, c in order:
                searches[name, c].run(urls[name], part)
            floor.run(part)
        results["seconds"] = round(time.perf_counter() - begun, 1)
    floor_summary = floor.summary()
    floor_p50 = floor_summary["total"]["p50_ms"]
    results.update(
        load_average_end=load_average(),
        model_version=version,
        documents=len(work.documents),
        floor=floor_summary,
        servers={},
    )
    for (name, c), s in searches.items():
        summary = s.summary()
        summary["http_p50_over_floor"] = round(summary["client"]["p50_ms"] / floor_p50, 3)
        results["servers"].setdefault(name, {})[c] = summary
        log.info(
            "%-26s %-6s p50 %6.2f ms (took_ms p50 %5.2f), %s× the floor; errors %d",
            name,
            c,
            summary["client"]["p50_ms"],
            summary["server_took"]["p50_ms"],
            summary["http_p50_over_floor"],
            summary["errors"],
        )
    log.info(
        "floor p50 %.2f ms (encode %.2f + Chroma %.2f)",
        floor_p50,
        floor_summary["encode"]["p50_ms"],
        floor_summary["chroma_query"]["p50_ms"],
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    log.info("wrote %s", args.out)
    errors = sum(s.errors for s in searches.values())
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
