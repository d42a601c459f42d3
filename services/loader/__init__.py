"""Demo-corpus loader: `python -m services.loader` posts a corpus to the ingestion API over HTTP."""
