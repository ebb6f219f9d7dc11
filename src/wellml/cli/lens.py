"""``wellml lens``: review the workload against the ML Lens's best practices."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from wellml.cli.context import state
from wellml.cli.output import Format, console, emit_json, show_table, when

app = typer.Typer(help="The Well-Architected ML Lens review.", no_args_is_help=True)


class ReviewFormat(StrEnum):
    """Formats of a review."""

    table = "table"
    md = "md"
    json = "json"


@app.command("review")
def review(
    format: Annotated[
        ReviewFormat, typer.Option("--format", "-f", help="table, md or json")
    ] = ReviewFormat.table,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to a file.")] = None,
) -> None:
    """Evaluate all 105 practices against the workspace's records and save the review."""
    from wellml.lens.engine import render

    result = state.open().lens.review()
    if output is not None or format is not ReviewFormat.table:
        text = render(result, "json" if format is ReviewFormat.json else "md")
        if output is not None:
            output.write_text(text, encoding="utf-8")
            console.print(f"review written to {output}")
        else:
            typer.echo(text, nl=False)
        return
    show_table(
        f"lens review of {result.project}",
        ("id", "status", "risk", "title", "reason"),
        [
            (r.id, r.status, r.risk, r.title, r.reason)
            for r in result.results
            if r.status in ("pass", "fail")
        ],
    )
    counts = result.summary["by_status"]
    console.print(
        ", ".join(f"{counts.get(k, 0)} {k}" for k in ("pass", "fail", "manual", "not-evaluated"))
        + f" of {result.summary['total']} practices"
    )


@app.command("answer")
def answer(
    practice: Annotated[str, typer.Argument(help="A manual practice, e.g. MLOE-01.")],
    choice: Annotated[str, typer.Argument(help="The choice key, e.g. c.")],
    note: Annotated[str, typer.Option(help="Evidence or context.")] = "",
) -> None:
    """Answer a manual practice's question (used by later reviews, marked self-attested)."""
    state.open().lens.answer(practice, choice, note=note)
    console.print(f"recorded {practice.upper()} = {choice}")


@app.command("history")
def history(
    format: Annotated[Format, typer.Option("--format", "-f", help="table or json")] = Format.table,
) -> None:
    """Past reviews and their roll-ups."""
    rows = state.open().lens.reviews()
    if format is Format.json:
        emit_json(rows)
        return
    show_table(
        "reviews",
        ("id", "when", "by", "pass", "fail", "manual", "not-evaluated"),
        [
            (
                r["id"][:12],
                when(r["created_at"]),
                r["created_by"],
                *(
                    r["summary"]["by_status"].get(k, 0)
                    for k in ("pass", "fail", "manual", "not-evaluated")
                ),
            )
            for r in rows
        ],
    )
