"""How the CLI shows results: Rich tables for people, stable JSON for programs."""

from __future__ import annotations

import datetime as dt
import json
import math
import sys
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


class Format(StrEnum):
    """Output formats of list and show commands."""

    table = "table"
    json = "json"


def _clean(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def emit_json(data: Any) -> None:
    """Print JSON to stdout (NaN and infinities become null)."""
    sys.stdout.write(json.dumps(_clean(data), indent=2, default=str) + "\n")
    sys.stdout.flush()


def emit(format: Format, data: Any, show: Callable[[], None]) -> None:
    """Print ``data`` as JSON, or call ``show`` to print it for people."""
    if format is Format.json:
        emit_json(data)
    else:
        show()


def when(ts: float | None) -> str:
    """An epoch time as a short local timestamp."""
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def show_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a Rich table."""
    table = Table(title=title, title_justify="left", show_lines=False)
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        # Text, not markup: values such as "[0, 120]" or "[finished]" must print as they are.
        table.add_row(*(Text("-" if v is None else str(v)) for v in row))
    console.print(table)


def show_mapping(title: str, data: dict[str, Any]) -> None:
    """Print key/value pairs as a two-column table."""
    show_table(title, ("field", "value"), [(k, _fmt(v)) for k, v in data.items()])


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        return json.dumps(_clean(value), default=str)
    return "-" if value is None else str(value)


def fmt_num(value: Any) -> str:
    """A number in a table cell."""
    return _fmt(value)
