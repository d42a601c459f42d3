"""INGEST_HNSW_*: the collection the ingestion service creates carries them, read back from Chroma."""

from __future__ import annotations

from pathlib import Path

import chromadb
import pytest

from services.ingest.config import Settings as IngestSettings
from services.ingest.config import hnsw_settings
from tests.conftest import ChromaServer
from tests.services.conftest import ingest_service, post_docs
from twotower.index.store import HnswSettings


def test_the_ingestion_services_hnsw_settings_reach_the_collection(
    chroma_server: ChromaServer, base_weights: Path
) -> None:
    with ingest_service(
        chroma_server, base_weights, "hnsw", hnsw_ef_search=23, hnsw_ef_construction=61, hnsw_max_neighbors=10
    ) as api:
        assert post_docs(api, {"id": "a", "text": "a first document"}).status_code == 200
    client = chromadb.HttpClient(host=chroma_server.host, port=chroma_server.port)
    (made,) = [
        c
        for c in client.list_collections()
        if c.name.startswith("hnsw-") and "model_version" in (c.metadata or {})
    ]
    hnsw = made.configuration_json["hnsw"]
    assert (hnsw["space"], hnsw["ef_search"], hnsw["ef_construction"], hnsw["max_neighbors"]) == (
        "cosine",
        23,
        61,
        10,
    )


def test_unset_hnsw_settings_are_the_index_layers_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGEST_HNSW_EF_SEARCH", "")
    monkeypatch.setenv("INGEST_HNSW_MAX_NEIGHBORS", "24")
    assert hnsw_settings(IngestSettings()) == HnswSettings(max_neighbors=24)
    monkeypatch.setenv("INGEST_HNSW_EF_SEARCH", "0")
    with pytest.raises(ValueError, match="hnsw_ef_search"):
        IngestSettings()
