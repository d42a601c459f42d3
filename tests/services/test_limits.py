"""Limits before work, over real HTTP against the real services: the key before the body (401 at
once), the body size before reading it (413 at once), and every field bound a 422 that names the
field and the limit, with a small, encodable body that echoes nothing back. A client mistake is
never a 5xx."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import ChromaServer
from tests.services.conftest import Api, errors, ingest_service, post_docs

KEY = "limits-key"
BODY_LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def guarded(chroma_server: ChromaServer, base_weights: Path) -> Iterator[Api]:
    """Ingestion with a key and a 64 KiB body limit."""
    with ingest_service(chroma_server, base_weights, "limits", api_key=KEY, max_body_bytes=BODY_LIMIT) as api:
        yield api


def raw_request(url: str, head: str, body: bytes = b"", timeout: float = 5.0) -> tuple[int, bytes, float]:
    """Send `head` (and `body`) on a raw socket, read the answer; (status, body, seconds to answer).
    Lets a test declare a huge Content-Length and send none of it."""
    parts = urlsplit(url)
    started = time.monotonic()
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(head.encode() + body)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    elapsed = time.monotonic() - started
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1], elapsed


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def post_head(path: str, length: int, key: str | None = None) -> str:
    auth = f"X-API-Key: {key}\r\n" if key else ""
    return (
        f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n{auth}\r\n"
    )


def test_no_key_is_401_before_a_byte_of_the_body(guarded: Api) -> None:
    # 200 MB declared, nothing sent: the answer cannot have waited for the body.
    status, body, seconds = raw_request(guarded.url, post_head("/documents", 200_000_000))
    assert status == 401 and json.loads(body) == {"detail": "missing X-API-Key header"}
    assert seconds < 2
    status, body, _ = raw_request(guarded.url, post_head("/documents", 200_000_000, key="wrong"))
    assert status == 401 and json.loads(body) == {"detail": "invalid X-API-Key header"}


def test_a_declared_oversize_body_is_413_before_it_is_read(guarded: Api) -> None:
    status, body, seconds = raw_request(guarded.url, post_head("/documents", 200_000_000, key=KEY))
    assert status == 413 and seconds < 2
    assert (
        json.loads(body)["detail"]
        == f"request body is larger than {BODY_LIMIT} bytes (INGEST_MAX_BODY_BYTES)"
    )


def test_a_chunked_oversize_body_is_413_once_it_passes_the_limit(guarded: Api) -> None:
    sent = 0

    def chunks() -> Iterator[bytes]:
        nonlocal sent
        yield b'{"documents": [{"id": "big", "text": "'
        for _ in range(1000):  # up to 16 MB, if the server kept reading
            sent += 16384
            yield b"x" * 16384

    try:
        response = guarded.http.post(
            "/documents", content=chunks(), headers={"X-API-Key": KEY, "Content-Type": "application/json"}
        )
    except (httpx.WriteError, httpx.RemoteProtocolError):
        pytest.skip("the server closed the connection before the client read the 413")  # either is fine
    assert response.status_code == 413
    assert "INGEST_MAX_BODY_BYTES" in response.json()["detail"]
    assert sent < 4 * 1024 * 1024  # it stopped reading long before the end
    assert guarded.http.get("/documents/big").status_code == 404


def test_a_body_within_the_limit_with_the_key_is_served(guarded: Api) -> None:
    doc = {"id": "ok-1", "text": "Within every limit.", "metadata": {"n": 2**63 - 1, "m": -(2**63)}}
    assert post_docs(guarded, doc, headers={"X-API-Key": KEY}).status_code == 200
    stored = guarded.http.get("/documents/ok-1").json()
    # int64 bounds round-trip exactly, as integers (2**63 used to come back as a float).
    assert stored["metadata"] == {"n": 2**63 - 1, "m": -(2**63)}


def test_an_oversize_search_is_413_and_echoes_nothing(query_api: Api) -> None:
    response = query_api.http.post("/search", json={"query": "x" * 70_000})
    assert response.status_code == 413 and "QUERY_MAX_BODY_BYTES" in response.json()["detail"]
    assert len(response.content) < 200


def raw_json(value: Any) -> bytes:
    # ensure_ascii keeps a lone surrogate as its \ud800 escape; allow_nan writes NaN/Infinity.
    return json.dumps(value, ensure_ascii=True, allow_nan=True).encode()


def doc(**fields: Any) -> dict[str, Any]:
    return {"id": "d-1", "text": "A document.", **fields}


BAD_DOCUMENTS = [
    (doc(text="bad \ud800 text"), "text", "unicode"),
    (doc(title="\udfff"), "title", "unicode"),
    (doc(id="a\ud800"), "id", "unicode"),
    (doc(id="a/b"), "id", "found '/'"),
    (doc(id="a#b"), "id", "found '#'"),
    (doc(id="a?b"), "id", "found '?'"),
    (doc(id="50%"), "id", "found '%'"),
    (doc(id="a b"), "id", "found ' '"),
    (doc(id="a\nb"), "id", "found '\\n'"),
    (doc(id="x/../y"), "id", "'..'"),
    (doc(id=".."), "id", "'..'"),
    (doc(id="."), "id", "'.'"),
    (doc(metadata={"k": "\ud800"}), "metadata", "unicode"),
    (doc(metadata={"\ud800": 1}), "metadata", "unicode"),
    (doc(metadata={"n": float("nan")}), "metadata", "finite"),
    (doc(metadata={"n": float("inf")}), "metadata", "finite"),
    (doc(metadata={"n": 2**63}), "metadata", "int64"),
    (doc(metadata={"n": -(2**63) - 1}), "metadata", "int64"),
    (doc(metadata={"n": 2**70}), "metadata", "int64"),
    (doc(metadata={"$and": 1}), "metadata", "reserved"),
    (doc(metadata={"#document": "x"}), "metadata", "reserved"),
    (doc(metadata={"": 1}), "metadata", "1 to 128 characters"),
    (doc(metadata={"a\x00b": 1}), "metadata", "control character"),
    (doc(metadata={"s": "v" * 4097}), "metadata", "at most 4096 characters"),
    (doc(metadata={f"k{i}": "v" * 4000 for i in range(5)}), "metadata", "16384 characters in all"),
    (doc(metadata={f"k{i}": i for i in range(65)}), "metadata", "at most 64 keys"),
]


@pytest.mark.parametrize(("document", "field", "says"), BAD_DOCUMENTS)
def test_bad_documents_are_422_naming_the_field(
    guarded: Api, document: dict[str, Any], field: str, says: str
) -> None:
    response = guarded.http.post(
        "/documents",
        content=raw_json({"documents": [document]}),
        headers={"X-API-Key": KEY, "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    found = errors(response)
    assert any(loc == f"body.documents.0.{field}" and says in msg.lower() for loc, msg in found), found
    assert set(response.json()["detail"][0]) == {"type", "loc", "msg"}  # no `input` echoed back
    assert len(response.content) < 1000
    assert guarded.http.get("/documents/d-1").status_code == 404


@pytest.mark.parametrize(
    ("path", "says"),
    [("/documents/a%2Fb", "found '/'"), ("/documents/a%23b", "found '#'"), ("/documents/a%20b", "found ' '")],
)
def test_ids_no_document_can_have_are_422_on_read_and_delete(guarded: Api, path: str, says: str) -> None:
    for response in (guarded.http.get(path), guarded.http.delete(path, headers={"X-API-Key": KEY})):
        assert response.status_code == 422
        assert any(loc == "path.doc_id" and says in msg for loc, msg in errors(response)), errors(response)


def deep_and(depth: int) -> dict[str, Any]:
    where: dict[str, Any] = {"a": 1}
    for _ in range(depth):
        where = {"$and": [where, {"b": 2}]}
    return where


BAD_SEARCHES = [
    ({"query": "bad \ud800"}, "body.query", "unicode"),
    ({"query": "x", "k": float("nan")}, "body.k", "finite"),
    ({"query": "x", "k": float("inf")}, "body.k", "finite"),
    ({"query": "x", "k": 2**70}, "body.k", "less than or equal to 100"),
    ({"query": "x" * 20_000}, "body.query", "at most 2000 characters"),
    ({"query": "x", "where": {"n": 2**63}}, "body.where", "int64"),
    ({"query": "x", "where": {"n": {"$gt": float("nan")}}}, "body.where", "finite"),
    ({"query": "x", "where": {"n": {"$lt": float("-inf")}}}, "body.where", "finite"),
    ({"query": "x", "where": {"s": "\ud800"}}, "body.where", "unicode"),
    ({"query": "x", "where": {"\ud800": 1}}, "body.where", "unicode"),
    ({"query": "x", "where": {"$and": 1}}, "body.where", "list of 2 to 32"),
    ({"query": "x", "where": {"$and": [{"a": 1}]}}, "body.where", "list of 2 to 32"),
    ({"query": "x", "where": {"$or": [{"a": 1}, "b"]}}, "body.where", "exactly one key"),
    ({"query": "x", "where": deep_and(5)}, "body.where", "nested at most 4 deep"),
    ({"query": "x", "where": deep_and(200)}, "body.where", "nested at most 4 deep"),
    ({"query": "x", "where": {"$or": [{f"f{i}": i} for i in range(33)]}}, "body.where", "list of 2 to 32"),
    ({"query": "x", "where": {"a": 1, "b": 2}}, "body.where", "exactly one key"),
    ({"query": "x", "where": {"$a": 1}}, "body.where", "reserved"),
    ({"query": "x", "where": {"_title": "x"}}, "body.where", "reserved"),
    ({"query": "x", "where": {"a": {"$gt": "x"}}}, "body.where", "needs a number"),
    ({"query": "x", "where": {"a": {"$gte": True}}}, "body.where", "needs a number"),
    ({"query": "x", "where": {"a": {"$in": []}}}, "body.where", "list of 1 to 100"),
    ({"query": "x", "where": {"a": {"$in": [1, "x"]}}}, "body.where", "one type"),
    ({"query": "x", "where": {"a": {"$nin": list(range(101))}}}, "body.where", "list of 1 to 100"),
    ({"query": "x", "where": {"a": {"$eq": 1, "$ne": 2}}}, "body.where", "exactly one operator"),
    ({"query": "x", "where": {"a": {"$contains": "x"}}}, "body.where", "unknown operator"),
    ({"query": "x", "where": {"a": {"$eq": {"b": 1}}}}, "body.where", "not an object"),
]


@pytest.mark.parametrize(("body", "where", "says"), BAD_SEARCHES)
def test_bad_searches_are_422_never_503(query_api: Api, body: dict[str, Any], where: str, says: str) -> None:
    response = query_api.http.post(
        "/search", content=raw_json(body), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    found = errors(response)
    assert any(loc == where and says.lower() in msg.lower() for loc, msg in found), found
    assert len(response.content) < 1000


def test_huge_numbers_and_deep_nesting_in_json_are_4xx(query_api: Api) -> None:
    # Beyond what Python's JSON parser takes (4300-digit integers, 100k-deep arrays): a 4xx, not a 500.
    for raw in (
        b'{"query": "x", "k": 1' + b"0" * 5000 + b"}",
        b'{"query": "x", "where": ' + b"[" * 100_000 + b"}",
    ):
        response = query_api.http.post("/search", content=raw, headers={"Content-Type": "application/json"})
        assert 400 <= response.status_code < 500, response.text
        assert len(response.content) < 1000


def test_a_filter_at_the_limits_is_served(ingest_api: Api, query_api: Api) -> None:
    doc = {
        "id": "lim-1",
        "text": "Returns are accepted within 30 days.",
        "metadata": {"year": 2024, "source": "lim"},
    }
    assert post_docs(ingest_api, doc).status_code == 200
    years = {"$or": [{"year": {"$in": [2023, 2024]}}, {"year": {"$gte": 2**63 - 1}}]}
    where = {"$and": [{"source": {"$eq": "lim"}}, years]}
    response = query_api.http.post("/search", json={"query": "returns", "k": 5, "where": where})
    assert response.status_code == 200, response.text
    assert [hit["id"] for hit in response.json()["results"]] == ["lim-1"]
