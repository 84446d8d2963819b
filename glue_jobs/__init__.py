"""Batch compaction and CDC merge: the engine-independent core, its DuckDB and PySpark kernels, query.

The same code runs as the AWS Glue 5.0 job (``merge_job.py`` is the entry script)
and locally; see ``glue_jobs.merge`` for the run and ``glue_jobs.merge_sql`` for
the merge rules every engine executes.
"""
