"""``wellml data``: register, list, show, profile and check dataset versions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
import yaml

from wellml.cli.context import state
from wellml.cli.output import Format, console, emit_json, fmt_num, show_mapping, show_table, when
from wellml.errors import InvalidInput

app = typer.Typer(
    help="Datasets: immutable versions, profiles, quality rules.", no_args_is_help=True
)

FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table or json")]


@app.command("register")
def register(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    path: Annotated[Path, typer.Argument(help="A CSV, TSV, Parquet or JSON-lines file.")],
    description: Annotated[str, typer.Option(help="What the data is.")] = "",
    format: FormatOpt = Format.table,
) -> None:
    """Register a file as the next version of a dataset (identical data returns the
    existing version)."""
    dv = state.open().data.register(name, path, description=description)
    if format is Format.json:
        emit_json(dv.to_dict())
    else:
        console.print(
            f"{dv.ref}: {dv.num_rows:,} rows, {len(dv.schema)} columns, "
            f"digest {dv.content_digest[:12]}"
        )


@app.command("list")
def list_(
    name: Annotated[str | None, typer.Argument(help="List this dataset's versions.")] = None,
    format: FormatOpt = Format.table,
) -> None:
    """List datasets, or the versions of one."""
    cat = state.open().data
    if name is not None:
        versions = cat.versions(name)
        if not versions:
            cat.get(name)  # raises NotFound with a clear message
        if format is Format.json:
            emit_json([v.to_dict() for v in versions])
            return
        show_table(
            f"versions of {name}",
            ("ref", "rows", "columns", "digest", "created", "by"),
            [
                (
                    v.ref,
                    f"{v.num_rows:,}",
                    len(v.schema),
                    v.content_digest[:12],
                    when(v.created_at),
                    v.created_by,
                )
                for v in versions
            ],
        )
        return
    rows = cat.list()
    if format is Format.json:
        emit_json(
            [
                {
                    "name": r["name"],
                    "description": r["description"],
                    "owner": r["owner"],
                    "versions": r["versions"],
                    "latest": r["latest"],
                    "created_at": r["created_at"],
                }
                for r in rows
            ]
        )
        return
    show_table(
        "datasets",
        ("name", "versions", "latest", "owner", "description"),
        [(r["name"], r["versions"], r["latest"], r["owner"], r["description"]) for r in rows],
    )


@app.command("show")
def show(
    ref: Annotated[str, typer.Argument(help="name, name@N or name@latest")],
    format: FormatOpt = Format.table,
) -> None:
    """Show a dataset version: schema, size, digest, source."""
    dv = state.open().data.get(ref)
    if format is Format.json:
        emit_json(dv.to_dict())
        return
    info = dv.to_dict()
    schema = info.pop("schema")
    show_mapping(dv.ref, info)
    show_table("schema", ("column", "type"), [(c["name"], c["type"]) for c in schema])


@app.command("profile")
def profile(
    ref: Annotated[str, typer.Argument(help="name, name@N or name@latest")],
    format: FormatOpt = Format.table,
) -> None:
    """Profile a dataset version: types, missing values, distinct counts, ranges, quantiles,
    top values and histograms."""
    ws = state.open()
    dv = ws.data.get(ref)
    prof = ws.data.profile(dv).to_dict()
    if format is Format.json:
        emit_json({"dataset": dv.ref, **prof})
        return
    show_table(
        f"profile of {dv.ref} ({prof['num_rows']:,} rows)",
        ("column", "type", "missing", "distinct", "min", "max", "mean", "std", "top values"),
        [
            (
                c["name"],
                c["logical_type"],
                f"{c['missing']:,} ({c['missing_fraction']:.1%})",
                f"{c['distinct']:,}",
                fmt_num(c.get("min")),
                fmt_num(c.get("max")),
                fmt_num(c.get("mean")),
                fmt_num(c.get("std")),
                ", ".join(f"{v} ({n})" for v, n in (c.get("top_values") or [])[:3]),
            )
            for c in prof["columns"]
        ],
    )


@app.command("check")
def check(
    ref: Annotated[str, typer.Argument(help="name, name@N or name@latest")],
    rules: Annotated[
        Path,
        typer.Option(
            "--rules",
            "-r",
            help=(
                "YAML or JSON list of rules, e.g. - {rule: range, column: age, min: 0, max: 120}"
            ),
        ),
    ],
    format: FormatOpt = Format.table,
) -> None:
    """Evaluate quality rules (not_null, range, allowed_values, unique) against a version.
    Exits 1 when an error or critical rule fails."""
    try:
        text = rules.read_text(encoding="utf-8")
        spec = json.loads(text) if rules.suffix == ".json" else yaml.safe_load(text)
    except FileNotFoundError:
        raise InvalidInput(f"no such rules file: {rules}") from None
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise InvalidInput(f"{rules}: cannot parse: {exc}") from None
    if not isinstance(spec, list):
        raise InvalidInput(f"{rules}: expected a list of rules")
    ws = state.open()
    report = ws.data.check(ref, spec)
    out = report.to_dict()
    if format is Format.json:
        emit_json(out)
    else:
        show_table(
            f"quality of {ref}: {'passed' if report.passed else 'FAILED'}",
            ("rule", "severity", "passed", "failing rows", "message"),
            [
                (
                    r["rule"],
                    r["severity"],
                    "yes" if r["passed"] else "NO",
                    f"{r['failing_rows']:,}",
                    r["message"],
                )
                for r in out["results"]
            ],
        )
    if not report.passed:
        raise typer.Exit(1)
