"""What a service holds while it runs: its settings, the model it serves, and the Chroma store.

Created once in the app's lifespan (see each service's `main.py`), reached by handlers through
typed dependencies, released when the app shuts down.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import torch

from services.common.modelload import load_serving_model
from services.common.settings import ServiceSettings
from services.common.store import ChromaStore
from twotower import DualTowerWithFC

log = logging.getLogger(__name__)

S = TypeVar("S", bound=ServiceSettings)


@dataclass
class ServiceState(Generic[S]):
    settings: S
    version: str
    store: ChromaStore
    _model: DualTowerWithFC | None
    # Hugging Face fast tokenizers are not safe to call from several threads at once ("Already
    # borrowed"), and FastAPI runs sync handlers in a thread pool: one encode at a time per process.
    model_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def model(self) -> DualTowerWithFC:
        if self._model is None:
            raise RuntimeError("the model has been released: the service is shutting down")
        return self._model

    @property
    def model_loaded(self) -> bool:
        return self._model is not None

    @property
    def collection(self) -> str:
        return self.store.collection_name(self.version)

    def release(self) -> None:
        self._model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def open_state(settings: S) -> ServiceState[S]:
    """Load the model (pinned, LATEST or base) and set up the store. Chroma may still be down:
    the store connects lazily, and readiness reports it."""
    model, version = load_serving_model(
        settings.weights_dir, settings.model_version, settings.base_model, settings.device
    )
    store = ChromaStore(settings.chroma_host, settings.chroma_port, settings.collection_prefix)
    log.info(
        "model %s loaded; Chroma at %s, collection %s", version, store.address, store.collection_name(version)
    )
    return ServiceState(settings=settings, version=version, store=store, _model=model)


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
