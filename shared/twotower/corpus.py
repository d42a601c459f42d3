"""Where the loader's documents come from: Python's language reference topics (the default demo
corpus, shipped with CPython so it is there offline), a BEIR folder, or a JSONL file."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from twotower.limits import (
    MAX_METADATA_KEYS,
    MAX_METADATA_TOTAL_CHARS,
    MAX_TEXT_CHARS,
    MAX_TITLE_CHARS,
    id_problem,
    metadata_key_problem,
    scalar_problem,
    surrogate_problem,
)

log = logging.getLogger(__name__)


@dataclass
class Corpus:
    """Documents as the ingestion API takes them, plus what had to be adjusted on the way."""

    name: str
    documents: Iterator[dict[str, Any]]
    total: int  # how many `documents` will yield (after --limit)
    notes: dict[str, int] = field(default_factory=dict)  # e.g. {"skipped (no text)": 2}


def _note(notes: dict[str, int], what: str) -> None:
    notes[what] = notes.get(what, 0) + 1


def to_document(row: dict[str, Any], notes: dict[str, int]) -> dict[str, Any] | None:
    """A JSONL/BEIR row as an ingestion document; None (and a note) when it cannot be one."""
    doc_id = row.get("id", row.get("_id"))
    if doc_id is None or not str(doc_id).strip():
        _note(notes, "skipped (no id)")
        return None
    if id_problem(str(doc_id)) is not None:
        # The API would refuse the whole batch (ids are one URL path segment: no "/", "#", spaces...).
        _note(notes, "skipped (id the API refuses: see twotower.limits.ID_CHARSET)")
        return None
    title = str(row.get("title") or "").strip()[:MAX_TITLE_CHARS] or None
    text = str(row.get("text") or "")
    if surrogate_problem(text) or (title and surrogate_problem(title)):
        _note(notes, "skipped (text is not valid Unicode)")
        return None
    if not text.strip():
        if title is None:
            _note(notes, "skipped (no text)")
            return None
        text, title = title, None  # a title-only document is still worth finding
    if len(text) > MAX_TEXT_CHARS:
        text = text[:MAX_TEXT_CHARS]
        _note(notes, f"truncated to {MAX_TEXT_CHARS:,} characters")
    doc: dict[str, Any] = {"id": str(doc_id), "text": text}
    if title:
        doc["title"] = title
    metadata: dict[str, Any] = {}
    size = 0
    for key, value in (row.get("metadata") or {}).items():
        # Only what the API takes: flat scalars under unreserved keys, within twotower.limits.
        extra = len(str(key)) + (len(value) if isinstance(value, str) else 0)
        if (
            metadata_key_problem(key) is None
            and scalar_problem(value) is None
            and size + extra <= MAX_METADATA_TOTAL_CHARS
            and len(metadata) < MAX_METADATA_KEYS
        ):
            metadata[key] = value
            size += extra
        else:
            _note(notes, "metadata values dropped (nested, null, out of bounds or reserved key)")
    if metadata:
        doc["metadata"] = metadata
    return doc


def pydoc_topics(limit: int | None = None) -> Corpus:
    from pydoc_data.topics import topics

    names = sorted(topics)[:limit]
    docs = (
        {"id": name, "title": name, "text": topics[name], "metadata": {"source": "python-reference"}}
        for name in names
    )
    return Corpus("Python language reference topics (pydoc_data)", docs, len(names))


def _jsonl_rows(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{number}: not JSON: {exc}") from exc


def jsonl(path: Path, limit: int | None = None) -> Corpus:
    with open(path, encoding="utf-8") as f:
        lines = sum(1 for line in f if line.strip())
    total = lines if limit is None else min(lines, limit)
    notes: dict[str, int] = {}
    docs = (d for d in map(lambda r: to_document(r, notes), _jsonl_rows(path)) if d is not None)
    # total counts rows; rows that had to be skipped show up in the notes.
    return Corpus(str(path), islice(docs, limit), total, notes)


def open_corpus(path: str | None, limit: int | None = None) -> Corpus:
    """No path: the pydoc topics; a folder: its BEIR corpus.jsonl; a file: JSONL rows (`to_document`)."""
    if not path:
        return pydoc_topics(limit)
    location = Path(path)
    if location.is_dir():
        location = location / "corpus.jsonl"
    if not location.is_file():
        raise FileNotFoundError(
            f"no corpus at {path}: expected a BEIR folder with corpus.jsonl or a .jsonl file"
        )
    return jsonl(location, limit)


def batches(documents: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    """Consecutive lists of at most `size` documents."""
    while batch := list(islice(documents, size)):
        yield batch
