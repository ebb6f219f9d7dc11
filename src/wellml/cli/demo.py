"""``wellml demo``: the churn workload through every lifecycle phase, with progress."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from wellml.cli.output import Format, console, emit_json, show_table

STEPS = 17


def demo(
    path: Annotated[Path, typer.Argument(help="Folder for the demo workspace.")] = Path(
        "wellml-demo"
    ),
    overwrite: Annotated[
        bool, typer.Option(help="Replace an earlier demo workspace there.")
    ] = False,
    format: Annotated[Format, typer.Option("--format", "-f", help="table or json")] = Format.table,
) -> None:
    """Run the bundled churn workload end to end in a fresh workspace: data, training,
    registry, serving, monitoring and the lens review."""
    from wellml.examples.demo import run_demo

    started = time.monotonic()
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=format is Format.json,
        disable=format is Format.json,
    ) as progress:
        task = progress.add_task("starting", total=STEPS)

        def step(message: str) -> None:
            progress.update(task, description=message, advance=1)

        result = run_demo(path, overwrite=overwrite, step=step)
        progress.update(task, description="done", completed=STEPS)
    elapsed = time.monotonic() - started
    if format is Format.json:
        emit_json(
            {
                "workspace": str(result.workspace),
                "model_version": result.model_version,
                "best_run": result.best_run,
                "candidates": result.candidates,
                "drift_heldout": result.drift_heldout,
                "drift_shifted": result.drift_shifted,
                "features": result.features,
                "clarify": result.clarify,
                "retraining": result.retraining,
                "monitors": result.monitors,
                "human_review": result.human_review,
                "rollback_drill": result.rollback_drill,
                "review": result.review_counts,
                "outputs": result.outputs,
                "seconds": elapsed,
            }
        )
        return
    show_table(
        "candidates (validation ROC AUC)",
        ("algorithm", "roc_auc"),
        [(k, f"{v:.4f}") for k, v in result.candidates.items()],
    )
    console.print(
        f"registered and approved [bold]{result.model_version}[/] "
        f"(run {result.best_run[:12]}), served at {result.endpoint_url}"
    )
    console.print("drift on held-out traffic: " + (", ".join(result.drift_heldout) or "none"))
    console.print("drift on shifted traffic: " + (", ".join(result.drift_shifted) or "none"))
    console.print(
        "lens review: " + ", ".join(f"{v} {k}" for k, v in sorted(result.review_counts.items()))
    )
    show_table("where things are", ("output", "location"), sorted(result.outputs.items()))
    console.print(
        f"finished in {elapsed:.0f} s. Next: cd {result.workspace} && "
        "wellml lineage show endpoint:churn --upstream"
    )
