"""Ingestion service: embeds documents with the document tower and upserts them into Chroma."""
