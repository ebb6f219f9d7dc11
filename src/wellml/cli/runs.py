"""``wellml runs``: list, show and compare tracked runs."""

from __future__ import annotations

from typing import Annotated

import typer

from wellml.cli.context import state
from wellml.cli.output import Format, emit_json, fmt_num, show_mapping, show_table, when

app = typer.Typer(help="Experiment runs: params, metrics, artifacts.", no_args_is_help=True)

FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table or json")]


@app.command("list")
def list_(
    experiment: Annotated[
        list[str] | None, typer.Option("--experiment", "-e", help="Only these experiments.")
    ] = None,
    filter: Annotated[
        str, typer.Option("--filter", help="e.g. \"metrics.auc > 0.8 and params.model = 'rf'\"")
    ] = "",
    order_by: Annotated[
        list[str] | None,
        typer.Option("--order-by", "-o", help="e.g. 'metrics.auc desc' (repeatable)"),
    ] = None,
    max_results: Annotated[int, typer.Option("--max", help="At most this many runs.")] = 100,
    format: FormatOpt = Format.table,
) -> None:
    """List runs, newest first, optionally filtered and ordered."""
    runs = state.open().tracking.search_runs(
        experiment or None, filter=filter, order_by=order_by or (), max_results=max_results
    )
    if format is Format.json:
        emit_json([r.to_dict() for r in runs])
        return
    metric_keys = sorted({k for r in runs for k in r.metrics})[:6]
    show_table(
        "runs",
        ("id", "experiment", "name", "status", "started", "duration", *metric_keys),
        [
            (
                r.id[:12],
                r.experiment,
                r.name,
                r.status,
                when(r.started_at),
                "-" if r.duration is None else f"{r.duration:.1f}s",
                *(fmt_num(r.metrics.get(k)) for k in metric_keys),
            )
            for r in runs
        ],
    )


@app.command("show")
def show(
    run_id: Annotated[str, typer.Argument(help="Run id (or a unique prefix).")],
    format: FormatOpt = Format.table,
) -> None:
    """Show one run: info, params, latest metrics, tags, artifacts."""
    run = state.open().tracking.get_run(run_id)
    data = run.to_dict()
    if format is Format.json:
        emit_json(data)
        return
    show_mapping(
        f"run {run.id}",
        {k: v for k, v in data.items() if k not in ("params", "metrics", "tags", "artifacts")},
    )
    show_table("params", ("param", "value"), sorted(run.params.items()))
    show_table(
        "metrics (latest)",
        ("metric", "value"),
        [(k, fmt_num(v)) for k, v in sorted(data["metrics"].items())],
    )
    show_table("tags", ("tag", "value"), sorted(run.tags.items()))
    show_table(
        "artifacts",
        ("path", "size", "digest"),
        [(p, a["size"], a["digest"][:12]) for p, a in sorted(run.artifacts.items())],
    )


@app.command("compare")
def compare(
    run_ids: Annotated[list[str], typer.Argument(help="Two or more run ids.")],
    format: FormatOpt = Format.table,
) -> None:
    """Compare runs side by side: params (differences marked) and latest metrics."""
    if len(run_ids) < 2:
        raise typer.BadParameter("give at least two run ids")
    result = state.open().tracking.compare(run_ids)
    if format is Format.json:
        emit_json(result)
        return
    heads = [f"{r['name']} ({r['id'][:8]})" for r in result["runs"]]
    rows = [
        (f"params.{k}" + (" *" if k in result["differing_params"] else ""), *v)
        for k, v in result["params"].items()
    ]
    rows += [(f"metrics.{k}", *(fmt_num(x) for x in v)) for k, v in result["metrics"].items()]
    show_table("comparison (* differs)", ("", *heads), rows)
