"""``hybrid-ingest query``: one read-only Athena (Trino) statement over the curated tables.

Locally (the local stack) the statement runs on DuckDB over exactly the data
files of the Iceberg snapshots it names, with Athena's time travel and metadata
tables and the ``<table>_live`` views; on AWS it goes to Athena. Either way it
is checked first: one read statement, nothing else (``statement``).

The package is app layer, like the CLI: the live view reuses the merge's SQL
and the DuckDB kernel from ``glue_jobs``. Modules: ``statement`` (parsing and
the read-only check), ``resolve`` (names to snapshots, Athena's version rules),
``views`` and ``metadata`` (what DuckDB reads), ``live`` (the live view),
``sandbox`` (the engine's lock-down), ``local`` (the local engine), ``athena``,
``render``. Import from the module you need: importing this package stays
cheap, so a statement is refused before the engines load.
"""
