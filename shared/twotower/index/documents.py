"""Documents in a model version's collection: how a document and its passages are laid out as
Chroma records, written, read back, deleted and searched.

A document that fits the backbone's window is ONE record: id = the document's id, text = its
text, metadata = its metadata plus `_title`. A longer document is split into passages
(`passages.split`):

    <id>      passage 0, and the document itself: text = the WHOLE document, metadata + `_parts`
              (how many passages) and `_end` (where passage 0 ends in the text)
    <id>#<i>  passage i >= 1: metadata + `_parent` = <id> and `_part` = i; text = that passage, or,
              for a document of at most WHOLE_TEXT_CHARS, the whole text with the passage's span
              in `_start`/`_end` (a hit on any passage then carries the text: no second request)

Every record also carries `_bm25`, its passage's term statistics (`lexical.term_stats` of the tower
input), which hybrid search ranks by instead of tokenising the text; records written without it
are tokenised from their text. Every passage carries the document's metadata, so a `where` filter
applies before ranking. Client ids may not contain "#" (twotower.limits), so passage ids never
collide with documents.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from twotower.engine import Encoder
from twotower.index import passages
from twotower.index.passages import PassageConfig
from twotower.index.store import ChromaStore, CollectionMissing, Metadata, PartialWrite, Record
from twotower.lexical import term_stats
from twotower.text import format_document

log = logging.getLogger(__name__)

RESERVED_PREFIX = "_"  # metadata keys the index owns; clients' keys may not start with it
TITLE_KEY = "_title"
PARTS_KEY = "_parts"
END_KEY = "_end"
START_KEY = "_start"
PARENT_KEY = "_parent"
PART_KEY = "_part"
STATS_KEY = "_bm25"  # the passage's tower input as `lexical.term_stats` sums it up
PASSAGE_SEPARATOR = "#"

WHOLE_TEXT_CHARS = 8_192  # a longer document's passages carry their own text only (module docstring)

# Collection metadata: what the index was built with (checked when a process opens it).
VERSION_KEY = "model_version"
DIM_KEY = "embedding_dim"
PASSAGE_TOKENS_KEY = "passage_tokens"
PASSAGE_OVERLAP_KEY = "passage_overlap"


class IndexMismatch(ValueError):  # noqa: N818
    """A collection was built by another model (embedding size) than the one opening it."""


@dataclass
class Document:
    id: str
    text: str
    title: str | None = None
    metadata: Metadata = field(default_factory=dict)


@dataclass
class Hit:
    """One document in a ranking: its best passage and where that passage ranked."""

    document: Document
    distance: float  # cosine distance of the best passage
    passage: str | None  # the best passage's text; None when the document is a single passage
    rank: int  # rank of the best passage among the candidates (0 = nearest)
    score: float = 0.0


def is_passage_id(record_id: str) -> bool:
    return PASSAGE_SEPARATOR in record_id


def passage_ids(doc_id: str, first: int, parts: int) -> list[str]:
    return [f"{doc_id}{PASSAGE_SEPARATOR}{i}" for i in range(first, parts)]


def document_id(record: Record) -> str:
    return str(record.metadata.get(PARENT_KEY, record.id))


def user_metadata(raw: Metadata) -> tuple[str | None, Metadata]:
    title = str(raw.get(TITLE_KEY, "")) or None
    return title, {k: v for k, v in raw.items() if not k.startswith(RESERVED_PREFIX)}


def passage_text(record: Record) -> str:
    """The passage a record stands for: the span `_start`:`_end` of its text when it carries the
    whole document (passage 0 always does), else its text."""
    start, end = record.metadata.get(START_KEY, 0), record.metadata.get(END_KEY)
    return record.text[int(start) : int(end)] if isinstance(end, int) else record.text


def whole_document(record: Record) -> Document | None:
    """The document a record holds whole (its first passage, or a passage of a short document)."""
    if PARENT_KEY not in record.metadata:
        return as_document(record)
    if START_KEY in record.metadata:
        title, metadata = user_metadata(record.metadata)
        return Document(str(record.metadata[PARENT_KEY]), record.text, title, metadata)
    return None


def as_document(record: Record) -> Document:
    title, metadata = user_metadata(record.metadata)
    return Document(record.id, record.text, title, metadata)


class DocumentIndex:
    """One model version's collection, seen as documents. `encoder` embeds new passages (the
    document tower); reading and deleting need no encoder."""

    def __init__(
        self,
        store: ChromaStore,
        version: str,
        encoder: Encoder | None = None,
        passage_config: PassageConfig | None = None,
    ) -> None:
        self.store, self.version, self.encoder = store, version, encoder
        self.passage_config = passage_config or PassageConfig()

    @property
    def collection(self) -> str:
        return self.store.collection_name(self.version)

    def describe(self) -> Metadata:
        config = self.passage_config
        metadata: Metadata = {
            VERSION_KEY: self.version,
            PASSAGE_TOKENS_KEY: config.tokens,
            PASSAGE_OVERLAP_KEY: config.overlap,
        }
        if self.encoder is not None:
            metadata[DIM_KEY] = self.encoder.dim
        return metadata

    def create(self) -> None:
        """Make the collection if it is missing, recording what it is built with."""
        self.store.collection(self.version, create=True, metadata=self.describe())

    def check(self) -> None:
        """Refuse to write embeddings of another size than the collection's."""
        if self.encoder is None:
            return
        metadata = self.store.collection(self.version).metadata or {}
        dim = metadata.get(DIM_KEY)
        if dim is not None and dim != self.encoder.dim:
            raise IndexMismatch(
                f"collection {self.collection!r} holds {dim}-d embeddings but model version "
                f"{self.encoder.version} makes {self.encoder.dim}-d ones (another model built it): "
                f"serve another version (`make rollout VERSION=<other>`); rolling this version out "
                f"again later rebuilds its collection from scratch"
            )

    # -- writing ---------------------------------------------------------------------------
    def records(
        self, document: Document, spans: list[tuple[int, int]] | None = None
    ) -> tuple[list[Record], list[str]]:
        """The records of one document and the tower input of each (`spans`: its passages, when
        split already)."""
        base: Metadata = {**document.metadata, TITLE_KEY: document.title or ""}
        if spans is None:
            spans = self._split([document])[0]
        texts = [format_document(document.text[s:e], document.title) for s, e in spans]
        stats = [term_stats(t) for t in texts]
        if len(spans) == 1:
            return [Record(document.id, document.text, {**base, STATS_KEY: stats[0]})], texts
        head = Record(
            document.id,
            document.text,
            {**base, PARTS_KEY: len(spans), END_KEY: spans[0][1], STATS_KEY: stats[0]},
        )
        whole = len(document.text) <= WHOLE_TEXT_CHARS
        tail = [
            Record(
                f"{document.id}{PASSAGE_SEPARATOR}{i}",
                document.text if whole else document.text[s:e],
                {
                    **base,
                    PARENT_KEY: document.id,
                    PART_KEY: i,
                    STATS_KEY: stats[i],
                    **({START_KEY: s, END_KEY: e} if whole else {}),
                },
            )
            for i, (s, e) in enumerate(spans[1:], start=1)
        ]
        # Passages before their document: writes go out in order, so a document record that
        # exists means its passages were stored too (what a resumed backfill relies on).
        return [*tail, head], [*texts[1:], texts[0]]

    def write(self, documents: Sequence[Document], *, only_new: bool = False) -> list[str]:
        """Embed and store documents (replacing each one's passages and metadata); return their
        ids once Chroma has confirmed every record. With `only_new`, records that exist are left
        alone (a backfill never overwrites a newer write). Raises PartialWrite with the ids of the
        documents that were stored whole when Chroma failed part-way."""
        if not documents:
            return []
        layout = [self.records(d, spans) for d, spans in zip(documents, self._split(documents), strict=True)]
        stale: list[str] = []
        if not only_new:
            before = self._previous([d.id for d in documents])
            for document, (recs, _) in zip(documents, layout, strict=True):
                old = before.get(document.id)
                if old is not None:
                    stale += self._replace(document.id, recs, old)
        records = [r for recs, _ in layout for r in recs]
        texts = [t for _, ts in layout for t in ts]
        embeddings = self._encoder().encode_documents(texts)
        self.create()
        self.check()
        try:
            self.store.write(
                self.version, records, np.asarray(embeddings, dtype=np.float32), only_new=only_new
            )
        except PartialWrite as exc:
            stored = set(exc.stored)
            whole = [
                d.id
                for d, (recs, _) in zip(documents, layout, strict=True)
                if all(r.id in stored for r in recs)
            ]
            raise PartialWrite(str(exc), whole) from exc
        if stale:
            self.store.delete(self.version, ids=stale)
        return [d.id for d in documents]

    def _previous(self, doc_ids: Sequence[str]) -> dict[str, Metadata]:
        """The stored metadata of those documents that exist already."""
        try:
            return {r.id: r.metadata for r in self.store.get(self.version, ids=list(doc_ids), texts=False)}
        except CollectionMissing:
            return {}

    @staticmethod
    def _replace(doc_id: str, records: list[Record], old: Metadata) -> list[str]:
        """Make `records` replace a stored version of their document whose parent had metadata
        `old`: Chroma's upsert merges metadata, so every key the new version lacks is sent as None
        (which removes it). Returns the ids of passages the new version no longer has."""
        old_user = [k for k in old if not k.startswith(RESERVED_PREFIX)]
        for record in records:
            had = (
                old
                if record.id == doc_id
                else [*old_user, TITLE_KEY, PARENT_KEY, PART_KEY, START_KEY, END_KEY]
            )
            gone = {k: None for k in had if k not in record.metadata}
            if gone:
                record.metadata = {**record.metadata, **gone}  # type: ignore[dict-item]
        return passage_ids(doc_id, len(records), int(old.get(PARTS_KEY, 1)))

    def _split(self, documents: Sequence[Document]) -> list[list[tuple[int, int]]]:
        encoder = self._encoder()
        return passages.split_many(
            [(d.text, d.title) for d in documents],
            encoder.tokenizer,
            encoder.max_seq_length,
            self.passage_config,
        )

    def _encoder(self) -> Encoder:
        if self.encoder is None:
            raise RuntimeError(f"{self.collection}: no encoder to embed documents with")
        return self.encoder

    # -- reading and deleting --------------------------------------------------------------
    def get(self, doc_ids: Sequence[str]) -> dict[str, Document]:
        """The documents that exist among `doc_ids` (whole texts)."""
        try:
            found = self.store.get(self.version, ids=list(doc_ids))
        except CollectionMissing:
            return {}
        return {r.id: as_document(r) for r in found}

    def delete(self, doc_ids: Sequence[str]) -> list[str]:
        """Delete documents with all their passages; return the ids that existed."""
        try:
            found = self.store.get(self.version, ids=list(doc_ids), texts=False)
        except CollectionMissing:
            return []
        ids = [rid for r in found for rid in [r.id, *passage_ids(r.id, 1, int(r.metadata.get(PARTS_KEY, 1)))]]
        self.store.delete(self.version, ids=ids)
        return [r.id for r in found]

    def count(self) -> int:
        """Documents (not passages) in the collection."""
        return self.store.count(self.version) - self.passage_count()

    def passage_count(self) -> int:
        return len(self.store.get(self.version, where={PART_KEY: {"$gte": 1}}, texts=False, metadata=False))

    def document_ids(self) -> list[str]:
        """Every document id (one request: a consistent snapshot)."""
        return [i for i in self.store.ids(self.version) if not is_passage_id(i)]

    # -- searching -------------------------------------------------------------------------
    def candidates(self, embedding: np.ndarray, n: int, where: dict[str, Any] | None = None) -> list[Record]:
        """The `n` nearest passages, nearest first."""
        return self.store.query(self.version, embedding, n, where)

    def documents_of(self, ranked: Sequence[Record], k: int) -> list[Hit]:
        """The first `k` distinct documents of a passage ranking, each with its best passage and
        its whole text (from the hit itself, another candidate, or else one request by id)."""
        hits: dict[str, Hit] = {}
        for rank, record in enumerate(ranked):
            doc_id = document_id(record)
            if doc_id in hits:
                continue
            multi = PARENT_KEY in record.metadata or PARTS_KEY in record.metadata
            document = whole_document(record) or Document(doc_id, "")
            hits[doc_id] = Hit(
                document, float(record.distance or 0.0), passage_text(record) if multi else None, rank
            )
            if len(hits) == k:
                break
        # A long document's first passage (its record, with the whole text) is often among the
        # candidates too, lower down: only the others cost a second request.
        candidates = {r.id: r for r in ranked}
        missing = []
        for doc_id, hit in hits.items():
            if not hit.document.text:
                if doc_id in candidates:
                    hit.document = as_document(candidates[doc_id])
                else:
                    missing.append(doc_id)
        if missing:
            for doc_id, document in self.get(missing).items():
                hits[doc_id].document = document
        # A passage whose parent vanished in between (deleted concurrently) is not a result.
        return [h for h in hits.values() if h.document.text]
