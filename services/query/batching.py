"""Micro-batching of concurrent queries: one forward pass for the queries that arrive together.

`/search` runs in the server's thread pool, one thread per request. A query arriving while the
encoder is idle is encoded at once (no added latency for a lone client); queries arriving while a
batch is being encoded wait and go together in the next one, encoded by whichever of their threads
gets the encoder first (flat combining: no extra thread, no timer).

A `BatchingEncoder` wraps exactly one `Encoder`, so one model version: a request that encodes
through it is answered by that version, even while the service swaps to another.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from services.common.models import WrappedEncoder
from services.query.config import Settings as QuerySettings
from twotower.engine import Encoder

# Longest a query waits for its batch before it gives up (a wedged encoder, not a slow one).
WAIT_TIMEOUT_S = 60.0


@dataclass
class _Pending:
    text: str
    done: threading.Event = field(default_factory=threading.Event)
    vector: np.ndarray | None = None
    error: BaseException | None = None


class BatchingEncoder(WrappedEncoder):
    """An `Encoder` whose single-query `encode_queries` calls from concurrent threads are batched.
    Everything else (documents, several queries at once) goes straight to the wrapped encoder."""

    def __init__(self, inner: Encoder, max_batch: int = 32) -> None:
        super().__init__(inner)
        self.max_batch = max_batch
        self._queue: list[_Pending] = []
        self._queue_lock = threading.Lock()
        self._encoding = threading.Lock()  # held by the thread encoding a batch
        self.batches = 0  # batches encoded (read by the tests)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) != 1:
            return self.inner.encode_queries(texts)
        return self.encode_query(texts[0])[np.newaxis]

    def encode_query(self, text: str) -> np.ndarray:
        item = _Pending(text)
        with self._queue_lock:
            self._queue.append(item)
        deadline = time.monotonic() + WAIT_TIMEOUT_S
        while not item.done.is_set():
            if not self._encoding.acquire(timeout=max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"query not encoded within {WAIT_TIMEOUT_S:.0f}s")
            try:
                if not item.done.is_set():  # another thread may have encoded it meanwhile
                    self._encode_next_batch()
            finally:
                self._encoding.release()
        if item.error is not None:
            raise item.error
        assert item.vector is not None
        return item.vector

    def _encode_next_batch(self) -> None:
        with self._queue_lock:
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
        if not batch:
            return
        try:
            vectors = self.inner.encode_queries([p.text for p in batch])
        except BaseException as exc:  # every waiter raises the encoder's own error
            for pending in batch:
                pending.error = exc
                pending.done.set()
            return
        self.batches += 1
        for pending, vector in zip(batch, vectors, strict=True):
            pending.vector = vector
            pending.done.set()


def query_batching(settings: QuerySettings) -> Callable[[Encoder], Encoder] | None:
    """What the query service wraps each encoder it opens in: a batcher where micro-batching is on
    (`QUERY_MICRO_BATCH`; unset = for the torch engine), never for an encoder that runs one text per
    forward pass anyway (onnx int8), where batching would only queue concurrent queries behind one
    thread."""
    if settings.micro_batch is False:
        return None
    batching = partial(BatchingEncoder, max_batch=settings.micro_batch_max)

    def wrap(encoder: Encoder) -> Encoder:
        wanted = settings.micro_batch if settings.micro_batch is not None else encoder.engine == "torch"
        return batching(encoder) if wanted and encoder.batch_size > 1 else encoder

    return wrap
