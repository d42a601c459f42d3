"""The search clients of `make loadtest`: each user posts /search back to back (a closed loop, no
think time), with a query drawn from LOADTEST_QUERIES (one per line) or a built-in list."""

from __future__ import annotations

import os
import random
from pathlib import Path

from locust import FastHttpUser, constant, task

QUERIES_FILE = os.environ.get("LOADTEST_QUERIES")
QUERIES = (
    [q for q in Path(QUERIES_FILE).read_text().splitlines() if q.strip()]
    if QUERIES_FILE
    else ["how does a for loop work", "exceptions and tracebacks", "what is a list comprehension"]
)


class Searcher(FastHttpUser):
    wait_time = constant(0)

    @task
    def search(self) -> None:
        with self.client.post(
            "/search", json={"query": random.choice(QUERIES), "k": 10}, name="/search", catch_response=True
        ) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
