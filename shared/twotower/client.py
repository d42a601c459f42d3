"""A client of the ingestion API with the loader's retry policy: transport errors and 5xx answers
are retried with exponential backoff (posting the same ids again is safe: the API upserts), 4xx
answers are not."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

log = logging.getLogger(__name__)


class LoaderError(RuntimeError):
    """The API refused a request (4xx), or kept failing after every retry."""


class _RetryableError(Exception):
    """An attempt that may succeed when sent again: a transport error or a 5xx answer."""


def _reason(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    return f"HTTP {response.status_code}: {detail}"


class IngestClient:
    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        retries: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        timeout_s: float = 300.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        headers = {"X-API-Key": api_key} if api_key else {}
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)
        self.retries, self.backoff_s, self.max_backoff_s = retries, backoff_s, max_backoff_s
        self.sleep = sleep

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> IngestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(
        self,
        method: str,
        path: str,
        on_failure: Callable[[httpx.Response], dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Send, retrying transport errors and 5xx answers with backoff. `on_failure` sees each 5xx
        answer and returns the keyword arguments of the next attempt (default: the same)."""

        def attempt() -> dict[str, Any]:
            nonlocal kwargs
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                raise _RetryableError(f"{type(exc).__name__}: {exc}") from exc
            if response.status_code >= 500:
                if on_failure is not None:
                    kwargs = on_failure(response)
                raise _RetryableError(_reason(response))
            if response.status_code >= 400:
                raise LoaderError(f"{method} {self.url}{path} was refused: {_reason(response)}")
            body: dict[str, Any] = response.json()
            return body

        retrying = Retrying(
            stop=stop_after_attempt(self.retries + 1),
            wait=wait_exponential(multiplier=self.backoff_s, max=self.max_backoff_s),
            retry=retry_if_exception_type(_RetryableError),
            sleep=self.sleep,
            before_sleep=lambda state: log.warning(
                "%s %s failed (%s); retry %d/%d in %.1fs",
                method,
                path,
                state.outcome and state.outcome.exception(),
                state.attempt_number,
                self.retries,
                state.upcoming_sleep,
            ),
            reraise=True,
        )
        try:
            return retrying(attempt)
        except _RetryableError as exc:
            raise LoaderError(
                f"{method} {self.url}{path} failed after {self.retries + 1} attempts: {exc}"
            ) from exc

    def stats(self) -> dict[str, Any]:
        return self._request("GET", "/stats")

    def post_documents(self, documents: list[dict[str, Any]]) -> dict[str, Any]:
        """Post a batch; after a 503 listing the `stored` ids, retry only the rest (both are counted)."""
        remaining, stored = list(documents), 0

        def resume(response: httpx.Response) -> dict[str, Any]:
            nonlocal remaining, stored
            try:
                done = set(response.json().get("stored") or ())
            except ValueError:
                done = set()
            if done:
                stored += len(done)
                remaining = [d for d in remaining if d["id"] not in done]
                log.warning("%d documents of the batch were stored before the failure; resuming", len(done))
            return {"json": {"documents": remaining}}

        answer = self._request("POST", "/documents", resume, json={"documents": remaining})
        return {**answer, "upserted": int(answer["upserted"]) + stored}

    def wait_ready(self, seconds: float, poll_s: float = 1.0) -> None:
        """Poll /readyz until it answers 200, for at most `seconds`."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                response = self.http.get("/readyz", timeout=10)
                if response.status_code == 200:
                    return
                last = _reason(response)
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                raise LoaderError(f"{self.url} not ready after {seconds:g}s: {last}")
            time.sleep(poll_s)
