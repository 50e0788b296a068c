"""Real servers and the four services on loopback, for development, benchmarks and tests.

:mod:`reco.local.servers` starts real Kafka, Redis and PostgreSQL servers on free ports;
:mod:`reco.local.stack` runs ``reco ingest``, ``processor``, ``archiver`` and ``api`` as
processes against them (``make run-stack``, the benchmarks, the integration tests).

Nothing in the engine's runtime imports this package (an import-linter contract says so):
it installs servers with the ``tools/`` scripts of a repository checkout, which a deployed
engine does not have.
"""
