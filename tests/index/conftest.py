"""Fixtures for the index layer: stores on the session's real Chroma server (a prefix per test),
and a small deterministic encoder for the tests about data layout and consistency (the tests
about retrieval quality use the real model, through the services)."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from tests.conftest import ChromaServer
from twotower.config import PACKAGED_BASE_MODEL, resolve_base_model
from twotower.engine import Engine
from twotower.index.store import ChromaStore

_prefixes = itertools.count()


@pytest.fixture(scope="session")
def tokenizer() -> Tokenizer:
    """The real backbone's tokenizer (passages are counted in its tokens)."""
    tok = Tokenizer.from_file(str(Path(resolve_base_model(PACKAGED_BASE_MODEL)) / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return tok


class HashEncoder:
    """Same text and version -> same unit vector; another version -> another vector. Enough to
    check where records go, never how well anything ranks."""

    engine: Engine = "torch"
    dim = 8
    max_seq_length = 256
    batch_size = 64

    def __init__(self, version: str, tokenizer: Tokenizer) -> None:
        self.version, self._tokenizer = version, tokenizer
        self.encoded = 0

    @property
    def tokenizer(self) -> Tokenizer:
        return self._tokenizer

    def _vectors(self, texts: Sequence[str], tower: str) -> np.ndarray:
        self.encoded += len(texts)
        rows = []
        for text in texts:
            seed = int.from_bytes(
                hashlib.sha256(f"{self.version}|{tower}|{text}".encode()).digest()[:8], "little"
            )
            v = np.random.default_rng(seed).normal(size=self.dim)
            rows.append(v / np.linalg.norm(v))
        return np.asarray(rows, dtype=np.float32).reshape(len(texts), self.dim)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._vectors(texts, "query")

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._vectors(texts, "document")

    def close(self) -> None:
        pass


@pytest.fixture
def make_store(chroma_server: ChromaServer) -> Callable[..., ChromaStore]:
    """A store with a prefix of its own, so tests never see each other's collections."""

    def make(**kwargs: object) -> ChromaStore:
        return ChromaStore(chroma_server.host, chroma_server.port, f"ix{next(_prefixes)}", **kwargs)  # type: ignore[arg-type]

    return make


@pytest.fixture
def encoders(tokenizer: Tokenizer) -> Callable[[str], HashEncoder]:
    cache: dict[str, HashEncoder] = {}

    def encoder_for(version: str) -> HashEncoder:
        return cache.setdefault(version, HashEncoder(version, tokenizer))

    return encoder_for
