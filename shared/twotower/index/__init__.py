"""The document index in a standalone Chroma server, reached over HTTP.

    store       connection, timeouts, errors, record-level reads and chunked writes
    documents   documents as records: passages of long documents, metadata, search candidates
    passages    splitting long documents by the backbone's tokens
    serving     the serving pointer (which version every service serves) and migration intents
    migration   ingestion's writes that follow the pointer, and the rollout of a new version

Services, training, the loader and the benchmarks reach Chroma through this package only.
"""
