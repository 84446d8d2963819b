"""A query's result and how ``--format`` prints it: an aligned text table, CSV with a header, or JSON lines.

Values print as the JSON inputs spell them (``hybrid_ingest.convert.to_json_value``:
ISO-8601 times, decimal strings, base64 bytes); a map (a metadata table's
``summary``) or a list prints as JSON in a table or CSV cell.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any

from hybrid_ingest.convert import to_json_value


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]


def render(result: QueryResult, fmt: str) -> str:
    if fmt == "jsonl":
        return "".join(json.dumps({c: _json(v) for c, v in zip(result.columns, row, strict=True)},
                                  default=str) + "\n" for row in result.rows)
    cells = [[_cell(v) for v in row] for row in result.rows]
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(result.columns)
        writer.writerows(cells)
        return buf.getvalue()
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(result.columns)]
    lines = [" | ".join(c.ljust(w) for c, w in zip(result.columns, widths, strict=True)),
             "-+-".join("-" * w for w in widths)]
    lines += [" | ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    lines.append(f"({len(cells)} row{'s' if len(cells) != 1 else ''})")
    return "\n".join(lines) + "\n"


def _json(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    return to_json_value(value)


def _cell(value: Any) -> str:
    converted = _json(value)
    if converted is None:
        return ""
    if isinstance(converted, dict | list):
        return json.dumps(converted, ensure_ascii=False, default=str)
    return str(converted)
