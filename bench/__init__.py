"""The benchmarks a user or CI runs: `make bench`, `make bench-gpu`, `make loadtest`, `make bench-peer`.
They drive the product through its public entry points only: HTTP, the `twotower` package, and CLIs
(gunicorn, `chroma run`, the loader) run as subprocesses."""
