"""Settings come from the environment with each service's prefix; gunicorn reads them too."""

from __future__ import annotations

import importlib
import runpy

import pytest

from services.ingest.config import Settings as IngestSettings
from services.query.config import Settings as QuerySettings
from tests.conftest import ROOT
from twotower.index.documents import PASSAGE_SEPARATOR, RESERVED_PREFIX
from twotower.limits import RESERVED_METADATA_PREFIXES, id_problem


def test_the_services_agree_with_the_index() -> None:
    # Keys the index owns are refused in clients' metadata...
    assert RESERVED_PREFIX in RESERVED_METADATA_PREFIXES
    # ...and no client id can look like one of its passage ids (<id>#<i>).
    assert id_problem(f"doc{PASSAGE_SEPARATOR}1") is not None


def test_settings_read_their_own_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGEST_CHROMA_HOST", "chroma")
    monkeypatch.setenv("INGEST_API_KEY", "k")
    monkeypatch.setenv("INGEST_MODEL_VERSION", "")  # empty = not pinned
    monkeypatch.setenv("QUERY_CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("QUERY_LOG_LEVEL", "WARNING")
    ingest, query = IngestSettings(), QuerySettings()
    assert ingest.chroma_host == "chroma" and query.chroma_host == "localhost"
    assert ingest.api_key is not None and ingest.api_key.get_secret_value() == "k"
    assert ingest.model_version is None
    assert query.cors_origins == ["https://a.example", "https://b.example"]
    assert query.log_level == "warning"
    monkeypatch.setenv("QUERY_CORS_ORIGINS", '["https://c.example"]')
    assert QuerySettings().cors_origins == ["https://c.example"]
    monkeypatch.setenv("INGEST_API_KEY", "  ")
    assert IngestSettings().api_key is None


@pytest.mark.parametrize(("service", "prefix"), [("query", "QUERY_"), ("ingest", "INGEST_")])
def test_gunicorn_config_binds_from_settings(
    monkeypatch: pytest.MonkeyPatch, service: str, prefix: str
) -> None:
    monkeypatch.setenv(f"{prefix}PORT", "9123")
    monkeypatch.setenv(f"{prefix}WORKERS", "3")
    conf = runpy.run_path(str(ROOT / "services" / service / "gunicorn.conf.py"))
    assert conf["bind"] == "0.0.0.0:9123" and conf["workers"] == 3
    module, _, cls = conf["worker_class"].rpartition(".")
    assert hasattr(importlib.import_module(module), cls)
