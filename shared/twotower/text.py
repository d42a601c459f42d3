"""How a document becomes the document tower's input text (shared by ingestion, training and eval)."""

from __future__ import annotations


def format_document(text: str, title: str | None = None) -> str:
    """The document tower's input: title and body, as BEIR scores them ("title text")."""
    return f"{title} {text}" if title else text
