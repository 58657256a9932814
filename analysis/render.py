"""One renderer for every command: table, markdown, json or csv.

JSON schema (stable; ``schema`` is bumped on any incompatible change)::

    {"schema": 1, "command": "<name>", "convention": "<how ops are counted>" | null,
     "tables": [{"title": str, "columns": [str, ...], "units": {column: unit}, "rows": [{column: value}, ...]}],
     "notes": [str, ...]}

Numbers are JSON numbers (ints for counts); absent values are null. Every column's unit is in ``UNITS`` (by
column name): JSON lists them beside the columns, and the table, markdown and CSV headers say them, e.g.
``infer_gmacs [GMACs/img]``. CSV prints each table as a header row plus rows, tables separated by a blank line,
each preceded by a ``# title`` line. The table format fits ``WIDTH`` columns: a wider table is folded into parts
that each repeat its first column.
"""

import csv
import io
import json
import textwrap
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from tabulate import tabulate

__all__ = ["Table", "Report", "render", "FORMATS"]

FORMATS = ("table", "markdown", "json", "csv")
SCHEMA_VERSION = 1
WIDTH = 100  # columns of the table format
# column -> unit; a column named here carries its unit in every format (counts: "count"; per-image values: "/img")
UNITS: Dict[str, str] = {
    "params": "count",
    "added params": "count",
    "base": "count",
    "variant": "count",
    "added": "count",
    "MACs": "count",
    "elementwise": "ops",
    "FLOPs": "count",
    "FLOPs ratio": "x",
    "fp32 MB": "MB",
    "infer_gmacs": "GMACs/img",
    "infer_macts": "M acts/img",
    "gmacs_mm": "GMACs/img",
    "MB moved": "MB",
    "train MB moved": "MB",
    "train saved MB": "MB",
    "total": "count",
    "vs our MACs": "count",
    "ops missed": "ops",
}


@dataclass
class Table:
    title: str
    columns: Sequence[str]
    rows: List[Dict[str, Any]] = field(default_factory=list)


@dataclass
class Report:
    command: str
    tables: List[Table]
    convention: Optional[str] = None
    notes: List[str] = field(default_factory=list)


def _cell(value: Any) -> Any:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.1f}"
    return str(value)


def _header(column: str) -> str:
    """The column's name with its unit, unless the name already ends with it (``fp32 MB``)."""
    unit = UNITS.get(column)
    return f"{column} [{unit}]" if unit and not column.endswith(unit) else column


def _tabulate(t: Table, columns: Sequence[str], style: str, fmt: str) -> str:
    return tabulate(
        [[_cell(r.get(c)) for c in columns] for r in t.rows],
        headers=[_header(c) for c in columns],
        tablefmt=style,
        disable_numparse=True,
        colalign=["left"] + ["right"] * (len(columns) - 1) if fmt == "table" else None,
    )


def _width(t: Table, column: str) -> int:
    return max([len(_header(column))] + [len(_cell(r.get(column))) for r in t.rows]) + 2


def _folds(t: Table) -> List[List[str]]:
    """The table's columns in groups that fit ``WIDTH``, each starting with the first column."""
    first, rest = t.columns[0], list(t.columns[1:])
    groups: List[List[str]] = [[first]]
    used = _width(t, first)
    for column in rest:
        w = _width(t, column)
        if used + w > WIDTH and len(groups[-1]) > 1:
            groups.append([first])
            used = _width(t, first)
        groups[-1].append(column)
        used += w
    return groups


def render(report: Report, fmt: str) -> str:
    """Render ``report`` as ``fmt`` (one of ``FORMATS``)."""
    if fmt == "json":
        return json.dumps(
            {
                "schema": SCHEMA_VERSION,
                "command": report.command,
                "convention": report.convention,
                "tables": [
                    {
                        "title": t.title,
                        "columns": list(t.columns),
                        "units": {c: UNITS[c] for c in t.columns if c in UNITS},
                        "rows": [{c: r.get(c) for c in t.columns} for r in t.rows],
                    }
                    for t in report.tables
                ],
                "notes": report.notes,
            },
            indent=2,
            ensure_ascii=False,
        )
    if fmt == "csv":
        buf = io.StringIO()
        for i, t in enumerate(report.tables):
            if i:
                buf.write("\n")
            buf.write(f"# {t.title}\n")
            writer = csv.writer(buf, lineterminator="\n")
            writer.writerow([_header(c) for c in t.columns])
            writer.writerows([[r.get(c) for c in t.columns] for r in t.rows])
        return buf.getvalue().rstrip("\n")
    if fmt not in ("table", "markdown"):
        raise ValueError(f"unknown format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    style = "github" if fmt == "markdown" else "simple"
    parts = []
    for t in report.tables:
        if fmt == "markdown":
            parts.append(f"### {t.title}\n\n" + _tabulate(t, t.columns, style, fmt))
            continue
        pieces = [_tabulate(t, cols, style, fmt) for cols in _folds(t)]
        parts.append(f"{t.title}\n" + "\n\n".join(pieces))
    footer = ([f"Convention: {report.convention}"] if report.convention else []) + list(report.notes)
    if footer:  # a terminal is 100 columns wide: the table format wraps long notes, markdown leaves that to its viewer
        lines = [
            f"- {line}" if fmt == "markdown" else textwrap.fill(line, WIDTH, subsequent_indent="  ") for line in footer
        ]
        parts.append("\n".join(lines))
    return "\n\n".join(parts)
