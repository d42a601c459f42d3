"""Long documents through the real services and the real model: an answer in the last passage of
a long real text is found (and shown as the highlight), while short documents behave exactly as
before (one record, the plain cosine distance of their one embedding, no highlight)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from services.ingest.config import Settings as IngestSettings
from services.query.config import Settings as QuerySettings
from tests.conftest import ChromaServer
from tests.services.conftest import Api, ingest_service, post_docs, query_service
from twotower.beir import BeirDoc, load_corpus, load_qrels, load_queries
from twotower.engine import Encoder, Tower, open_encoder
from twotower.index.store import ChromaStore
from twotower.registry import latest_version
from twotower.text import format_document

CLAIM_ID = "1012"  # "Radioiodine treatment of non-toxic multinodular goitre reduces thyroid volume."


@pytest.fixture(scope="module")
def apis(chroma_server: ChromaServer, base_weights: Path) -> Iterator[tuple[Api, Api]]:
    with (
        ingest_service(chroma_server, base_weights, "passages") as ingest,
        query_service(chroma_server, base_weights, "passages") as query,
    ):
        yield ingest, query


@pytest.fixture(scope="module")
def scifact(scifact_dir: Path) -> tuple[dict[str, BeirDoc], str, str]:
    corpus = load_corpus(scifact_dir)
    claim = load_queries(scifact_dir)[CLAIM_ID]
    (cited,) = load_qrels(scifact_dir, "test")[CLAIM_ID]
    return corpus, claim, cited


def test_an_answer_in_the_last_passage_of_a_long_document_is_found(
    apis: tuple[Api, Api], scifact: tuple[dict[str, BeirDoc], str, str]
) -> None:
    ingest, query = apis
    corpus, claim, cited = scifact
    others = [d for i, d in corpus.items() if i != cited]
    # A long real text: twelve abstracts about other things, then the one that answers the claim.
    parts = [d.text for d in others[:12]] + [corpus[cited].text]
    long_text = "\n\n".join(parts)
    distractors = [{"id": f"short-{d.id}", "text": d.text} for d in others[12:40]]
    assert (
        post_docs(ingest, {"id": "review", "title": "Collected abstracts", "text": long_text}).status_code
        == 200
    )
    assert post_docs(ingest, *distractors).status_code == 200

    stats = ingest.http.get("/stats").json()
    assert stats["count"] == 1 + len(distractors) and stats["passages"] >= 10

    hits = query.http.post("/search", json={"query": claim, "k": 5}).json()["results"]
    assert hits[0]["id"] == "review", [h["id"] for h in hits]
    assert hits[0]["text"] == long_text  # the whole document, once
    assert [h["id"] for h in hits].count("review") == 1
    highlight = hits[0]["highlight"]
    assert highlight and highlight in long_text
    # The best passage lies in the last abstract, the one that answers.
    assert long_text.index(highlight) + len(highlight) > len(long_text) - len(parts[-1])

    # Hybrid finds it too, in the same way.
    hybrid = query.http.post("/search", json={"query": claim, "k": 5, "mode": "hybrid"}).json()
    assert hybrid["mode"] == "hybrid" and hybrid["results"][0]["id"] == "review"


def test_short_documents_behave_exactly_as_before(
    apis: tuple[Api, Api],
    scifact: tuple[dict[str, BeirDoc], str, str],
    base_weights: Path,
    chroma_server: ChromaServer,
) -> None:
    ingest, query = apis
    corpus, claim, _ = scifact
    doc = next(d for d in corpus.values() if len(d.text.split()) < 120)
    body = {"id": "plain", "title": doc.title, "text": doc.text, "metadata": {"k": 1}}
    assert post_docs(ingest, body).status_code == 200
    records = ChromaStore(chroma_server.host, chroma_server.port, "passages").get(
        latest_version(base_weights) or "", where={"k": 1}
    )
    assert [r.id for r in records] == ["plain"]  # one record, no passage
    hit = next(
        h
        for h in query.http.post("/search", json={"query": claim, "k": 100, "where": {"k": 1}}).json()[
            "results"
        ]
        if h["id"] == "plain"
    )
    assert hit["highlight"] is None and hit["text"] == body["text"]
    # The towers as the services run them by default: int8 queries, fp32 documents on OpenVINO.
    version = latest_version(base_weights)

    def served(settings: QuerySettings | IngestSettings, tower: Tower) -> Encoder:
        return open_encoder(
            [base_weights],
            version,
            engine="onnx",
            towers=(tower,),
            variant=settings.onnx_variant,
            backend=settings.onnx_backend,
        )

    queries, documents = served(QuerySettings(), "query"), served(IngestSettings(), "document")
    q = queries.encode_queries([claim])[0]
    d = documents.encode_documents([format_document(body["text"], body["title"])])[0]
    assert hit["distance"] == pytest.approx(1 - float(np.dot(q, d)), abs=1e-4)
