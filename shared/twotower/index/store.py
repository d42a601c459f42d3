"""The document index in a standalone Chroma server, reached over HTTP.

One collection per model version (`<prefix>-<version>`, cosine space), so documents embedded by one
model version are never searched with another's queries. Each record keeps the text, title and
metadata, so the index can be rebuilt by re-embedding (see `training/reindex.py`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import chromadb
import httpx
import numpy as np
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection
from chromadb.config import Settings
from chromadb.errors import ChromaError, NotFoundError

log = logging.getLogger(__name__)

# Metadata keys the store owns; user metadata keys may not start with this prefix.
RESERVED_PREFIX = "_"
TITLE_KEY = "_title"
# Collection metadata keys set by `training/reindex.py` (see `ChromaStore.mark_reindex`).
REINDEX_FROM_KEY = "reindex_from"
REINDEX_COMPLETE_KEY = "reindex_complete"

MetadataValue = str | int | float | bool


class StoreUnavailable(Exception):  # noqa: N818 - named for what clients see
    """The Chroma server cannot be reached or failed: a 503 for clients."""


class CollectionMissing(Exception):  # noqa: N818
    """The collection for this model version does not exist (nothing ingested yet)."""


class InvalidFilter(ValueError):  # noqa: N818
    """Chroma rejected a `where` filter: the client's fault, a 422."""


@dataclass
class Record:
    id: str
    text: str
    title: str | None
    metadata: dict[str, MetadataValue] = field(default_factory=dict)
    distance: float | None = None


def to_chroma_metadata(title: str | None, metadata: dict[str, MetadataValue]) -> dict[str, MetadataValue]:
    # Chroma rejects an empty metadata dict, so the title key is always present ("" = no title).
    return {**metadata, TITLE_KEY: title or ""}


def from_chroma_metadata(raw: dict[str, Any] | None) -> tuple[str | None, dict[str, MetadataValue]]:
    raw = dict(raw or {})
    title = raw.pop(TITLE_KEY, "") or None
    return title, {k: v for k, v in raw.items() if not k.startswith(RESERVED_PREFIX)}


class ChromaStore:
    """Thin, typed access to the Chroma server; every failure becomes one of the errors above."""

    def __init__(self, host: str, port: int, collection_prefix: str = "docs") -> None:
        self.host, self.port, self.prefix = host, port, collection_prefix
        self._client: ClientAPI | None = None
        self._lock = threading.Lock()
        # The server's max batch size is fixed for a connection: asked once, not on every upsert.
        self._max_batch: int | None = None

    def collection_name(self, version: str) -> str:
        return f"{self.prefix}-{version}"

    @property
    def address(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _connect(self) -> ClientAPI:
        # Connect lazily and reconnect after a failure, so a service that started while Chroma
        # was down recovers on its own once Chroma is back.
        with self._lock:
            if self._client is None:
                try:
                    self._client = chromadb.HttpClient(
                        host=self.host, port=self.port, settings=Settings(anonymized_telemetry=False)
                    )
                except (ValueError, httpx.HTTPError) as exc:
                    raise StoreUnavailable(f"Chroma server at {self.address} is unreachable: {exc}") from exc
            return self._client

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        client_before = self._client
        try:
            return fn(*args, **kwargs)
        except NotFoundError:
            raise
        except (httpx.HTTPError, ConnectionError) as exc:
            with self._lock:
                if self._client is client_before:
                    self._client = None
                    self._max_batch = None
            raise StoreUnavailable(f"Chroma server at {self.address} is unreachable ({what}): {exc}") from exc
        except ChromaError as exc:
            raise StoreUnavailable(f"Chroma server at {self.address} failed ({what}): {exc}") from exc

    def heartbeat(self) -> None:
        client = self._connect()
        self._call("heartbeat", client.heartbeat)

    def max_batch_size(self) -> int:
        if self._max_batch is None:
            client = self._connect()
            self._max_batch = int(self._call("max batch size", client.get_max_batch_size))
        return self._max_batch

    def collection(self, version: str, *, create: bool = False) -> Collection:
        client = self._connect()
        name = self.collection_name(version)
        if create:
            # No embedding function: we always send our own embeddings, and Chroma's default one
            # would try to download a model.
            return self._call(
                "create collection",
                client.get_or_create_collection,
                name,
                embedding_function=None,
                configuration={"hnsw": {"space": "cosine"}},
                metadata={"model_version": version},
            )
        try:
            return self._call("get collection", client.get_collection, name, embedding_function=None)
        except NotFoundError as exc:
            raise CollectionMissing(f"collection {name!r} does not exist on {self.address}") from exc

    def upsert(self, version: str, records: Sequence[Record], embeddings: np.ndarray) -> int:
        """Upsert in chunks no larger than the server's max batch size; return how many were stored."""
        collection = self.collection(version, create=True)
        chunk = self.max_batch_size()
        for start in range(0, len(records), chunk):
            part = records[start : start + chunk]
            self._call(
                "upsert",
                collection.upsert,
                ids=[r.id for r in part],
                embeddings=embeddings[start : start + chunk],
                documents=[r.text for r in part],
                metadatas=[to_chroma_metadata(r.title, r.metadata) for r in part],
            )
        return len(records)

    def query(
        self, version: str, embedding: np.ndarray, k: int, where: dict[str, Any] | None = None
    ) -> list[Record]:
        collection = self.collection(version)
        try:
            result = self._call(
                "query",
                collection.query,
                query_embeddings=embedding.reshape(1, -1),
                n_results=k,
                where=where or None,
                include=["documents", "metadatas", "distances"],
            )
        except ValueError as exc:
            raise InvalidFilter(str(exc)) from exc
        ids = result["ids"][0]
        docs = (result.get("documents") or [[]])[0]
        metas = (result.get("metadatas") or [[]])[0]
        dists = (result.get("distances") or [[]])[0]
        hits = []
        for i, doc_id in enumerate(ids):
            title, metadata = from_chroma_metadata(metas[i])
            hits.append(Record(doc_id, docs[i] or "", title, metadata, float(dists[i])))
        return hits

    def get(self, version: str, doc_id: str) -> Record | None:
        collection = self.collection(version)
        result = self._call("get", collection.get, ids=[doc_id], include=["documents", "metadatas"])
        if not result["ids"]:
            return None
        title, metadata = from_chroma_metadata((result.get("metadatas") or [None])[0])
        return Record(doc_id, (result.get("documents") or [""])[0] or "", title, metadata)

    def delete(self, version: str, doc_id: str) -> bool:
        """Delete one document; False when it was not there."""
        collection = self.collection(version)
        found = self._call("get", collection.get, ids=[doc_id], include=[])
        if not found["ids"]:
            return False
        self._call("delete", collection.delete, ids=[doc_id])
        return True

    def count(self, version: str) -> int:
        return int(self._call("count", self.collection(version).count))

    def versions(self) -> list[str]:
        """Model versions that have a collection under this prefix."""
        client = self._connect()
        names = [c.name for c in self._call("list collections", client.list_collections)]
        return sorted(n.removeprefix(f"{self.prefix}-") for n in names if n.startswith(f"{self.prefix}-"))

    def ids(self, version: str, batch_size: int = 1000) -> set[str]:
        """Every id in a version's collection (what a resumed reindex can skip)."""
        collection = self.collection(version)
        found: set[str] = set()
        while True:
            page = self._call("get", collection.get, limit=batch_size, offset=len(found), include=[])
            if not page["ids"]:
                return found
            found.update(page["ids"])

    # -- reindex completeness marker (collection metadata) ---------------------------------
    # A reindex target is marked incomplete before the first record is copied and complete after
    # the last; collections created by ingestion carry no marker and count as complete.
    def mark_reindex(self, version: str, source_version: str, complete: bool) -> None:
        collection = self.collection(version, create=True)
        metadata: dict[str, MetadataValue] = {
            "model_version": version,
            REINDEX_FROM_KEY: source_version,
            REINDEX_COMPLETE_KEY: complete,
        }
        self._call("modify collection", collection.modify, metadata=metadata)

    def incomplete_reason(self, version: str) -> str | None:
        """Why this version's collection is not complete yet (a reindex into it has not finished),
        or None when it is complete. Raises CollectionMissing when there is no collection."""
        metadata = self.collection(version).metadata or {}
        if metadata.get(REINDEX_COMPLETE_KEY, True):
            return None
        source = metadata.get(REINDEX_FROM_KEY, "?")
        return (
            f"collection {self.collection_name(version)!r} is incomplete: a reindex from version "
            f"{source} has not finished (run `make reindex` again to resume)"
        )

    def iter_records(self, version: str, batch_size: int = 256) -> Iterator[list[Record]]:
        """Every record of a version's collection, in pages (for reindexing and evaluation)."""
        collection = self.collection(version)
        offset = 0
        while True:
            page = self._call(
                "get", collection.get, limit=batch_size, offset=offset, include=["documents", "metadatas"]
            )
            if not page["ids"]:
                return
            records = []
            for i, doc_id in enumerate(page["ids"]):
                title, metadata = from_chroma_metadata(page["metadatas"][i])
                records.append(Record(doc_id, page["documents"][i] or "", title, metadata))
            yield records
            offset += len(records)
