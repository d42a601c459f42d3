"""Benchmarks: ingestion throughput and /search latency against a running stack, and the towers'
encoding throughput in-process (`python -m bench`, `make bench`)."""
