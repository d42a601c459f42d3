"""POST /feedback through real HTTP and a real Chroma: search ids, what is stored, what is refused."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ChromaServer
from tests.services.conftest import Api, post_docs, query_service
from twotower.index.feedback import FeedbackLog
from twotower.index.store import ChromaStore

DOCS = [
    {
        "id": "fb-tea",
        "title": "Tea",
        "text": "Green tea is brewed from unoxidised leaves of Camellia sinensis.",
    },
    {"id": "fb-coffee", "title": "Coffee", "text": "Coffee is brewed from roasted coffee beans."},
    {"id": "fb-bikes", "title": "Bicycles", "text": "A bicycle has two wheels, pedals and a chain."},
]


@pytest.fixture(scope="module")
def indexed(ingest_api: Api) -> Api:
    response = post_docs(ingest_api, *DOCS)
    assert response.status_code == 200, response.text
    return ingest_api


def log_of(chroma: ChromaServer, prefix: str = "svc") -> FeedbackLog:
    return FeedbackLog(ChromaStore(chroma.host, chroma.port, prefix))


def search(api: Api, query: str = "how is green tea made", k: int = 3, **extra: Any) -> dict[str, Any]:
    response = api.http.post("/search", json={"query": query, "k": k, **extra})
    assert response.status_code == 200, response.text
    return response.json()


def test_feedback_on_a_search_is_stored_with_what_it_showed(
    indexed: Api, query_api: Api, chroma_server: ChromaServer
) -> None:
    answer = search(query_api, mode="dense")
    shown = [hit["id"] for hit in answer["results"]]
    assert answer["search_id"] and set(shown) == {d["id"] for d in DOCS}
    before = time.time()
    body = {"search_id": answer["search_id"], "clicked": [shown[1]], "not_relevant": [shown[0]]}
    response = query_api.http.post("/feedback", json=body)
    assert response.status_code == 200, response.text
    stored = [e for e in log_of(chroma_server).events(since=before - 1) if e.id == response.json()["id"]]
    assert len(stored) == 1
    event = stored[0]
    assert event.shown == tuple(shown) and event.clicked == (shown[1],)
    assert event.not_relevant == (shown[0],) and event.relevant == ()
    assert event.query == "how is green tea made" and event.mode == "dense"
    assert event.version == answer["model_version"]
    assert abs(event.searched_at - before) < 5
    # The same request again is the same event, stored once.
    again = query_api.http.post("/feedback", json=body)
    assert again.json()["id"] == response.json()["id"]
    assert len([e for e in log_of(chroma_server).events(since=before - 1) if e.id == event.id]) == 1


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"search_id": "not-a-search-id"}, 404),  # unknown
        ({"tamper": True}, 404),  # a valid id with one character changed
        ({"clicked": ["fb-nowhere"]}, 422),  # not among the results
        ({"clicked": []}, 422),  # names nothing
        ({"clicked": "fb-tea"}, 422),  # not a list
        ({"extra": 1}, 422),  # unknown field
        ({"clicked": ["x"] * 101}, 422),  # more ids than a search returns
        ({"search_id": "x" * 60_001}, 422),  # longer than any search id
    ],
)
def test_bad_feedback_is_a_4xx_and_stores_nothing(
    indexed: Api, query_api: Api, chroma_server: ChromaServer, change: dict[str, Any], status: int
) -> None:
    answer = search(query_api, k=2)
    body: dict[str, Any] = {"search_id": answer["search_id"], "clicked": [answer["results"][0]["id"]]}
    if change.pop("tamper", False):
        token = body["search_id"]
        middle = len(token) // 2
        body["search_id"] = token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]
    body.update(change)
    before = log_of(chroma_server).count()
    response = query_api.http.post("/feedback", json=body)
    assert response.status_code == status, response.text
    assert log_of(chroma_server).count() == before


def test_an_id_ranked_below_k_was_not_shown(indexed: Api, query_api: Api) -> None:
    answer = search(query_api, query="bicycle chain", k=1)
    hidden = next(d["id"] for d in DOCS if d["id"] != answer["results"][0]["id"])
    response = query_api.http.post("/feedback", json={"search_id": answer["search_id"], "clicked": [hidden]})
    assert response.status_code == 422
    [issue] = response.json()["detail"]  # the shape of every 422 (the fuzz test checks the schema)
    assert issue["loc"] == ["body"] and hidden in issue["msg"]


def test_oversize_body_is_413_before_it_is_read(query_api: Api) -> None:
    response = query_api.http.post(
        "/feedback",
        content=b'{"search_id": "' + b"x" * 70_000 + b'"}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413


def test_limits_expiry_and_key_shared_through_chroma(
    indexed: Api, chroma_server: ChromaServer, base_weights: Path
) -> None:
    # Two apps without a configured secret (two replicas): each verifies the other's search ids.
    with (
        query_service(chroma_server, base_weights, "svc", feedback_rate_per_s=1) as slow,
        query_service(chroma_server, base_weights, "svc", feedback_max_age_s=1) as short,
    ):
        answer = search(short)
        body = {"search_id": answer["search_id"], "clicked": [answer["results"][0]["id"]]}
        codes = [slow.http.post("/feedback", json=body).status_code for _ in range(5)]
        assert codes[0] == 200 and codes[-1] == 429, codes  # burst of 2, then refused
        refused = slow.http.post("/feedback", json=body)
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        time.sleep(2.1)
        assert short.http.post("/feedback", json=body).status_code == 410


def test_feedback_off_issues_no_id_and_refuses(
    indexed: Api, chroma_server: ChromaServer, base_weights: Path, query_api: Api
) -> None:
    answer = search(query_api)
    with query_service(chroma_server, base_weights, "svc", feedback=False) as off:
        assert search(off)["search_id"] is None
        body = {"search_id": answer["search_id"], "clicked": [answer["results"][0]["id"]]}
        assert off.http.post("/feedback", json=body).status_code == 404


def test_query_text_not_kept_when_turned_off(
    indexed: Api, chroma_server: ChromaServer, base_weights: Path
) -> None:
    with query_service(chroma_server, base_weights, "svc", feedback_store_queries=False) as api:
        answer = search(api, query="private words about coffee")
        body = {"search_id": answer["search_id"], "relevant": [answer["results"][0]["id"]]}
        response = api.http.post("/feedback", json=body)
        assert response.status_code == 200
    event = next(e for e in log_of(chroma_server).events() if e.id == response.json()["id"])
    assert event.query == "" and event.relevant == (answer["results"][0]["id"],)


def test_full_store_refuses_until_retention_frees_room(
    indexed: Api, query_api: Api, chroma_server: ChromaServer, base_weights: Path
) -> None:
    answer = search(query_api, k=3)
    ids = [hit["id"] for hit in answer["results"]]
    events = log_of(chroma_server)
    with query_service(chroma_server, base_weights, "svc", feedback_max_records=events.count() + 1) as api:
        assert (
            api.http.post(
                "/feedback", json={"search_id": answer["search_id"], "clicked": ids[:1]}
            ).status_code
            == 200
        )
        full = api.http.post("/feedback", json={"search_id": answer["search_id"], "clicked": ids[1:2]})
        assert full.status_code == 503 and "full" in full.json()["detail"]
    time.sleep(0.5)
    # Retention of 0.1 s: the full store's sweep deletes every older event, and the write goes through.
    with query_service(
        chroma_server, base_weights, "svc", feedback_max_records=1, feedback_retention_days=0.1 / 86_400
    ) as api:
        response = api.http.post("/feedback", json={"search_id": answer["search_id"], "clicked": ids[2:3]})
        assert response.status_code == 200, response.text
    assert [e.id for e in events.events()] == [response.json()["id"]]
