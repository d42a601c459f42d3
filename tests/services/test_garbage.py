"""A service freezes what it loaded at start-up out of the garbage collector's walks while it runs
(services/common/garbage.py: shorter GC pauses under load), and thaws it at shutdown."""

from __future__ import annotations

import gc
from pathlib import Path

from tests.conftest import ChromaServer
from tests.services.conftest import query_service


def test_start_up_objects_are_frozen_while_the_service_runs(
    chroma_server: ChromaServer, base_weights: Path
) -> None:
    gc.unfreeze()
    with query_service(chroma_server, base_weights, "gcfreeze") as api:
        assert api.http.get("/healthz").status_code == 200
        # The model, the modules, the app: far more than a bare interpreter's few thousand objects.
        assert gc.get_freeze_count() > 20_000
    assert gc.get_freeze_count() == 0
