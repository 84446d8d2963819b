"""The Spark kernel's session handling: materialised relations computed once and released."""

from __future__ import annotations

from typing import Any

import pytest

from glue_jobs.kernel_spark import SESSION_CONF, SparkEngine


@pytest.mark.spark
def test_materialised_relations_are_computed_once_and_released(spark: Any) -> None:
    def persistent() -> int:
        return int(spark.sparkContext._jsc.sc().getPersistentRDDs().size())

    held = persistent()
    before = {key: spark.conf.get(key, None) for key in SESSION_CONF}
    engine = SparkEngine(spark)
    try:
        engine.define("numbers", "SELECT id FROM range(10)", True)
        assert persistent() == held + 1  # eager: stored before anything reads it
        assert engine.fetch("SELECT count(*) FROM numbers") == [(10,)]
    finally:
        engine.close()
    assert persistent() == held
    assert {key: spark.conf.get(key, None) for key in SESSION_CONF} == before
