"""The Chroma server over HTTP: connection, timeouts, errors, and record-level operations.

Every call is bounded in time (`chroma_client.TimedClient`), no lock is held while a request is on
the wire, and every failure becomes StoreUnavailable (unreachable, stalled or 5xx: a 503; StoreFailed
is the 5xx case), StoreRejected (4xx: a 422), InvalidFilter (a refused `where`: a 422) or
CollectionMissing. Writes go out in chunks within the server's max batch size and far under its
40 MiB payload limit; `PartialWrite` names what was stored when a later chunk failed. Collections
are named `<prefix>-<name>`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import numpy as np
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection
from chromadb.errors import ChromaError, NotFoundError
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_chain, wait_fixed

from twotower.index.chroma_client import QueryTransport, connect

log = logging.getLogger(__name__)

MetadataValue = str | int | float | bool
Metadata = dict[str, MetadataValue]
# Far below Chroma's 40 MiB request limit: JSON size is estimated, not exact.
DEFAULT_MAX_PAYLOAD_BYTES = 16 * 1024 * 1024
# Pauses before sending a read that Chroma failed (StoreFailed) again: three tries in all.
READ_RETRY_PAUSES_S = (0.01, 0.05)
T = TypeVar("T")


class StoreUnavailable(Exception):  # noqa: N818 - named for what clients see
    """The Chroma server cannot be reached, timed out, or failed: a 503 for clients."""


class StoreFailed(StoreUnavailable):
    """Chroma answered, with a server error (a 5xx): it was neither unreachable nor stalled."""


# Thread-safe: tenacity keeps each call's state in a thread-local.
_READ_RETRY = Retrying(
    stop=stop_after_attempt(len(READ_RETRY_PAUSES_S) + 1),
    wait=wait_chain(*map(wait_fixed, READ_RETRY_PAUSES_S)),
    retry=retry_if_exception_type(StoreFailed),
    before_sleep=lambda state: log.info(
        "%s; sending the read again in %.2f s",
        state.outcome and state.outcome.exception(),
        state.upcoming_sleep,
    ),
    reraise=True,
)


class StoreRejected(ValueError):  # noqa: N818
    """Chroma refused the data itself (a 4xx): retrying the same request cannot help."""


class InvalidFilter(StoreRejected):
    """Chroma rejected a `where` filter: the client's fault, a 422."""


class CollectionMissing(Exception):  # noqa: N818
    """The collection does not exist."""


class PartialWrite(StoreUnavailable):
    """A multi-chunk write failed part-way: `stored` lists the ids confirmed stored; others may be."""

    def __init__(self, message: str, stored: list[str]) -> None:
        super().__init__(message)
        self.stored = stored


@dataclass(frozen=True)
class HnswSettings:
    """The HNSW parameters a collection is created with, recorded in its Chroma configuration (read
    back with `ChromaStore.hnsw_of`). `ef_search` (candidates kept while searching: recall against
    latency) can be changed on an existing collection (`ChromaStore.set_ef_search`); `ef_construction`
    and `max_neighbors` (M) shape the graph as it is built and are fixed once the collection exists.
    The defaults are picked by `make bench-scale` (docs/scaling.md)."""

    ef_search: int = 1200
    ef_construction: int = 200
    max_neighbors: int = 32

    def configuration(self) -> dict[str, Any]:
        return {
            "hnsw": {
                "space": "cosine",
                "ef_search": self.ef_search,
                "ef_construction": self.ef_construction,
                "max_neighbors": self.max_neighbors,
            }
        }


@dataclass
class Record:
    """One Chroma record: an id, its stored text, and its metadata (reserved keys included)."""

    id: str
    text: str
    metadata: Metadata = field(default_factory=dict)
    distance: float | None = None


def record_bytes(record: Record, dim: int) -> int:
    """A generous estimate of a record's share of an upsert's JSON body."""
    meta = json.dumps(record.metadata, ensure_ascii=False)
    # An embedding travels as JSON floats (up to ~25 characters each) or base64.
    return len(record.id.encode()) + len(record.text.encode()) + len(meta.encode()) + 25 * dim + 64


class ChromaStore:
    """Typed access to one Chroma server; thread-safe, connects lazily and reconnects after failures."""

    def __init__(
        self,
        host: str,
        port: int,
        collection_prefix: str = "docs",
        *,
        connect_timeout_s: float = 2.0,
        timeout_s: float = 15.0,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        hnsw: HnswSettings | None = None,
    ) -> None:
        self.host, self.port, self.prefix = host, port, collection_prefix
        self.hnsw = hnsw or HnswSettings()  # what collections made by this store are built with
        self.connect_timeout_s, self.timeout_s = connect_timeout_s, timeout_s
        self.max_payload_bytes = max_payload_bytes
        # Called with (operation, seconds, ok) after every request to Chroma (metrics).
        self.observer: Callable[[str, float, bool], None] | None = None
        self._client: ClientAPI | None = None
        # Queries (the search's hot path) skip chromadb's client: see QueryTransport.
        self._queries = QueryTransport(host, port, connect_timeout_s=connect_timeout_s, timeout_s=timeout_s)
        self._lock = threading.Lock()  # guards the fields below; never held during a request
        self._handles: dict[str, Collection] = {}
        self._max_batch: int | None = None

    def collection_name(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    @property
    def address(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- connection and error mapping ------------------------------------------------------
    def _connect(self) -> ClientAPI:
        # Lazily, and again after a failure, so that a service started while Chroma was down
        # recovers on its own. Built outside the lock: building one talks to the server.
        client = self._client
        if client is not None:
            return client
        started = time.perf_counter()
        try:
            client = connect(
                self.host, self.port, connect_timeout_s=self.connect_timeout_s, timeout_s=self.timeout_s
            )
        except (ValueError, httpx.HTTPError, ChromaError) as exc:
            self._observe("connect", started, False)
            raise StoreUnavailable(f"Chroma is unreachable (connect): {exc}") from exc
        self._observe("connect", started, True)
        with self._lock:
            if self._client is None:
                self._client = client
            return self._client

    def _reset(self, client: ClientAPI | None) -> None:
        with self._lock:
            if self._client is client:
                self._client = None
                self._handles.clear()
                self._max_batch = None

    def _observe(self, what: str, started: float, ok: bool) -> None:
        if self.observer is not None:
            self.observer(what, time.perf_counter() - started, ok)

    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        client = self._client
        started = time.perf_counter()
        ok = False
        try:
            result = fn(*args, **kwargs)
            ok = True
            return result
        except NotFoundError:
            ok = True  # an answer, not a failure of the store
            raise
        except (httpx.HTTPError, ConnectionError, TimeoutError) as exc:
            self._reset(client)
            timed_out = isinstance(exc, (httpx.TimeoutException, TimeoutError))
            kind = "timed out" if timed_out else "is unreachable"
            raise StoreUnavailable(f"Chroma {kind} ({what}): {type(exc).__name__}: {exc}") from exc
        except ChromaError as exc:
            status = exc.code()
            if 400 <= status < 500 and status not in (408, 429):
                raise StoreRejected(f"Chroma refused the request ({what}): {exc.message()}") from exc
            failed = StoreFailed if status >= 500 else StoreUnavailable  # 408, 429: busy
            raise failed(f"Chroma failed ({what}): {exc.message()}") from exc
        except (ValueError, TypeError) as exc:
            # chromadb validates arguments before sending them (ids, metadata, filters).
            raise StoreRejected(f"Chroma refused the request ({what}): {exc}") from exc
        except Exception as exc:
            # chromadb raises a bare Exception for an error answer it cannot parse: the server failed.
            if type(exc) is not Exception:
                raise
            raise StoreFailed(f"Chroma failed ({what}): {exc}") from exc
        finally:
            self._observe(what, started, ok)

    def heartbeat(self) -> None:
        client = self._connect()
        self._call("heartbeat", client.heartbeat)

    def max_batch_size(self) -> int:
        # Fixed for a connection: asked once, not on every upsert.
        if self._max_batch is None:
            client = self._connect()
            size = int(self._call("max batch size", client.get_max_batch_size))
            with self._lock:
                self._max_batch = size
            return size
        return self._max_batch

    # -- collections -----------------------------------------------------------------------
    def collection(self, name: str, *, create: bool = False, metadata: Metadata | None = None) -> Collection:
        """The collection `<prefix>-<name>` (handle cached); with `create`, made if missing (cosine,
        this store's `hnsw`; an existing collection keeps the settings it was made with)."""
        full = self.collection_name(name)
        handle = self._handles.get(full)
        if handle is not None:
            return handle
        client = self._connect()
        if create:
            # No embedding function: we send our own, and Chroma's default would download a model.
            handle = self._call(
                "create collection",
                client.get_or_create_collection,
                full,
                embedding_function=None,
                configuration=self.hnsw.configuration(),
                metadata=metadata or None,
            )
        else:
            try:
                handle = self._call("get collection", client.get_collection, full, embedding_function=None)
            except NotFoundError as exc:
                raise CollectionMissing(f"collection {full!r} does not exist") from exc
        with self._lock:
            if self._client is client:
                self._handles[full] = handle
        return handle

    def hnsw_of(self, name: str) -> dict[str, Any]:
        """The HNSW configuration Chroma holds for a collection (asked afresh, not from the cache)."""
        self.forget(name)
        return dict(self.collection(name).configuration_json.get("hnsw") or {})

    def hnsw_settings_of(self, name: str) -> HnswSettings:
        """The HnswSettings a collection was made with (and its ef_search now), to build another alike."""
        found = self.hnsw_of(name)
        default = HnswSettings()
        return HnswSettings(
            int(found.get("ef_search", default.ef_search)),
            int(found.get("ef_construction", default.ef_construction)),
            int(found.get("max_neighbors", default.max_neighbors)),
        )

    def set_ef_search(self, name: str, ef_search: int) -> None:
        """Change a collection's `ef_search` (the one HNSW parameter Chroma lets change afterwards).
        Chroma 1.5 records it at once but searches with it only after loading the index again (a
        restart of the server)."""
        self._with_handle(
            name, "modify", lambda c: c.modify(configuration={"hnsw": {"ef_search": ef_search}})
        )
        self.forget(name)

    def forget(self, name: str) -> None:
        """Drop the cached handle (the collection was deleted or changed elsewhere)."""
        with self._lock:
            self._handles.pop(self.collection_name(name), None)

    def exists(self, name: str) -> bool:
        try:
            self.collection(name)
        except CollectionMissing:
            return False
        return True

    def names(self) -> list[str]:
        """Names (without the prefix) of the collections under this prefix."""
        client = self._connect()
        found = self._call("list collections", client.list_collections)
        start = f"{self.prefix}-"
        return sorted(c.name.removeprefix(start) for c in found if c.name.startswith(start))

    def drop(self, name: str) -> bool:
        """Delete a collection; False when it did not exist."""
        client = self._connect()
        self.forget(name)
        try:
            self._call("delete collection", client.delete_collection, self.collection_name(name))
        except NotFoundError:
            return False
        return True

    def _with_handle(self, name: str, what: str, op: Callable[[Collection], T]) -> T:
        """Run `op` on the cached handle, and once more on a fresh one if the collection was replaced."""
        handle = self.collection(name)
        try:
            return self._call(what, op, handle)
        except NotFoundError:
            self.forget(name)
        try:
            return self._call(what, op, self.collection(name))
        except NotFoundError as exc:
            self.forget(name)
            raise CollectionMissing(f"collection {self.collection_name(name)!r} does not exist") from exc

    def _read(self, name: str, what: str, op: Callable[[Collection], T]) -> T:
        """`_with_handle`, sent again when Chroma failed it (a query racing a write can fail with a
        500 that a moment later succeeds; a read is safe to repeat). Timeouts are not retried."""
        return _READ_RETRY(self._with_handle, name, what, op)

    # -- records ---------------------------------------------------------------------------
    def chunks(self, records: Sequence[Record], dim: int) -> Iterator[range]:
        """Index ranges of `records` within the server's max batch size and `max_payload_bytes`."""
        limit = self.max_batch_size()
        start, size = 0, 0
        for i, record in enumerate(records):
            cost = record_bytes(record, dim)
            if i > start and (i - start >= limit or size + cost > self.max_payload_bytes):
                yield range(start, i)
                start, size = i, 0
            size += cost
        if start < len(records):
            yield range(start, len(records))

    def write(
        self, name: str, records: Sequence[Record], embeddings: np.ndarray, *, only_new: bool = False
    ) -> None:
        """Upsert (or, with `only_new`, add: ids that exist are left as they are) in chunks.
        Raises PartialWrite listing the stored ids when a chunk after the first fails."""
        if len(records) != len(embeddings):
            raise ValueError(f"{len(records)} records but {len(embeddings)} embeddings")
        verb = "add" if only_new else "upsert"
        stored: list[str] = []
        for part in self.chunks(records, embeddings.shape[1] if len(embeddings) else 0):
            batch = [records[i] for i in part]
            vectors = embeddings[part.start : part.stop]

            def send(c: Collection, batch: list[Record] = batch, vectors: np.ndarray = vectors) -> None:
                getattr(c, verb)(
                    ids=[r.id for r in batch],
                    embeddings=vectors,
                    documents=[r.text for r in batch],
                    metadatas=[r.metadata or None for r in batch],
                )

            try:
                self._with_handle(name, verb, send)
            except StoreUnavailable as exc:
                if stored:
                    raise PartialWrite(
                        f"{exc} ({len(stored)} of {len(records)} records stored)", stored
                    ) from exc
                raise
            stored.extend(r.id for r in batch)

    def query(
        self, name: str, embedding: np.ndarray, n: int, where: dict[str, Any] | None = None
    ) -> list[Record]:
        """The `n` nearest records to `embedding`, nearest first."""
        body = {
            "ids": None,
            "query_embeddings": np.ascontiguousarray(embedding, dtype=np.float32).reshape(1, -1),
            "n_results": n,
            "where": where or None,
            "where_document": None,
            "include": ["documents", "metadatas", "distances"],
        }

        def run(c: Collection) -> Any:
            return self._queries.query(c, body)

        try:
            result = self._read(name, "query", run)
        except StoreRejected as exc:
            if where:
                raise InvalidFilter(str(exc)) from exc
            raise
        ids = result["ids"][0]
        docs = (result.get("documents") or [[]])[0]
        metas = (result.get("metadatas") or [[]])[0]
        dists = (result.get("distances") or [[]])[0]
        return [
            Record(doc_id, docs[i] or "", dict(metas[i] or {}), float(dists[i]))
            for i, doc_id in enumerate(ids)
        ]

    def get(
        self,
        name: str,
        ids: Sequence[str] | None = None,
        where: dict[str, Any] | None = None,
        *,
        texts: bool = True,
        metadata: bool = True,
    ) -> list[Record]:
        """Records by id and/or metadata filter (no paging: for bounded sets)."""
        include: Any = [name for name, wanted in (("documents", texts), ("metadatas", metadata)) if wanted]

        def run(c: Collection) -> Any:
            return c.get(ids=list(ids) if ids is not None else None, where=where or None, include=include)

        page = self._read(name, "get", run)
        docs = page.get("documents") or [None] * len(page["ids"])
        metas = page.get("metadatas") or [None] * len(page["ids"])
        return [Record(i, docs[n] or "", dict(metas[n] or {})) for n, i in enumerate(page["ids"])]

    def ids(self, name: str) -> list[str]:
        """Every id in the collection, in one request: a snapshot, unlike paging while others write."""
        return list(self._read(name, "get ids", lambda c: c.get(include=[]))["ids"])

    def page_ids(self, name: str, offset: int, limit: int) -> list[str]:
        """Ids at positions `offset`..`offset + limit` of the collection. Chroma keeps records in
        the order they were first added: an update keeps a record's place, a delete closes its
        gap, a new id goes last (`twotower.index.bulk.scan_ids` pages on this)."""
        return list(
            self._read(name, "page ids", lambda c: c.get(include=[], limit=limit, offset=offset))["ids"]
        )

    def delete(
        self, name: str, ids: Sequence[str] | None = None, where: dict[str, Any] | None = None
    ) -> None:
        if not ids and not where:
            return
        self._with_handle(
            name, "delete", lambda c: c.delete(ids=list(ids) if ids else None, where=where or None)
        )

    def count(self, name: str) -> int:
        return int(self._read(name, "count", lambda c: c.count()))
