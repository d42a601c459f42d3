"""Documents and their passages as Chroma records: a short document is one record as before, a long
one is split by tokens, read back and deleted whole, and re-posting a shorter version leaves no
passage behind."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from tokenizers import Tokenizer

from tests.index.conftest import HashEncoder
from twotower.index import passages
from twotower.index.documents import WHOLE_TEXT_CHARS, Document, DocumentIndex, passage_text
from twotower.index.passages import PassageConfig
from twotower.index.store import ChromaStore, PartialWrite, Record
from twotower.lexical import term_stats

WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "the",
    "lazy",
    "dog",
    "while",
    "seven",
    "wizards",
    "quietly",
    "judge",
    "boxing",
]


def long_text(n_words: int) -> str:
    return " ".join(f"{WORDS[i % len(WORDS)]}{i // len(WORDS)}" for i in range(n_words))


def test_split_counts_tokens_and_cuts_between_words(tokenizer: Tokenizer) -> None:
    config = PassageConfig(tokens=64, overlap=16)
    assert passages.split("a short text", "Title", tokenizer, 256, config) == [(0, 12)]
    text = long_text(600)
    spans = passages.split(text, "A title", tokenizer, 256, config)
    assert len(spans) > 5 and spans[0][0] == 0 and spans[-1][1] == len(text)
    for (_, e1), (s2, _) in itertools.pairwise(spans):
        assert s2 < e1  # consecutive passages overlap
    for s, e in spans:
        n = len(tokenizer.encode(text[s:e], add_special_tokens=False).ids)
        assert n <= 64
        assert (s == 0 or text[s - 1] == " ") and (e == len(text) or text[e] == " ")  # whole words


def test_short_document_is_one_record_as_before(
    make_store: Callable[..., ChromaStore], encoders: Callable[[str], HashEncoder]
) -> None:
    store = make_store()
    index = DocumentIndex(store, "v1", encoders("v1"))
    index.write([Document("a", "Items can be returned within 30 days.", "Returns", {"lang": "en"})])
    stats = term_stats("Returns Items can be returned within 30 days.")  # of the tower's input
    assert store.get("v1", ids=["a"]) == [
        Record(
            "a", "Items can be returned within 30 days.", {"lang": "en", "_title": "Returns", "_bm25": stats}
        )
    ]
    assert store.count("v1") == 1 and index.count() == 1
    assert index.get(["a", "zzz"]) == {
        "a": Document("a", "Items can be returned within 30 days.", "Returns", {"lang": "en"})
    }


def test_long_document_is_stored_as_passages_and_acted_on_whole(
    make_store: Callable[..., ChromaStore], encoders: Callable[[str], HashEncoder]
) -> None:
    store = make_store()
    index = DocumentIndex(store, "v1", encoders("v1"), PassageConfig(tokens=64, overlap=16))
    text = long_text(400)
    index.write([Document("long", text, "Long", {"source": "book"}), Document("short", "tiny", None, {})])
    records = {r.id: r for r in store.get("v1")}
    parts = int(records["long"].metadata["_parts"])
    assert parts > 3 and records["long"].text == text
    assert set(records) == {"long", "short", *(f"long#{i}" for i in range(1, parts))}
    tail = records[f"long#{parts - 1}"]
    assert tail.metadata["_parent"] == "long" and tail.metadata["source"] == "book"
    # A document this short: each passage carries the whole text and its span.
    assert tail.text == text and text.endswith(passage_text(tail))
    assert index.count() == 2 and index.passage_count() == parts - 1
    assert index.get(["long"])["long"].text == text

    # The best passage of a document is its last one: the hit carries the whole text, with no
    # request for it.
    requests: list[str] = []
    real_get = store.get
    store.get = lambda *a, **kw: requests.append("get") or real_get(*a, **kw)  # type: ignore[method-assign]
    hits = index.documents_of([tail, records["short"]], k=2)
    assert [h.document.id for h in hits] == ["long", "short"] and requests == []
    assert hits[0].document == Document("long", text, "Long", {"source": "book"})
    assert hits[0].passage == passage_text(tail) and hits[1].passage is None

    # A longer document's passages carry just themselves: its text comes from its first record.
    huge = long_text(1500)
    assert len(huge) > WHOLE_TEXT_CHARS
    index.write([Document("huge", huge, None, {})])
    last = max((r for r in real_get("v1") if r.id.startswith("huge#")), key=lambda r: r.metadata["_part"])
    assert huge.endswith(last.text) and "_start" not in last.metadata
    requests.clear()
    hits = index.documents_of([last], k=1)
    assert hits[0].document.text == huge and hits[0].passage == last.text and requests == ["get"]
    store.get = real_get  # type: ignore[method-assign]
    index.delete(["huge"])

    # Posted again, shorter and with other metadata: no passage and no metadata key of the longer
    # version is left (Chroma's upsert would merge the old keys in).
    index.write([Document("long", long_text(200), "Long", {"year": 2024})])
    left = {r.id: r for r in store.get("v1") if r.id.startswith("long")}
    fewer = int(left["long"].metadata["_parts"])
    assert 1 < fewer < parts and sorted(left) == sorted(["long", *(f"long#{i}" for i in range(1, fewer))])
    assert all("source" not in r.metadata and r.metadata["year"] == 2024 for r in left.values())
    assert index.get(["long"])["long"].metadata == {"year": 2024}

    # And shorter still: one record, as a short document always is.
    index.write([Document("long", "now short", None, {})])
    stats = term_stats("now short")
    assert store.get("v1", ids=["long"]) == [Record("long", "now short", {"_title": "", "_bm25": stats})]
    assert [r.id for r in store.get("v1") if r.id.startswith("long")] == ["long"]
    index.write([Document("long", text, "Long", {"source": "book"})])

    assert index.delete(["long", "nope"]) == ["long"]
    assert [r.id for r in store.get("v1")] == ["short"]


def test_a_document_is_acknowledged_only_when_all_its_passages_are_stored(
    make_store: Callable[..., ChromaStore], encoders: Callable[[str], HashEncoder]
) -> None:
    store = make_store()
    index = DocumentIndex(store, "v1", encoders("v1"), PassageConfig(tokens=64, overlap=16))
    store._max_batch = 4
    docs = [
        Document("s1", "one"),
        Document("s2", "two"),
        Document("long", long_text(400)),
        Document("s3", "three"),
    ]
    real_write = store._with_handle
    sent: list[str] = []

    def fail_on_third(name: str, what: str, op: object) -> object:
        if what == "upsert":
            sent.append(what)
            if len(sent) == 3:
                from twotower.index.store import StoreUnavailable

                raise StoreUnavailable("Chroma is unreachable (upsert)")
        return real_write(name, what, op)  # type: ignore[arg-type]

    store._with_handle = fail_on_third  # type: ignore[method-assign]
    with pytest.raises(PartialWrite) as failed:
        index.write(docs)
    # s1 and s2 went in the first chunk; the long document's passages spread over the next ones.
    assert failed.value.stored == ["s1", "s2"]
