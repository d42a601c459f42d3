"""`python -m bench.chroma_race` counts every read try Chroma failed apart from the reads that
failed for the caller: with Chroma failing one query try in five (injected), it counts those tries
and the store's retries leave the caller no failure.

Chroma itself also fails a query that races a write now and then (about one in 7,000: what the
bench measures), so the tries the real server failed during the run are counted beside the
injected ones: the totals must match both, exactly."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from chromadb.errors import ChromaError, InternalError

from bench.chroma_race import race
from tests.conftest import ChromaServer
from twotower.index.chroma_client import QueryTransport


def test_failed_tries_are_counted_and_retried(
    chroma_server: ChromaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    real: Callable[..., Any] = QueryTransport.query
    tries = [0]
    injected = "Error executing plan: Internal error: Error finding id"
    real_failures: list[str] = []  # what the server failed on its own, racing the writer

    def every_fifth_fails(*args: Any, **kwargs: Any) -> Any:
        tries[0] += 1
        if tries[0] % 5 == 0:
            raise InternalError(injected)
        try:
            return real(*args, **kwargs)
        except ChromaError as exc:
            real_failures.append(exc.message())
            raise

    monkeypatch.setattr(QueryTransport, "query", every_fifth_fails)
    result = race(chroma_server.host, chroma_server.port, records=50, seconds=1.5, writers=1, readers=1)
    failed = tries[0] // 5 + len(real_failures)
    assert result["queries"] >= 10
    assert result["read_tries_chroma_failed"]["query"] == failed
    assert result["read_tries"] == result["queries"] + failed
    reasons = sorted({f"Chroma failed (query): {message}" for message in [injected, *real_failures]})
    assert result["retried_because"] == reasons[:5]  # as many as the bench reports
    assert result["reads_failed_for_the_caller"] == 0, result["errors"]
