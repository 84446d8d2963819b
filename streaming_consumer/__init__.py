"""Stream -> raw: the micro-batch core, the shard consumer runtime and the Glue streaming job entry."""
