"""What a service holds while it runs: its settings, the encoder it serves, and the Chroma store.

Created once in the app's lifespan (see each service's `main.py`), reached by handlers through
typed dependencies, released when the app shuts down.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from services.common.settings import ServiceSettings
from twotower.engine import Encoder, open_encoder
from twotower.index.store import ChromaStore
from twotower.registry import latest_version

log = logging.getLogger(__name__)

S = TypeVar("S", bound=ServiceSettings)


@dataclass
class ServiceState(Generic[S]):
    settings: S
    store: ChromaStore
    _encoder: Encoder | None

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            raise RuntimeError("the model has been released: the service is shutting down")
        return self._encoder

    @property
    def version(self) -> str:
        return self.encoder.version

    @property
    def model_loaded(self) -> bool:
        return self._encoder is not None

    @property
    def collection(self) -> str:
        return self.store.collection_name(self.version)

    def release(self) -> None:
        if self._encoder is not None:
            self._encoder.close()
        self._encoder = None


def open_state(settings: S) -> ServiceState[S]:
    """Load the encoder (pinned, LATEST or base) and set up the store. Chroma may still be down:
    the store connects lazily, and readiness reports it."""
    version = settings.model_version or latest_version(settings.weights_dir)
    encoder = open_encoder(
        [settings.weights_dir],
        version,
        engine=settings.engine,
        base_model=settings.base_model,
        device=settings.device,
    )
    store = ChromaStore(settings.chroma_host, settings.chroma_port, settings.collection_prefix)
    log.info(
        "model %s loaded (%s engine); Chroma at %s, collection %s",
        encoder.version,
        encoder.engine,
        store.address,
        store.collection_name(encoder.version),
    )
    return ServiceState(settings=settings, store=store, _encoder=encoder)


def lifespan(settings: S) -> Callable[[Any], AbstractAsyncContextManager[dict[str, ServiceState[S]]]]:
    """The app's lifespan: open the state once at start-up, expose it as `request.state.service`,
    release the model at shutdown."""

    @asynccontextmanager
    async def run(app: Any) -> AsyncIterator[dict[str, ServiceState[S]]]:
        state = open_state(settings)
        try:
            yield {"service": state}
        finally:
            state.release()

    return run
