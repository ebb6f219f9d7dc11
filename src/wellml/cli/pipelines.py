"""``wellml pipelines``: run pipelines, list runs, show a run step by step."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer
from rich.markup import escape

from wellml.cli.context import state
from wellml.cli.output import Format, emit_json, err_console, show_mapping, show_table, when
from wellml.pipelines.records import PipelineRun, StepRun

app = typer.Typer(
    help="Pipelines: DAGs of steps with caching, gates and resume.", no_args_is_help=True
)

FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table or json")]


class ExecutorName(StrEnum):
    """Where steps run."""

    local = "local"
    process = "process"
    ray = "ray"


_COLORS = {
    "completed": "green",
    "cached": "cyan",
    "skipped": "yellow",
    "blocked": "magenta",
    "failed": "red",
}


def _progress(step: StepRun) -> None:
    color = _COLORS.get(step.status, "white")
    took = "" if step.duration is None else f" in {step.duration:.2f}s"
    reason = f" — {escape(step.reason)}" if step.reason else ""
    err_console.print(f"  [{color}]{step.status:<9}[/] {escape(step.name)}{took}{reason}")


def _duration(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f}s"


def _show_run(run: PipelineRun) -> None:
    data = run.to_dict()
    shown = {k: v for k, v in data.items() if k not in ("steps", "params", "counts")}
    shown |= {
        "started_at": when(run.started_at),
        "ended_at": when(run.ended_at),
        "duration": _duration(run.duration),
        "params": run.params,
        "steps": run.counts(),
    }
    show_mapping(f"pipeline run {run.id}", shown)
    show_table(
        "steps",
        ("step", "status", "attempts", "duration", "output", "reason"),
        [
            (
                s.name,
                s.status,
                s.attempts,
                _duration(s.duration),
                (s.digest or "")[:12] or None,
                s.reason,
            )
            for s in run.steps
        ],
    )


@app.command("run")
def run(
    pipeline: Annotated[
        str, typer.Argument(help="MODULE:PIPELINE, or a pipeline declared in wellml.yaml.")
    ],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="key=value (repeatable).")
    ] = None,
    executor: Annotated[
        ExecutorName, typer.Option("--executor", "-e", help="local, process or ray.")
    ] = ExecutorName.local,
    max_workers: Annotated[
        int | None, typer.Option("--max-workers", help="Process pool size / CPUs of a local Ray.")
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option("--ray-address", help="e.g. ray://host:10001 (default: local).")
    ] = None,
    format: FormatOpt = Format.table,
) -> None:
    """Run a pipeline; each step's status is printed as it ends. Exits 1 if a step failed."""
    pipes = state.open().pipelines
    target = pipes.load(pipeline)
    result = pipes.run(
        pipeline,  # by name, so that a declared pipeline's default params apply
        target.parse_params(param or []),
        executor=executor.value,
        max_workers=max_workers,
        ray_address=ray_address,
        raise_on_failure=False,
        progress=None if format is Format.json else _progress,
    )
    if format is Format.json:
        emit_json(result.to_dict())
    else:
        _show_run(result)
        if result.error:
            err_console.print(f"run {result.id} {result.status}: {escape(result.error)}")
    if result.status == "failed":
        raise typer.Exit(1)


@app.command("resume")
def resume(
    run_id: Annotated[str, typer.Argument(help="The run to continue (id or unique prefix).")],
    executor: Annotated[
        ExecutorName, typer.Option("--executor", "-e", help="local, process or ray.")
    ] = ExecutorName.local,
    format: FormatOpt = Format.table,
) -> None:
    """Run a pipeline again with an earlier run's params; its finished steps come from cache."""
    result = state.open().pipelines.resume(
        run_id,
        executor=executor.value,
        raise_on_failure=False,
        progress=None if format is Format.json else _progress,
    )
    if format is Format.json:
        emit_json(result.to_dict())
    else:
        _show_run(result)
    if result.status == "failed":
        raise typer.Exit(1)


@app.command("list")
def list_(
    pipeline: Annotated[str | None, typer.Option("--pipeline", help="Only this pipeline.")] = None,
    status: Annotated[
        str | None, typer.Option("--status", help="Only runs in this status.")
    ] = None,
    max_results: Annotated[int, typer.Option("--max", help="At most this many runs.")] = 50,
    format: FormatOpt = Format.table,
) -> None:
    """List pipeline runs, newest first."""
    runs = state.open().pipelines.list(pipeline, status=status, limit=max_results)
    if format is Format.json:
        emit_json([r.to_dict() for r in runs])
        return
    show_table(
        "pipeline runs",
        ("id", "pipeline", "status", "executor", "started", "duration", "steps"),
        [
            (
                r.id[:12],
                r.pipeline,
                r.status,
                r.executor,
                when(r.started_at),
                _duration(r.duration),
                ", ".join(f"{n} {s}" for s, n in sorted(r.counts().items())),
            )
            for r in runs
        ],
    )


@app.command("show")
def show(
    run_id: Annotated[str, typer.Argument(help="Run id (or a unique prefix).")],
    format: FormatOpt = Format.table,
) -> None:
    """Show one run: params, status, and every step with its status, attempts and output."""
    result = state.open().pipelines.get(run_id)
    if format is Format.json:
        emit_json(result.to_dict())
        return
    _show_run(result)
