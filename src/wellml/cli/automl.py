"""``wellml automl``: tune candidate algorithms on a dataset and register the best one."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from wellml.cli.context import state
from wellml.cli.output import Format, emit_json, err_console, fmt_num, show_mapping, show_table


def automl(
    dataset: Annotated[str, typer.Argument(help="The dataset: NAME or NAME@VERSION.")],
    target: Annotated[str, typer.Option("--target", "-t", help="The column to predict.")],
    metric: Annotated[
        str | None,
        typer.Option(
            "--metric",
            "-m",
            help="e.g. roc_auc, f1_macro, accuracy, rmse, r2 (default: by problem).",
        ),
    ] = None,
    budget: Annotated[
        str, typer.Option("--budget", "-b", help="Wall time for the search: 90s, 10m, 1h.")
    ] = "10m",
    register: Annotated[
        str | None, typer.Option("--register", help="Register the chosen model under this name.")
    ] = None,
    problem: Annotated[
        str | None,
        typer.Option("--problem", help="binary, multiclass or regression (default: detected)."),
    ] = None,
    candidate: Annotated[
        list[str] | None,
        typer.Option("--candidate", "-c", help="Only these algorithms (repeatable)."),
    ] = None,
    sample_rows: Annotated[
        int, typer.Option("--sample-rows", help="Tune on at most this many rows.")
    ] = 5000,
    top_k: Annotated[
        int, typer.Option("--top-k", help="Confirm this many candidates on all rows.")
    ] = 3,
    max_trials: Annotated[
        int, typer.Option("--max-trials", help="At most this many trials per candidate.")
    ] = 30,
    seed: Annotated[int, typer.Option("--seed", help="Seeds sampling, folds and models.")] = 0,
    executor: Annotated[
        str, typer.Option("--executor", "-e", help="local, or ray for parallel trials.")
    ] = "local",
    format: Annotated[Format, typer.Option("--format", "-f", help="table or json")] = Format.table,
) -> None:
    """Detect the problem type, tune candidate algorithms on a sample, confirm the best on all
    rows, and show the leaderboard (optionally registering the winner with a model card)."""
    quiet = format is Format.json

    def say(line: str) -> None:
        if not line.startswith("  "):  # per-trial lines are for the runs, not the terminal
            err_console.print(escape(line))

    result = state.open().tuning.automl(
        dataset,
        target=target,
        metric=metric,
        budget=budget,
        register=register,
        problem=problem,
        candidates=candidate or None,
        sample_rows=sample_rows,
        top_k=top_k,
        max_trials=max_trials,
        seed=seed,
        executor=executor,
        progress=None if quiet else say,
    )
    if quiet:
        emit_json(result.to_dict())
        return
    show_mapping(
        f"automl run {result.run_id}",
        {
            "dataset": result.dataset,
            "problem": result.problem,
            "metric": f"{result.metric} ({result.direction})",
            "rows": result.rows,
            "tuned on": result.sample_rows,
            "baseline": result.baseline_score,
            "budget": f"{result.budget_used_s:.1f}s of {result.budget_s:g}s",
            "model": result.model_version.ref if result.model_version else "not registered",
        },
    )
    show_table(
        "leaderboard",
        ("rank", "candidate", "sample cv", "full cv", "fit s", "trials", "run", "note"),
        [
            (
                r.rank,
                r.candidate,
                fmt_num(r.sample_score),
                fmt_num(r.full_score),
                fmt_num(r.fit_time_s),
                ", ".join(f"{n} {s}" for s, n in sorted(r.trials.items())),
                (r.run_id or "")[:12],
                r.note,
            )
            for r in result.leaderboard
        ],
    )
    for note in result.notes:
        err_console.print(f"note: {escape(note)}")
