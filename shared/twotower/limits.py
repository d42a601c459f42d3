"""Bounds of the ingestion API, in a module with no imports so the loader CLI can share them cheaply."""

MAX_ID_CHARS = 512
MAX_TEXT_CHARS = 100_000
MAX_TITLE_CHARS = 1_000
MAX_METADATA_KEYS = 64
MAX_METADATA_KEY_CHARS = 128
# A hard ceiling the schema enforces whatever INGEST_MAX_DOCUMENTS_PER_REQUEST says, so that a
# huge body is refused early.
MAX_DOCUMENTS_CEILING = 10_000
# Metadata keys the store owns ("_title") and keys Chroma reserves ("chroma:document").
RESERVED_METADATA_PREFIXES = ("_", "chroma:")
