"""The document index in a standalone Chroma server, reached over HTTP: the store (connection,
timeouts, errors), documents and their passages, and the serving pointer with online migrations.

Services, training, the loader and the benchmarks all reach Chroma through this package only.
"""

from twotower.index.store import (
    ChromaStore,
    CollectionMissing,
    InvalidFilter,
    MetadataValue,
    Record,
    StoreUnavailable,
)

__all__ = ["ChromaStore", "CollectionMissing", "InvalidFilter", "MetadataValue", "Record", "StoreUnavailable"]
