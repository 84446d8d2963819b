"""``python -m hybrid_ingest.cli``: the same entry point as the ``hybrid-ingest`` script."""

from hybrid_ingest.cli import main

main()
