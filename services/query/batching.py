"""Micro-batching of concurrent queries: one forward pass for the queries that arrive together.

`/search` runs in the server's thread pool, one thread per request. Encoding a batch of n short
queries costs far less than n single encodes (the matrix products use the cores better), so
`BatchingEncoder` combines them: a thread whose query arrives while the encoder is idle encodes at
once (no added latency for a lone client); queries arriving while a batch is being encoded wait
and go together in the next one, encoded by whichever of their threads gets the encoder first
(flat combining: no extra thread, no timer). `window_ms` optionally holds a batch open a little
longer to gather more.

On by default for the torch engine only (`QUERY_MICRO_BATCH` decides otherwise): on the 2-core CPU
the benchmark showed torch serving more queries/s at 8 clients batched, and onnx fp32 fewer; the
default int8 query tower runs one text per pass, so batching it would gain nothing.

A `BatchingEncoder` wraps exactly one `Encoder`, so one model version: a request that encodes
through it is answered by that version (`encoder.version`), even while the service swaps to another.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np
from tokenizers import Tokenizer

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


class BatchingEncoder:
    """An `Encoder` whose single-query `encode_queries` calls from concurrent threads are batched.
    Everything else (documents, several queries at once) goes straight to the wrapped encoder."""

    def __init__(self, inner: Encoder, max_batch: int = 32, window_ms: float = 0.0) -> None:
        self.inner = inner
        self.engine = inner.engine
        self.version = inner.version
        self.dim = inner.dim
        self.max_seq_length = inner.max_seq_length
        self.batch_size = inner.batch_size
        self.max_batch = max_batch
        self.window_s = window_ms / 1000
        self._queue: list[_Pending] = []
        self._queue_lock = threading.Lock()
        self._encoding = threading.Lock()  # held by the thread encoding a batch
        self.batches = 0  # batches encoded, and the queries in them (read by tests and the bench)
        self.batched_queries = 0

    @property
    def tokenizer(self) -> Tokenizer:
        return self.inner.tokenizer

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
        if self.window_s:
            time.sleep(self.window_s)
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
        self.batched_queries += len(batch)
        for pending, vector in zip(batch, vectors, strict=True):
            pending.vector = vector
            pending.done.set()

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.encode_documents(texts)

    def close(self) -> None:
        self.inner.close()


def query_batching(settings: QuerySettings) -> Callable[[Encoder], Encoder] | None:
    """What the query service wraps each encoder it opens in: a batcher where micro-batching is on
    (`QUERY_MICRO_BATCH`; unset = for the torch engine), never for an encoder that runs one text per
    forward pass anyway (onnx int8), where batching would only queue concurrent queries behind one
    thread (8 clients: 155 against 166 queries/s unbatched)."""
    if settings.micro_batch is False:
        return None
    batching = partial(BatchingEncoder, max_batch=settings.micro_batch_max)

    def wrap(encoder: Encoder) -> Encoder:
        wanted = settings.micro_batch if settings.micro_batch is not None else encoder.engine == "torch"
        return batching(encoder) if wanted and encoder.batch_size > 1 else encoder

    return wrap
