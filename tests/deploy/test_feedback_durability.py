"""Durability of search feedback: every acknowledged `POST /feedback` survives kill -9 of Chroma and
the query service (alone, while feedback is being sent, and all processes at once), and search ids
issued before the kill stay valid after it (their key lives in Chroma, not in a process).

The stack is test_durability's (the compose file's own commands, real processes). Marked
`durability`: `make test-durability` runs it, `make test` does not.
"""

from __future__ import annotations

import threading
import time
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import wait_http
from tests.deploy.test_durability import Processes, post, stack  # noqa: F401 - `stack` is a fixture
from twotower.index.feedback import FeedbackLog
from twotower.index.store import ChromaStore

pytestmark = pytest.mark.durability
DOCS = [
    {"id": f"fbd-{i}", "text": f"Note {i} about topic {i % 7}: {' '.join(['word'] * (i % 5 + 3))}."}
    for i in range(40)
]


def searches(procs: Processes, n: int) -> list[dict[str, object]]:
    with httpx.Client(timeout=60) as http:
        return [
            http.post(
                f"{procs.urls['query']}/search", json={"query": f"topic {i % 7} note {i}", "k": 5}
            ).json()
            for i in range(n)
        ]


def send(http: httpx.Client, procs: Processes, answer: dict[str, object], rank: int) -> httpx.Response:
    results = answer["results"]
    assert isinstance(results, list)
    body = {"search_id": answer["search_id"], "clicked": [results[rank]["id"]]}
    for _ in range(100):  # a client that honours the rate limit (QUERY_FEEDBACK_RATE_PER_S: 429)
        response = http.post(f"{procs.urls['query']}/feedback", json=body)
        if response.status_code != 429:
            return response
        time.sleep(float(response.headers.get("Retry-After") or 0.25))
    return response


def stored_ids(procs: Processes) -> set[str]:
    chroma = urlsplit(procs.urls["chroma"])
    store = ChromaStore(chroma.hostname or "127.0.0.1", chroma.port or 8000, "docs")
    return {e.id for e in FeedbackLog(store).events()}


def test_acknowledged_feedback_survives_kill_9(stack: Processes) -> None:  # noqa: F811 - the fixture
    assert post(stack, DOCS).status_code == 200
    wait_http(f"{stack.urls['query']}/readyz", timeout=120)
    answers = searches(stack, 60)
    acknowledged: set[str] = set()
    with httpx.Client(timeout=30) as http:
        for answer in answers[:20]:
            response = send(http, stack, answer, 0)
            assert response.status_code == 200, response.text
            acknowledged.add(response.json()["id"])

    # Feedback keeps coming while Chroma, then the query service, die.
    stop = threading.Event()

    def flood() -> None:
        with httpx.Client(timeout=10) as http:
            for answer in answers[20:]:
                if stop.is_set():
                    return
                try:
                    response = send(http, stack, answer, 1)
                except httpx.HTTPError:
                    continue  # the process is down: not acknowledged
                if response.status_code == 200:
                    acknowledged.add(response.json()["id"])

    sender = threading.Thread(target=flood)
    sender.start()
    stack.kill("chroma")
    stack.start("chroma")
    stack.kill("query")
    stack.start("query")
    sender.join(timeout=120)
    stop.set()
    assert stored_ids(stack) >= acknowledged

    stack.kill("chroma", "ingest", "query")
    stack.start("chroma", "ingest", "query")
    assert stored_ids(stack) >= acknowledged
    # A search id issued before every process died is still valid: the key is in Chroma.
    with httpx.Client(timeout=30) as http:
        response = send(http, stack, answers[0], 2)
    assert response.status_code == 200, response.text
    assert response.json()["id"] in stored_ids(stack)
