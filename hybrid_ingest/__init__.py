"""hybrid-ingest: shared contracts (specs, wire format, registry, state, lake layout) and the CLI."""
