"""Pieces both services use: the Chroma store and model loading. No routes live here."""
