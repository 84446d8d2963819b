"""``hybrid-ingest demo``: the simulated source through every stage on the local stack, then checks.

Each stage is driven through the same command-line contract a user has (in
process, so the demo pays Python's start-up once), and the demo ends by
comparing the curated tables, and the live view, with the source's own tables.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import decimal
import io
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from hybrid_ingest.demo.source import KEYS, Row, Scenario, simulate

Runner = Callable[[list[str]], str]


@dataclass
class Stage:
    name: str
    seconds: float
    detail: str


@dataclass
class Report:
    stages: list[Stage] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[list[str]]:
        click.secho(f"==> {name}", bold=True)
        detail: list[str] = []
        start = time.monotonic()
        yield detail
        self.stages.append(Stage(name, time.monotonic() - start, "; ".join(detail)))


def write_jsonl(path: Path, events: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))


def write_csv(path: Path, rows: list[Row]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    path.write_text(buf.getvalue())


def canonical(value: Any) -> Any:
    """One comparable form for values coming from the source's JSON and from query output."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return round(float(value), 4)
    text = str(value)
    try:
        return round(float(decimal.Decimal(text)), 4)
    except decimal.InvalidOperation:
        pass
    if len(text) >= 19 and text[4] == "-" and text[10] in "T ":
        return text.replace(" ", "T").replace("+00:00", "Z").removesuffix("Z")[:19]
    return text


def compare(table: str, expected: dict[tuple[Any, ...], Row], got: list[Row]) -> list[str]:
    """Differences between the source table and rows read back, by key, with values compared canonically."""
    keys = KEYS[table]
    actual = {tuple(canonical(r[k]) for k in keys): r for r in got}
    wanted = {tuple(canonical(v) for v in k): row for k, row in expected.items()}
    problems = []
    missing = wanted.keys() - actual.keys()
    extra = actual.keys() - wanted.keys()
    if missing:
        problems.append(f"{table}: {len(missing)} rows missing, e.g. {sorted(missing)[:3]}")
    if extra:
        problems.append(f"{table}: {len(extra)} rows that the source does not have, e.g. {sorted(extra)[:3]}")
    if len(got) != len(actual):
        problems.append(f"{table}: {len(got) - len(actual)} duplicated keys")
    wrong = [k for k in wanted.keys() & actual.keys()
             if any(canonical(wanted[k][c]) != canonical(actual[k].get(c)) for c in wanted[k])]
    if wrong:
        k = sorted(wrong)[0]
        diff = {c: (wanted[k][c], actual[k].get(c)) for c in wanted[k]
                if canonical(wanted[k][c]) != canonical(actual[k].get(c))}
        problems.append(f"{table}: {len(wrong)} rows differ, e.g. key {k}: {diff}")
    return problems


def query_rows(run: Runner, sql: str) -> list[Row]:
    out = run(["query", sql, "--format", "jsonl"])
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def run_demo(run: Runner, workdir: Path, customers: int = 300, orders: int = 1500) -> Report:
    """Every stage of the service on the local stack; ``run`` invokes one CLI command and returns its output."""
    report = Report()
    with report.stage("local stack up and init") as d:
        d.append(run(["local", "up"]).strip().splitlines()[-1])
        d.append(f"{sum('registered' in line for line in run(['init']).splitlines())} tables registered")
    scenario: Scenario = simulate(customers=customers, orders=orders, end=dt.datetime.now(dt.UTC))
    src = scenario.source
    with report.stage("produce change events (Avro, KPL-aggregated) to Kinesis") as d:
        total = 0
        for table, events in scenario.events.items():
            path = workdir / f"{table}.jsonl"
            write_jsonl(path, events)
            click.echo(run(["produce", table, "--input", str(path)]).strip())
            total += len(events)
        d.append(f"{total} events ({scenario.duplicates} duplicates, {scenario.late} late re-deliveries)")
    with report.stage("land the nightly full extract of customers (as DataSync would)") as d:
        path = workdir / "customers_extract.csv"
        write_csv(path, scenario.extract_rows)
        click.echo(run(["bulk", "push", "customers", "--input", str(path), "--as-of-seq",
                        str(scenario.extract_as_of), "--mode", "full"]).strip())
        d.append(f"{len(scenario.extract_rows)} rows as of seq {scenario.extract_as_of}")
    with report.stage("consume the stream into the raw zone") as d:
        out = run(["consume", "--until-idle"])
        click.echo(out.strip())
        d.append(out.strip().splitlines()[-1] if out.strip() else "")
    with report.stage("batch workflow (Step Functions: lock, plan, merge per table, commit)") as d:
        out = run(["batch", "run"])
        click.echo(out.strip())
        d.append(out.strip().splitlines()[-1] if out.strip() else "")
    with report.stage("check curated tables against the source") as d:
        for table in KEYS:
            got = query_rows(run, f"SELECT * FROM {table}")
            report.problems += compare(table, src.tables[table], got)
            d.append(f"{table}: {len(got)} rows (source {len(src.tables[table])})")
        sample = run(["query", "SELECT date_format(order_date, '%Y-%m') AS month, count(*) AS orders, sum(total_amount) AS revenue "
                                "FROM orders GROUP BY 1 ORDER BY 1 DESC LIMIT 5"])
        click.echo(sample)
    with report.stage("live view: changes visible before the next merge") as d:
        before = len(src.log["orders"])
        src.clock, src.tick_seconds = dt.datetime.now(dt.UTC), (0, 0)
        for i in range(20):
            oid = 10_000_000 + i
            src.insert("orders", src.order(oid, next(iter(src.tables["customers"]))[0]))
        fresh = src.log["orders"][before:]
        path = workdir / "orders_fresh.jsonl"
        write_jsonl(path, fresh)
        run(["produce", "orders", "--input", str(path)])
        run(["consume", "--until-idle"])
        curated = query_rows(run, "SELECT count(*) AS n FROM orders")[0]["n"]
        live = query_rows(run, "SELECT * FROM orders_live")
        report.problems += [f"live view: {p}" for p in compare("orders", src.tables["orders"], live)]
        d.append(f"orders: curated {curated} rows, live view {len(live)} rows (+{len(live) - int(curated)} not merged yet)")
    with report.stage("second batch run, Spark engine, then check again") as d:
        out = run(["batch", "run", "--engine", "spark"])
        click.echo(out.strip())
        for table in KEYS:
            got = query_rows(run, f"SELECT * FROM {table}")
            report.problems += [f"after the Spark run: {p}" for p in compare(table, src.tables[table], got)]
        d.append(f"orders: curated now {len(query_rows(run, 'SELECT order_id FROM orders'))} rows")
    with report.stage("time travel and the snapshots table, as on Athena") as d:
        snapshots = query_rows(run, "SELECT snapshot_id, operation FROM \"orders$snapshots\" ORDER BY committed_at")
        first = snapshots[0]["snapshot_id"]
        then = query_rows(run, f"SELECT count(*) AS n FROM orders FOR VERSION AS OF {first}")[0]["n"]
        if then != curated:
            report.problems.append(f"time travel: orders at the first run's snapshot {first} has {then} rows, "
                                   f"that run left {curated}")
        d.append(f"orders: {len(snapshots)} snapshots; FOR VERSION AS OF {first} (the first run): {then} rows")
    with report.stage("status") as d:
        click.echo(run(["status"]))
        d.append("freshness, watermarks, consumer lag and DLQ above")
    return report


def print_summary(report: Report) -> None:
    click.secho("\nSummary", bold=True)
    for stage in report.stages:
        click.echo(f"  {stage.seconds:6.1f} s  {stage.name}: {stage.detail}")
    if report.problems:
        click.secho("\nThe curated tables disagree with the source:", fg="red", bold=True)
        for problem in report.problems:
            click.echo(f"  - {problem}")
    else:
        click.secho("\nCurated tables and live view equal the source tables.", fg="green", bold=True)
