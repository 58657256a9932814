"""One renderer for every command: table, markdown, json or csv.

JSON schema (stable; ``schema`` is bumped on any incompatible change)::

    {"schema": 1, "command": "<name>", "convention": "<how ops are counted>" | null,
     "tables": [{"title": str, "columns": [str, ...], "rows": [{column: value}, ...]}],
     "notes": [str, ...]}

Numbers are JSON numbers (ints for counts); absent values are null.
CSV prints each table as a header row plus rows, tables separated by a blank line,
each preceded by a ``# title`` line.
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
            writer = csv.DictWriter(buf, fieldnames=list(t.columns), extrasaction="ignore", lineterminator="\n")
            writer.writeheader()
            writer.writerows(t.rows)
        return buf.getvalue().rstrip("\n")
    if fmt not in ("table", "markdown"):
        raise ValueError(f"unknown format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    style = "github" if fmt == "markdown" else "simple"
    parts = []
    for t in report.tables:
        body = tabulate(
            [[_cell(r.get(c)) for c in t.columns] for r in t.rows],
            headers=list(t.columns),
            tablefmt=style,
            disable_numparse=True,
            colalign=["left"] + ["right"] * (len(t.columns) - 1) if fmt == "table" else None,
        )
        parts.append((f"### {t.title}\n\n" if fmt == "markdown" else f"{t.title}\n") + body)
    footer = ([f"Convention: {report.convention}"] if report.convention else []) + list(report.notes)
    if footer:  # a terminal is 100 columns wide: the table format wraps long notes, markdown leaves that to its viewer
        lines = [
            f"- {line}" if fmt == "markdown" else textwrap.fill(line, WIDTH, subsequent_indent="  ") for line in footer
        ]
        parts.append("\n".join(lines))
    return "\n\n".join(parts)
