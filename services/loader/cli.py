"""`python -m services.loader`: load a corpus into the ingestion API, in batches, with progress."""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

from tqdm import tqdm

from services.common.limits import grouped
from twotower.client import IngestClient, LoaderError
from twotower.corpus import batches, open_corpus
from twotower.limits import INGEST_MAX_REQUEST_CHARS

log = logging.getLogger("services.loader")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m services.loader",
        description="Load a corpus into the ingestion API over HTTP. Default corpus: Python's own "
        "language reference topics (pydoc_data), available offline.",
    )
    parser.add_argument("--url", default="http://localhost:8001", help="ingestion API base URL")
    parser.add_argument(
        "--corpus", default=None, help="BEIR folder (corpus.jsonl) or .jsonl file; default: pydoc topics"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="documents per POST (default 64)")
    parser.add_argument(
        "--max-chars",
        type=int,
        default=INGEST_MAX_REQUEST_CHARS,
        help="characters of text and titles per POST at most (the service's INGEST_MAX_REQUEST_CHARS)",
    )
    parser.add_argument("--limit", type=int, default=None, help="load at most N documents")
    parser.add_argument(
        "--if-empty", action="store_true", help="do nothing when the index already has documents"
    )
    parser.add_argument(
        "--wait", type=float, default=0, metavar="SECONDS", help="first wait up to SECONDS for /readyz"
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("INGEST_API_KEY") or None,
        help="sent as X-API-Key (default: $INGEST_API_KEY)",
    )
    parser.add_argument("--retries", type=int, default=5, help="retries per batch on connection errors/5xx")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per request")
    args = parser.parse_args(argv)
    if min(args.batch_size, args.max_chars) < 1 or min(args.limit or 0, args.retries) < 0:
        parser.error("--batch-size and --max-chars must be >= 1, --limit and --retries >= 0")
    return args


def within(batches: Iterable[list[dict[str, Any]]], chars: int) -> Iterator[list[dict[str, Any]]]:
    """Each batch split further so that none holds more than `chars` characters of text and titles
    (a single longer document goes alone: the service's per-document bound is its own)."""
    for batch in batches:
        yield from grouped(batch, chars, lambda d: len(d.get("text") or "") + len(d.get("title") or ""))


def load(args: argparse.Namespace) -> str:
    """Do the work; return the one-line summary."""
    corpus = open_corpus(args.corpus, args.limit)  # first, so a wrong path fails at once
    with IngestClient(args.url, args.api_key, retries=args.retries, timeout_s=args.timeout) as client:
        if args.wait:
            client.wait_ready(args.wait)
        if args.if_empty:
            stats = client.stats()
            if stats["count"] > 0:
                return f"{stats['collection']} already holds {stats['count']} documents: nothing loaded (--if-empty)"
        started, loaded, posts, collection = time.monotonic(), 0, 0, "?"
        with tqdm(total=corpus.total, unit="doc", desc="loading") as bar:
            for batch in within(batches(corpus.documents, args.batch_size), args.max_chars):
                answer = client.post_documents(batch)
                loaded, posts, collection = loaded + answer["upserted"], posts + 1, answer["collection"]
                bar.update(len(batch))
        elapsed = time.monotonic() - started
        count = client.stats()["count"]
    notes = "".join(f"; {n} {what}" for what, n in corpus.notes.items())
    return (
        f"loaded {loaded} documents from {corpus.name} into {collection} in {posts} requests, "
        f"{elapsed:.1f}s ({loaded / max(elapsed, 1e-9):.1f} docs/s); the index now holds {count}{notes}"
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = parse_args(argv)
    try:
        log.info(load(args))
    except (LoaderError, OSError, ValueError) as exc:
        log.error("loader failed: %s", exc)
        return 1
    return 0
