"""The query API through real HTTP: search results, filters, bad input, CORS, /docs."""

from __future__ import annotations

from typing import Any

import pytest

from tests.services.conftest import Api, errors, post_docs

DOCS = [
    {
        "id": "q-returns",
        "title": "Returns",
        "text": "Items can be returned within 30 days of delivery for a refund.",
        "metadata": {"source": "faq", "year": 2023},
    },
    {
        "id": "q-shipping",
        "title": "Shipping",
        "text": "Orders ship within two business days by courier.",
        "metadata": {"source": "faq", "year": 2024},
    },
    {
        "id": "q-python",
        "title": "Comprehensions",
        "text": "A list comprehension builds a list from an iterable.",
        "metadata": {"source": "python", "year": 2024},
    },
]


@pytest.fixture(scope="module")
def indexed(ingest_api: Api) -> Api:
    response = post_docs(ingest_api, *DOCS)
    assert response.status_code == 200, response.text
    return ingest_api


def search(api: Api, **body: object) -> dict[str, Any]:
    response = api.http.post("/search", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_welcome_readiness_and_docs(indexed: Api, query_api: Api) -> None:
    welcome = query_api.http.get("/").json()
    assert welcome["service"] == "query" and welcome["docs"] == "/docs"
    # Both services serve the same model version, hence the same collection.
    assert welcome["collection"] == indexed.http.get("/stats").json()["collection"]
    assert query_api.http.get("/healthz").status_code == 200
    ready = query_api.http.get("/readyz").json()
    assert ready["ready"] is True
    assert [c["name"] for c in ready["checks"]] == ["model", "chroma", "serving", "collection"]
    spec = query_api.http.get("/openapi.json").json()
    search_body = spec["components"]["schemas"]["SearchRequest"]
    assert search_body["properties"]["k"]["maximum"] == 100 and search_body["properties"]["k"]["minimum"] == 1
    assert search_body["properties"]["query"]["maxLength"] == 2000
    assert "503" in spec["paths"]["/search"]["post"]["responses"]
    assert "swagger-ui" in query_api.http.get("/docs").text


def test_search_ranks_by_cosine_distance(indexed: Api, query_api: Api) -> None:
    answer = search(query_api, query="  How long do I have to send an item back?  ", k=3, mode="dense")
    assert answer["mode"] == "dense"
    assert answer["query"] == "How long do I have to send an item back?"
    assert answer["model_version"] == query_api.http.get("/").json()["model_version"]
    assert answer["took_ms"] > 0
    hits = answer["results"]
    assert len(hits) == 3
    assert hits[0]["id"] == "q-returns"
    assert hits[0]["title"] == "Returns" and hits[0]["metadata"] == {"source": "faq", "year": 2023}
    assert hits[0]["text"] == DOCS[0]["text"]
    distances = [h["distance"] for h in hits]
    assert distances == sorted(distances)
    for hit in hits:
        assert hit["score"] == pytest.approx(1 - hit["distance"])


def test_k_bounds_the_results(indexed: Api, query_api: Api) -> None:
    assert len(search(query_api, query="refund", k=1)["results"]) == 1
    assert len(search(query_api, query="refund")["results"]) <= 10


def test_where_filters_on_metadata(indexed: Api, query_api: Api) -> None:
    hits = search(query_api, query="list comprehension", k=10, where={"source": "faq"})["results"]
    assert {h["id"] for h in hits} == {"q-returns", "q-shipping"}
    hits = search(
        query_api, query="delivery", k=10, where={"$and": [{"source": "faq"}, {"year": {"$gte": 2024}}]}
    )
    assert [h["id"] for h in hits["results"]] == ["q-shipping"]


@pytest.mark.parametrize(
    ("body", "where", "says"),
    [
        ({"query": "   "}, "body.query", "whitespace"),
        ({"query": ""}, "body.query", "whitespace"),
        ({"k": 3}, "body.query", "Field required"),
        ({"query": "x" * 2001}, "body.query", "at most 2000"),
        ({"query": "refund", "k": 0}, "body.k", "greater than or equal to 1"),
        ({"query": "refund", "k": 101}, "body.k", "less than or equal to 100"),
        ({"query": "refund", "k": "ten"}, "body.k", "valid integer"),
        ({"query": 42}, "body.query", "valid string"),
        ({"query": "refund", "where": "source=faq"}, "body.where", "valid dictionary"),
        ({"query": "refund", "where": {"source": {"$like": "f%"}}}, "body.where", "unknown operator '$like'"),
        ({"query": "refund", "top_k": 5}, "body.top_k", "Extra inputs"),
    ],
)
def test_bad_searches_are_422_naming_the_field(
    indexed: Api, query_api: Api, body: dict[str, Any], where: str, says: str
) -> None:
    response = query_api.http.post("/search", json=body)
    assert response.status_code == 422, response.text
    assert any(loc == where and says in msg for loc, msg in errors(response)), errors(response)


def test_invalid_json_is_422(query_api: Api) -> None:
    response = query_api.http.post(
        "/search", content=b'{"query": "x",', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert any("JSON decode error" in msg for _, msg in errors(response))


def test_cors_allows_the_configured_origin(query_api: Api) -> None:
    origin = "https://app.example"
    preflight = query_api.http.options(
        "/search",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == origin
    simple = query_api.http.get("/healthz", headers={"Origin": origin})
    assert simple.headers["access-control-allow-origin"] == origin
    other = query_api.http.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_hybrid_is_the_default_and_fuses_bm25_over_the_dense_candidates(indexed: Api, query_api: Api) -> None:
    dense = search(query_api, query="courier delivery", k=3, mode="dense")["results"]
    answer = search(query_api, query="courier delivery", k=3)
    assert answer["mode"] == "hybrid"
    hits = answer["results"]
    assert {h["id"] for h in hits} == {h["id"] for h in dense}  # the same candidates, re-ranked
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    # "courier" occurs only in q-shipping: BM25 puts it first, and fusion keeps it there or lifts it.
    assert hits[0]["id"] == "q-shipping"
    # RRF scores: 1/(60 + dense rank) + 1/(60 + BM25 rank), at most 2/61.
    assert 1 / 63 <= hits[0]["score"] <= 2 / 61 + 1e-6
