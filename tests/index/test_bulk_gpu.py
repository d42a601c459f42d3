"""The bulk path on a GPU: an import of SciFact through the code `make import` and a rollout's
backfill run (twotower.index.bulk, ImportJob), with the document tower on CUDA at a GPU's batch
size: at least 3,000 abstracts/s, and vectors at cosine >= 0.999 to the CPU's (ONNX, as served).
Without a GPU it is skipped, saying so; the same code runs on the CPU in test_bulk.py and in the
live test (tests/deploy/test_bulk_live.py)."""

from __future__ import annotations

import chromadb
import numpy as np
import pytest

from bench.gpu import gpu_available
from tests.conftest import ChromaServer
from twotower.beir import iter_corpus
from twotower.engine import open_encoder
from twotower.index import bulk
from twotower.index.documents import PARTS_KEY
from twotower.index.importing import ImportJob, import_key
from twotower.index.serving import ServingPointer
from twotower.registry import latest_version
from twotower.text import format_document

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(gpu_available() is None, reason="no GPU: the bulk path's GPU run needs one"),
]


def test_an_import_on_the_gpu_is_fast_and_matches_the_cpu(
    chroma_server: ChromaServer, published_base: object, scifact_dir: object
) -> None:
    version = latest_version(published_base)  # type: ignore[arg-type]
    assert version is not None
    setup = bulk.Setup(
        chroma_server.host,
        chroma_server.port,
        "gpubulk",
        (str(published_base),),
        engine="torch",
        device="cuda",
    )
    ctx = setup.open()
    ServingPointer(ctx.store).initialize(version)
    ctx.encoder_for(version).encode_documents(["warm up"])
    corpus = str(scifact_dir)
    total = sum(1 for _ in iter_corpus(scifact_dir))  # type: ignore[arg-type]
    summary = bulk.run(ImportJob(corpus, import_key(corpus), 512), ctx, bulk.Fanout(), total=total)
    assert summary.count == total
    assert summary.count / summary.seconds >= 3000, summary.line()

    client = chromadb.HttpClient(host=chroma_server.host, port=chroma_server.port)
    stored = client.get_collection(ctx.store.collection_name(version)).get(
        limit=512, include=["embeddings", "metadatas", "documents"]
    )
    single = [
        i for i, m in enumerate(stored["metadatas"]) if PARTS_KEY not in m and "#" not in stored["ids"][i]
    ]
    texts = [
        format_document(stored["documents"][i], stored["metadatas"][i].get("_title") or None) for i in single
    ]
    cpu = open_encoder([str(published_base)], version, engine="onnx", variant="fp32", towers=["document"])
    reference = cpu.encode_documents(texts)
    gpu = np.asarray(stored["embeddings"])[single]
    cosine = np.sum(reference * gpu, axis=1) / np.linalg.norm(reference, axis=1) / np.linalg.norm(gpu, axis=1)
    assert len(single) > 100 and cosine.min() >= 0.999, cosine.min()
