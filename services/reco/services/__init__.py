"""The production shape: each role as its own service over Kafka, Redis and PostgreSQL.

Each module composes one role with its adapters into an app (``create_app(settings)``);
``reco ingest|processor|archiver|api`` serve them with uvicorn. The roles never import
each other; only this package and ``reco.embedded`` put them together with backends.
"""
