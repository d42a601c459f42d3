"""`python -m bench.chroma_race` counts every read try Chroma failed apart from the reads that
failed for the caller: with Chroma failing one query try in five (injected), it counts those tries
and the store's retries leave the caller no failure."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from chromadb.errors import InternalError

from bench.chroma_race import race
from tests.conftest import ChromaServer
from twotower.index.chroma_client import QueryTransport


def test_failed_tries_are_counted_and_retried(
    chroma_server: ChromaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    real: Callable[..., Any] = QueryTransport.query
    tries = [0]

    def every_fifth_fails(*args: Any, **kwargs: Any) -> Any:
        tries[0] += 1
        if tries[0] % 5 == 0:
            raise InternalError("Error executing plan: Internal error: Error finding id")
        return real(*args, **kwargs)

    monkeypatch.setattr(QueryTransport, "query", every_fifth_fails)
    result = race(chroma_server.host, chroma_server.port, records=50, seconds=1.5, writers=1, readers=1)
    assert result["queries"] >= 10
    assert result["read_tries_chroma_failed"]["query"] == tries[0] // 5
    assert result["read_tries"] == result["queries"] + tries[0] // 5
    assert result["retried_because"] == [
        "Chroma failed (query): Error executing plan: Internal error: Error finding id"
    ]
    assert result["reads_failed_for_the_caller"] == 0, result["errors"]
