"""The ingestion API through real HTTP: upsert, get, delete, stats, and every kind of bad input."""

from __future__ import annotations

import pytest

from tests.services.conftest import MAX_DOCS, Api, errors, post_docs


def test_welcome_health_and_docs(ingest_api: Api) -> None:
    welcome = ingest_api.http.get("/").json()
    assert welcome["service"] == "ingest" and welcome["docs"] == "/docs"
    assert welcome["collection"] == f"svc-{welcome['model_version']}"
    assert ingest_api.http.get("/healthz").json() == {"status": "alive"}
    ready = ingest_api.http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert [c["name"] for c in ready.json()["checks"]] == ["model", "chroma", "serving"]
    spec = ingest_api.http.get("/openapi.json").json()
    assert {"/documents", "/documents/{doc_id}", "/stats", "/readyz"} <= set(spec["paths"])
    assert "X-API-Key" in str(spec["components"]["securitySchemes"])
    assert "swagger-ui" in ingest_api.http.get("/docs").text


def test_upsert_get_delete(ingest_api: Api) -> None:
    doc = {
        "id": "guide:returns@v1",
        "title": "Returns",
        "text": "Items can be returned within 30 days.",
        "metadata": {"source": "faq", "year": 2024, "public": True, "weight": 0.5},
    }
    before = ingest_api.http.get("/stats").json()["count"]
    answer = post_docs(ingest_api, doc)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["upserted"] == 1 and body["collection"] == f"svc-{body['model_version']}"
    assert ingest_api.http.get("/stats").json()["count"] == before + 1

    # An id with punctuation is one path segment.
    got = ingest_api.http.get("/documents/guide:returns@v1")
    assert got.status_code == 200
    assert got.json() == doc

    deleted = ingest_api.http.delete("/documents/guide:returns@v1")
    assert deleted.status_code == 200 and deleted.json()["deleted"] == "guide:returns@v1"
    assert ingest_api.http.get("/documents/guide:returns@v1").status_code == 404
    again = ingest_api.http.delete("/documents/guide:returns@v1")
    assert again.status_code == 404 and "guide:returns@v1" in again.json()["detail"]
    assert ingest_api.http.get("/stats").json()["count"] == before


def test_posting_an_id_again_replaces_it(ingest_api: Api) -> None:
    first = {"id": "idem-1", "text": "The first version of this note.", "metadata": {"rev": 1}}
    assert post_docs(ingest_api, first).status_code == 200
    count = ingest_api.http.get("/stats").json()["count"]
    second = {
        "id": "idem-1",
        "title": "Note",
        "text": "The second version replaces the first.",
        "metadata": {"rev": 2},
    }
    assert post_docs(ingest_api, second).status_code == 200
    assert ingest_api.http.get("/stats").json()["count"] == count
    assert ingest_api.http.get("/documents/idem-1").json() == second


def test_unknown_document_is_404(ingest_api: Api) -> None:
    response = ingest_api.http.get("/documents/no-such-id")
    assert response.status_code == 404
    assert "no-such-id" in response.json()["detail"]


@pytest.mark.parametrize(
    ("documents", "where", "says"),
    [
        ([], "body.documents", "at least 1"),
        ([{"id": "a", "text": "   "}], "body.documents.0.text", "whitespace"),
        ([{"id": "", "text": "x"}], "body.documents.0.id", "at least 1"),
        ([{"id": "a" * 513, "text": "x"}], "body.documents.0.id", "at most 512"),
        ([{"id": "a", "text": "x" * 100_001}], "body.documents.0.text", "at most 100000"),
        ([{"id": "a"}], "body.documents.0.text", "Field required"),
        ([{"id": 7, "text": "x"}], "body.documents.0.id", "valid string"),
        ([{"id": "a", "text": ["not", "a", "string"]}], "body.documents.0.text", "valid string"),
        ([{"id": "a", "text": "x", "metadata": "flat"}], "body.documents.0.metadata", "valid dictionary"),
        (
            [{"id": "a", "text": "x", "metadata": {"n": {"deep": 1}}}],
            "body.documents.0.metadata",
            "not an object",
        ),
        (
            [{"id": "a", "text": "x", "metadata": {"n": [1, 2]}}],
            "body.documents.0.metadata",
            "not an array",
        ),
        ([{"id": "a", "text": "x", "metadata": {"n": None}}], "body.documents.0.metadata", "not null"),
        ([{"id": "a", "text": "x", "metadata": {"_title": "x"}}], "body.documents.0.metadata", "reserved"),
        (
            [{"id": "a", "text": "x", "metadata": {"chroma:document": "x"}}],
            "body.documents.0.metadata",
            "reserved",
        ),
        ([{"id": "a", "text": "x", "score": 1}], "body.documents.0.score", "Extra inputs"),
        (
            [{"id": "a", "text": "x"}, {"id": "b", "text": "y"}, {"id": "a", "text": "z"}],
            "body.documents",
            "duplicated: 'a'",
        ),
        ([{"id": str(i), "text": "x"} for i in range(MAX_DOCS + 1)], "body.documents", f"at most {MAX_DOCS}"),
    ],
)
def test_bad_documents_are_422_naming_the_problem(
    ingest_api: Api, documents: list[object], where: str, says: str
) -> None:
    before = ingest_api.http.get("/stats").json()["count"]
    response = ingest_api.http.post("/documents", json={"documents": documents})
    assert response.status_code == 422, response.text
    assert any(loc == where and says in msg for loc, msg in errors(response)), errors(response)
    assert ingest_api.http.get("/stats").json()["count"] == before  # nothing stored


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"documents": [', "JSON decode error"),
        (b'{"documents": {"id": "a"}}', "valid list"),
        (b'["not", "an", "object"]', "valid dictionary"),
        (b"{}", "Field required"),
    ],
)
def test_malformed_bodies_are_422(ingest_api: Api, body: bytes, says: str) -> None:
    response = ingest_api.http.post("/documents", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert any(says in msg for _, msg in errors(response)), errors(response)
