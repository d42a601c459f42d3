"""The encoders a service process holds: one per live model version, loaded once on first use
(concurrent requests wait for the one load), let go when the serving pointer no longer names it."""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future

import numpy as np
from tokenizers import Tokenizer

from services.common.settings import ServiceSettings
from twotower.engine import TOWERS, Encoder, Tower, find_published, open_encoder

log = logging.getLogger(__name__)


class WrappedEncoder:
    """An Encoder that hands every call to `inner`; a subclass overrides the calls it changes."""

    def __init__(self, inner: Encoder) -> None:
        self.inner = inner
        self.engine, self.version, self.dim = inner.engine, inner.version, inner.dim
        self.max_seq_length, self.batch_size = inner.max_seq_length, inner.batch_size

    @property
    def tokenizer(self) -> Tokenizer:
        return self.inner.tokenizer

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.encode_queries(texts)

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.encode_documents(texts)

    def close(self) -> None:
        self.inner.close()


class Models:
    def __init__(self, settings: ServiceSettings, *, towers: Sequence[Tower] = TOWERS) -> None:
        self.settings = settings
        self.roots = settings.model_roots()
        # The towers this service runs (loaded up front; onnx loads another only if asked).
        self.towers = tuple(towers)
        self._lock = threading.Lock()
        self._loads: dict[str, Future[Encoder]] = {}
        # The untrained base model, when nothing is published: served under its own content-
        # derived version, which is only known once it is loaded.
        self._base: Encoder | None = None
        # Applied, in order, to every encoder as it is loaded: the query service's micro-batcher
        # (services/query/batching.py), then metrics timing (services/common/observability.py).
        self.wrappers: list[Callable[[Encoder], Encoder]] = []

    def default_version(self) -> str:
        """What to serve when the index has no serving pointer yet: the pinned version, else the
        newest published one, else the untrained base model."""
        version = self.settings.model_version or find_published(self.roots)
        if version is not None:
            return version
        if self._base is None:
            log.warning("nothing published in %s: serving the untrained base model", self.roots)
            self._base = self._open(None)
            with self._lock:
                done: Future[Encoder] = Future()
                done.set_result(self._base)
                self._loads[self._base.version] = done
        return self._base.version

    def get(self, version: str) -> Encoder:
        """The encoder of `version`, loading it if this process has not yet (raises ArtifactError
        when it is not published anywhere this process looks)."""
        with self._lock:
            future = self._loads.get(version)
            owner = future is None
            if future is None:
                future = self._loads[version] = Future()
        if owner:
            try:
                encoder = self._open(version)
            except BaseException as exc:
                with self._lock:
                    self._loads.pop(version, None)
                future.set_exception(exc)
                raise
            future.set_result(encoder)
            log.info("model version %s loaded (%s engine)", version, encoder.engine)
        return future.result()

    def retain(self, versions: Iterable[str]) -> list[str]:
        """Let go of every version but `versions`; return those released. Requests still running
        on one keep it alive until they finish (it is freed when the last reference goes)."""
        keep = set(versions)
        with self._lock:
            gone = [v for v in self._loads if v not in keep and self._loads[v].done()]
            for version in gone:
                del self._loads[version]
        if gone:
            gc.collect()
            log.info("released model versions %s", ", ".join(gone))
        return gone

    def _open(self, version: str | None) -> Encoder:
        s = self.settings
        encoder = open_encoder(
            self.roots,
            version,
            engine=s.engine,
            base_model=s.base_model,
            device=s.device,
            threads=s.encoder_threads(),
            towers=self.towers,
            variant=s.onnx_variant,
            backend=s.onnx_backend,
        )
        for wrap in self.wrappers:
            encoder = wrap(encoder)
        return encoder
