"""What a service holds while it runs: its settings, the model it serves, and the Chroma store.

Created once in the app's lifespan (see each service's `main.py`), reached by handlers through
typed dependencies, released when the app shuts down.
"""

from __future__ import annotations

import gc
import logging
import threading
from dataclasses import dataclass, field
from typing import Generic, TypeVar

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
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:  # pragma: no cover - torch is a dependency of the model package
            pass


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
