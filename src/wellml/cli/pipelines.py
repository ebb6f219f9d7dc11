"""``wellml pipelines``: run pipelines, list runs, show a run step by step; schedule pipelines,
trigger them on new dataset versions, and run the scheduler."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Annotated

import typer
from rich.markup import escape

from wellml.cli.context import state
from wellml.cli.output import Format, emit_json, err_console, show_mapping, show_table, when
from wellml.config import SPEC_FILE
from wellml.errors import InvalidInput, NotFound
from wellml.pipelines.records import PipelineRun, StepRun
from wellml.pipelines.schedules import AppliedSchedule, Firing, Schedule

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
    schedules: Annotated[
        bool, typer.Option("--schedules", help="List schedules and triggers instead of runs.")
    ] = False,
    format: FormatOpt = Format.table,
) -> None:
    """List pipeline runs, newest first (or, with --schedules, schedules and triggers)."""
    if schedules:
        _list_schedules(format)
        return
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
    run_id: Annotated[
        str, typer.Argument(help="Run id (or a unique prefix), or a schedule's name.")
    ],
    format: FormatOpt = Format.table,
) -> None:
    """Show one run (params, status, every step) or one schedule and its recent firings."""
    pipes = state.open().pipelines
    try:
        sched = pipes.get_schedule(run_id)
    except (NotFound, InvalidInput):
        sched = None
    if sched is not None:
        _show_schedule(sched, pipes.firings(sched.name, limit=20), format)
        return
    result = pipes.get(run_id)
    if format is Format.json:
        emit_json(result.to_dict())
        return
    _show_run(result)


# --- schedules and triggers ------------------------------------------------------------------


def _firing_rows(firings: list[Firing]) -> list[tuple[object, ...]]:
    return [
        (
            f.schedule or f"retrain {(f.retrain_trigger_id or '')[:12]}",
            f.key,
            f.status,
            (f.pipeline_run_id or "")[:12] or None,
            when(f.claimed_at),
            f.claimed_by,
            f.error,
        )
        for f in firings
    ]


_FIRING_COLUMNS = ("schedule", "for", "status", "run", "claimed", "by", "error")


def _show_schedule(sched: Schedule, firings: list[Firing], format: Format) -> None:
    if format is Format.json:
        emit_json({**sched.to_dict(), "firings": [f.to_dict() for f in firings]})
        return
    data = sched.to_dict()
    data |= {
        "when": sched.when,
        "next_at": when(data["next_at"]),
        "created_at": when(sched.created_at),
        "updated_at": when(sched.updated_at),
    }
    show_mapping(f"pipeline schedule {sched.name}", data)
    show_table("recent firings", _FIRING_COLUMNS, _firing_rows(firings))


def _list_schedules(format: Format) -> None:
    scheds = state.open().pipelines.schedules()
    if format is Format.json:
        emit_json([s.to_dict() for s in scheds])
        return
    show_table(
        "pipeline schedules and triggers",
        ("name", "pipeline", "when", "params", "executor", "enabled", "next"),
        [
            (
                s.name,
                s.pipeline,
                s.when,
                s.params or None,
                s.executor,
                "yes" if s.enabled else "no",
                when(s.next_at()),
            )
            for s in scheds
        ],
    )


def _params_for(pipeline: str, pairs: list[str] | None) -> dict[str, object]:
    return state.open().pipelines.load(pipeline).parse_params(pairs or [])


def _report_schedule(sched: Schedule, format: Format, message: Callable[[], str]) -> None:
    """Print a new or changed schedule/trigger: its record as JSON, or a one-line note."""
    if format is Format.json:
        emit_json(sched.to_dict())
        return
    err_console.print(message())


def _report_applied(applied: list[AppliedSchedule]) -> None:
    for a in applied:
        color = "white" if a.action == "unchanged" else "green"
        err_console.print(f"{SPEC_FILE}: schedule {escape(repr(a.name))} [{color}]{a.action}[/]")


@app.command("schedule")
def schedule(
    pipeline: Annotated[
        str | None,
        typer.Argument(help="A pipeline declared in wellml.yaml, or MODULE:PIPELINE."),
    ] = None,
    cron: Annotated[
        str | None,
        typer.Option("--cron", help="Five-field cron expression in UTC, e.g. '0 3 * * *'."),
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="key=value (repeatable).")
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="The schedule's name (default: the pipeline's).")
    ] = None,
    executor: Annotated[
        str, typer.Option("--executor", "-e", help="local, process, ray or ray://host:port.")
    ] = "local",
    replace: Annotated[
        bool, typer.Option("--replace", help="Change an existing schedule of that name.")
    ] = False,
    from_config: Annotated[
        bool,
        typer.Option(
            "--from-config",
            help="Apply the schedules and triggers declared in wellml.yaml (idempotent).",
        ),
    ] = False,
    format: FormatOpt = Format.table,
) -> None:
    """Run a pipeline at every cron slot; `wellml pipelines scheduler` must be running.
    With --from-config, create or update what wellml.yaml declares instead."""
    if from_config:
        if pipeline is not None or cron is not None or param:
            raise InvalidInput("--from-config takes no pipeline, --cron or --param")
        applied = state.open().pipelines.apply_schedules()
        if format is Format.json:
            emit_json([a.to_dict() for a in applied])
        elif not applied:
            err_console.print(f"{SPEC_FILE} declares no schedules or triggers")
        else:
            _report_applied(applied)
        return
    if pipeline is None or cron is None:
        raise InvalidInput("name a pipeline and give --cron, or pass --from-config")
    sched = state.open().pipelines.schedule(
        pipeline,
        cron=cron,
        params=_params_for(pipeline, param),
        name=name,
        executor=executor,
        replace=replace,
    )
    _report_schedule(
        sched,
        format,
        lambda: (
            f"scheduled {escape(sched.pipeline)} as {escape(repr(sched.name))}: "
            f"{escape(sched.when)}, next at {when(sched.next_at())}"
        ),
    )


@app.command("trigger")
def trigger(
    pipeline: Annotated[
        str, typer.Argument(help="A pipeline declared in wellml.yaml, or MODULE:PIPELINE.")
    ],
    on_dataset: Annotated[
        str, typer.Option("--on-dataset", help="Run once for each new version of this dataset.")
    ],
    dataset_param: Annotated[
        str | None,
        typer.Option("--dataset-param", help="The pipeline parameter that gets NAME@VERSION."),
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="key=value (repeatable).")
    ] = None,
    name: Annotated[
        str | None,
        typer.Option("--name", help="The trigger's name (default: PIPELINE-on-DATASET)."),
    ] = None,
    executor: Annotated[
        str, typer.Option("--executor", "-e", help="local, process, ray or ray://host:port.")
    ] = "local",
    replace: Annotated[
        bool, typer.Option("--replace", help="Change an existing trigger of that name.")
    ] = False,
    format: FormatOpt = Format.table,
) -> None:
    """Run a pipeline once for every version of a dataset registered from now on."""
    sched = state.open().pipelines.trigger(
        pipeline,
        on_dataset=on_dataset,
        dataset_param=dataset_param,
        params=_params_for(pipeline, param),
        name=name,
        executor=executor,
        replace=replace,
    )
    _report_schedule(
        sched,
        format,
        lambda: (
            f"trigger {escape(repr(sched.name))}: {escape(sched.pipeline)} "
            f"runs on {escape(sched.when)}"
        ),
    )


@app.command("unschedule")
def unschedule(
    name: Annotated[str, typer.Argument(help="The schedule or trigger to disable.")],
) -> None:
    """Disable a schedule or trigger; its record and firings are kept."""
    sched = state.open().pipelines.unschedule(name)
    err_console.print(f"disabled {escape(repr(sched.name))}")


def _print_firing(f: Firing) -> None:
    what = f.schedule or f"retrain trigger {(f.retrain_trigger_id or '')[:12]}"
    if f.status == "running":
        err_console.print(
            f"{when(f.claimed_at)} {escape(what)}: running {escape(f.pipeline)} for {escape(f.key)}"
        )
        return
    color = _COLORS.get(f.status, "white")
    run = f" run {f.pipeline_run_id[:12]}" if f.pipeline_run_id else ""
    error = f" — {escape(f.error)}" if f.error else ""
    err_console.print(f"{when(f.ended_at)} {escape(what)}: [{color}]{f.status}[/]{run}{error}")


@app.command("scheduler")
def scheduler(
    once: Annotated[bool, typer.Option("--once", help="Run what is due now, then exit.")] = False,
    interval: Annotated[
        float, typer.Option("--interval", help="Seconds between two checks.", min=0.1)
    ] = 30.0,
    executor: Annotated[
        str,
        typer.Option("--executor", "-e", help="Where monitors' retrain triggers run."),
    ] = "local",
    config: Annotated[
        bool,
        typer.Option(
            "--config/--no-config",
            help="Apply wellml.yaml's schedules and triggers first (idempotent).",
        ),
    ] = True,
    format: FormatOpt = Format.table,
) -> None:
    """Run due cron schedules, dataset triggers and monitors' retrain triggers; keeps running
    (checking every --interval seconds) until stopped with Ctrl-C or SIGTERM. The schedules
    and triggers wellml.yaml declares are applied first."""
    import signal
    import threading

    quiet = once and format is Format.json
    pipes = state.open().pipelines
    if config:
        applied = pipes.apply_schedules()
        if not quiet:
            _report_applied([a for a in applied if a.action != "unchanged"])
    sched = pipes.scheduler(executor=executor, on_firing=None if quiet else _print_firing)
    if once:
        fired = sched.tick()
        if format is Format.json:
            emit_json([f.to_dict() for f in fired])
        elif not fired:
            err_console.print("nothing was due")
        return
    stop = threading.Event()

    def _stop(_signum: int, _frame: object) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, _stop)
    err_console.print(f"scheduler {sched.identity} checking every {interval:g}s (Ctrl-C stops)")
    try:
        sched.run_forever(interval=interval, stop=stop)
    except KeyboardInterrupt:
        err_console.print("scheduler stopped")
    finally:
        signal.signal(signal.SIGTERM, previous)
