"""``wellml monitor``: check an endpoint's captured traffic for drift."""

from __future__ import annotations

from typing import Annotated

import typer

from wellml.cli.context import state
from wellml.cli.output import Format, console, emit_json, show_table, when

app = typer.Typer(help="Model monitors: baselines and drift checks.", no_args_is_help=True)

FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table or json")]


@app.command("run")
def run(
    endpoint: Annotated[str, typer.Argument(help="Endpoint whose traffic to check.")],
    all_captured: Annotated[
        bool,
        typer.Option("--all", help="Check the latest captured data again if nothing new arrived."),
    ] = False,
    format: FormatOpt = Format.table,
) -> None:
    """Compare newly captured traffic with the training-data baseline, feature by feature.
    Exits 0 either way; the result says which features drifted."""
    result = state.open().monitoring.run(endpoint, all_captured=all_captured)
    if format is Format.json:
        emit_json(result.to_dict())
        return
    show_table(
        f"drift at {endpoint}: {result.dataset_ref} vs baseline {result.baseline_ref}",
        ("feature", "kind", "test", "statistic", "p-value", "threshold", "drifted"),
        [
            (
                f["feature"],
                f["kind"],
                f["method"],
                f"{f['statistic']:.4f}",
                "-" if f["p_value"] is None else f"{f['p_value']:.3g}",
                f["threshold"],
                "YES" if f["drifted"] else "no",
            )
            for f in result.report["features"]
        ],
    )
    if result.drifted_features:
        console.print(
            f"[bold red]drift[/] in {len(result.drifted_features)} feature(s): "
            + ", ".join(result.drifted_features)
        )
    else:
        console.print("no drift")


@app.command("list")
def list_(format: FormatOpt = Format.table) -> None:
    """List monitors."""
    mons = state.open().monitoring.monitors()
    if format is Format.json:
        emit_json(mons)
        return
    show_table(
        "monitors",
        ("name", "kind", "schedule", "created"),
        [
            (m["name"], m["kind"], m["config"].get("schedule") or "-", when(m["created_at"]))
            for m in mons
        ],
    )


@app.command("history")
def history(
    monitor: Annotated[str, typer.Argument(help="Monitor name (default ENDPOINT-drift).")],
    format: FormatOpt = Format.table,
) -> None:
    """Past executions of a monitor."""
    rows = state.open().monitoring.executions(monitor)
    if format is Format.json:
        emit_json(rows)
        return
    show_table(
        f"executions of {monitor}",
        ("started", "status", "violations"),
        [(when(r["started_at"]), r["status"], len(r["violations"])) for r in rows],
    )
