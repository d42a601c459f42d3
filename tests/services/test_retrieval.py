"""Retrieval works through the product: 50 SciFact abstracts ingested over HTTP, their claims
searched over HTTP, and each claim's cited abstract comes back in the top 3 (real model, real Chroma)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ChromaServer
from tests.services.conftest import Api, ingest_service, query_service
from twotower.beir import load_corpus, load_qrels, load_queries

N_DOCS = 50
# Measured with the untrained (= base all-MiniLM-L6-v2) model: see the report printed by the test.
MIN_TOP3 = 0.9


def scifact_sample(folder: Path) -> tuple[list[dict[str, str]], dict[str, tuple[str, set[str]]]]:
    """The first 50 abstracts cited by test claims (claims in id order), and every test claim whose
    cited abstracts are all among them."""
    qrels = load_qrels(folder, "test")
    chosen: list[str] = []
    for qid in sorted(qrels, key=int):
        for doc_id in sorted(qrels[qid]):
            if doc_id not in chosen and len(chosen) < N_DOCS:
                chosen.append(doc_id)
    corpus, queries = load_corpus(folder), load_queries(folder)
    docs = [{"id": d, "title": corpus[d].title, "text": corpus[d].text} for d in chosen]
    claims = {qid: (queries[qid], set(cited)) for qid, cited in qrels.items() if set(cited) <= set(chosen)}
    return docs, claims


@pytest.fixture(scope="module")
def services(chroma_server: ChromaServer, base_weights: Path) -> Iterator[tuple[Api, Api]]:
    # Their own collection prefix: the ranking is measured on these 50 abstracts and nothing else.
    with (
        ingest_service(chroma_server, base_weights, "scifact", max_documents_per_request=20) as ingest,
        query_service(chroma_server, base_weights, "scifact") as query,
    ):
        yield ingest, query


def test_cited_abstract_ranks_in_top_3(services: tuple[Api, Api], scifact_dir: Path) -> None:
    ingest, query = services
    docs, claims = scifact_sample(scifact_dir)
    assert len(docs) == N_DOCS and len(claims) >= 40
    for start in range(0, len(docs), 20):
        answer = ingest.http.post("/documents", json={"documents": docs[start : start + 20]})
        assert answer.status_code == 200, answer.text
    assert ingest.http.get("/stats").json()["count"] == N_DOCS

    hits_at_3, misses = 0, []
    for qid, (claim, cited) in sorted(claims.items(), key=lambda kv: int(kv[0])):
        response = query.http.post("/search", json={"query": claim, "k": 3})
        assert response.status_code == 200, response.text
        top3 = [hit["id"] for hit in response.json()["results"]]
        if cited & set(top3):
            hits_at_3 += 1
        else:
            misses.append((qid, sorted(cited), top3))
    fraction = hits_at_3 / len(claims)
    print(
        f"\nSciFact through the services: {hits_at_3}/{len(claims)} claims ({fraction:.1%}) have a "
        f"cited abstract in the top 3 of {N_DOCS}; misses (claim, cited, top 3): {misses}"
    )
    assert fraction >= MIN_TOP3
