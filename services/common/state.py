"""What a service holds while it runs: its settings, the Chroma store, its model versions, and
what it serves right now.

`current` is a `Serving` snapshot (version, encoder, document index) that a request takes once, so
a request is answered wholly by one version. A watcher thread reads the serving pointer every
`pointer_poll_s` and, when a rollout promoted another version, loads it and swaps `current`: no restart.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar, cast

from fastapi import Request

from services.common.models import Models
from services.common.settings import ServiceSettings
from twotower.engine import Encoder, Tower
from twotower.index.documents import DocumentIndex, IndexMismatch
from twotower.index.migration import passage_config_of
from twotower.index.passages import PassageConfig
from twotower.index.serving import Pointer, ServingPointer
from twotower.index.store import ChromaStore, CollectionMissing, HnswSettings, StoreUnavailable
from twotower.registry import ArtifactError

log = logging.getLogger(__name__)

S = TypeVar("S", bound=ServiceSettings)
Role = Literal["query", "ingest"]
# The one tower each service runs (ingestion's tokenizer, for passages, needs no tower).
ROLE_TOWERS: dict[Role, tuple[Tower, ...]] = {"query": ("query",), "ingest": ("document",)}


@dataclass(frozen=True)
class Serving:
    """One version, as requests use it."""

    version: str
    encoder: Encoder
    index: DocumentIndex
    pointer: Pointer | None  # None while the pointer could not be read yet (Chroma down at start)


class ServiceState(Generic[S]):
    def __init__(
        self, settings: S, store: ChromaStore, models: Models, passage_config: PassageConfig, role: Role
    ) -> None:
        self.settings, self.store, self.models = settings, store, models
        self.passage_config, self.role = passage_config, role
        self.pointer = ServingPointer(store)
        self.on_swap: list[Callable[[Serving], None]] = []
        self.problem: str | None = None  # why the last look at the pointer failed
        self._current: Serving | None = None
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    # -- what requests use -----------------------------------------------------------------
    @property
    def current(self) -> Serving:
        if self._current is None:
            raise RuntimeError("the service is shutting down")
        return self._current

    @property
    def version(self) -> str:
        return self.current.version

    @property
    def encoder(self) -> Encoder:
        return self.current.encoder

    @property
    def collection(self) -> str:
        return self.current.index.collection

    @property
    def model_loaded(self) -> bool:
        return self._current is not None

    def index(self, version: str, encoder: Encoder | None = None) -> DocumentIndex:
        # Requests read through it; ingestion's writes get their own index (IndexWriter).
        config = passage_config_of(self.store, version, self.passage_config, for_reading=True)
        return DocumentIndex(self.store, version, encoder, config)

    # -- following the pointer -------------------------------------------------------------
    def start(self) -> None:
        """Load what to serve: the pointer's version when Chroma answers, else the default
        (the watcher corrects it as soon as Chroma is back)."""
        try:
            self.refresh()
        except StoreUnavailable as exc:
            self.problem = f"serving pointer unreadable: {exc}"
            log.warning("%s; serving the default version until Chroma answers", self.problem)
            version = self.models.default_version()
            self._swap(Serving(version, self.models.get(version), self.index(version), None))

    def refresh(self) -> Serving:
        """Read the pointer (creating it on first start) and serve what it says."""
        with self._refresh_lock:
            pointer = self.pointer.read()
            if pointer is None:
                pointer = self.pointer.initialize(self.models.default_version())
            current = self._current
            if current is None or current.version != pointer.version:
                encoder = self.models.get(pointer.version)
                index = self.index(pointer.version, encoder)
                # An existing collection built by another model is refused (a missing one is made
                # by the first ingest).
                with contextlib.suppress(CollectionMissing):
                    index.check()
                self._swap(Serving(pointer.version, encoder, index, pointer))
            elif current.pointer != pointer:
                self._current = Serving(current.version, current.encoder, current.index, pointer)
            if self.role == "ingest" and pointer.target:
                self.models.get(pointer.target)  # preload the dual-write tower
            self.models.retain(pointer.versions())
            self.problem = None
            return self.current

    def _swap(self, serving: Serving) -> None:
        previous = self._current
        self._current = serving
        if previous is not None:
            log.info("now serving model version %s (was %s)", serving.version, previous.version)
        for hook in self.on_swap:
            hook(serving)

    def watch(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self.settings.pointer_poll_s):
                try:
                    self.refresh()
                except (StoreUnavailable, ArtifactError, IndexMismatch, OSError) as exc:
                    if str(exc) != self.problem:
                        log.warning("serving pointer: %s", exc)
                    self.problem = str(exc)

        self._watcher = threading.Thread(target=loop, name="pointer-watch", daemon=True)
        self._watcher.start()

    def release(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        self._current = None
        self.models.retain(())


def state_of(request: Request) -> ServiceState[Any]:
    """The state the app's lifespan (below) put on the request."""
    return cast(ServiceState[Any], request.state.service)


async def get_state(request: Request) -> ServiceState[Any]:
    """`state_of` as a dependency: `async` though it awaits nothing, because FastAPI runs a plain
    function dependency in its thread pool (a thread hop per request for one attribute read)."""
    return state_of(request)


def lifespan(
    settings: S,
    role: Role,
    passage_config: PassageConfig | None = None,
    wrap: Callable[[Encoder], Encoder] | None = None,
    instrument: Callable[[ServiceState[S]], None] | None = None,
    hnsw: HnswSettings | None = None,
) -> Callable[[Any], AbstractAsyncContextManager[dict[str, ServiceState[S]]]]:
    """The app's lifespan: open the state once at start-up (the store, which connects lazily, and
    the version to serve, loaded), expose it as `request.state.service`, follow the serving pointer
    while it runs, release the models at shutdown. `wrap`: what the service wraps each encoder in;
    `instrument` runs before anything is loaded (metrics hooks); `hnsw`: what collections the
    service creates are built with (ingestion's settings)."""

    @asynccontextmanager
    async def run(app: Any) -> AsyncIterator[dict[str, ServiceState[S]]]:
        store = ChromaStore(
            settings.chroma_host,
            settings.chroma_port,
            settings.collection_prefix,
            connect_timeout_s=settings.chroma_connect_timeout_s,
            timeout_s=settings.chroma_timeout_s,
            hnsw=hnsw,
        )
        models = Models(settings, towers=ROLE_TOWERS[role])
        if wrap is not None:
            models.wrappers.append(wrap)
        state = ServiceState(settings, store, models, passage_config or PassageConfig(), role)
        if instrument is not None:
            instrument(state)
        state.start()
        log.info(
            "serving model version %s (%s engine); Chroma at %s, collection %s",
            state.version,
            state.encoder.engine,
            store.address,
            state.collection,
        )
        state.watch()
        try:
            yield {"service": state}
        finally:
            state.release()

    return run
