"""Pipeline runs of a workspace: run a pipeline, list and show runs, load step outputs; schedule
pipelines on cron slots and trigger them on new dataset versions."""

from __future__ import annotations

import builtins
import importlib
import logging
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from wellml.errors import Conflict, InvalidInput, NotFound
from wellml.pipelines.definition import Pipeline
from wellml.pipelines.executors import Executor, make_executor
from wellml.pipelines.records import PipelineRun, StepRun, run_from_rows
from wellml.pipelines.runner import RunOrchestrator
from wellml.pipelines.values import load_value
from wellml.processes import HOST, died_here
from wellml.store import pipelines as sql
from wellml.store.metadata import new_id, now

if TYPE_CHECKING:
    from wellml.config import PipelineSpec
    from wellml.pipelines.schedules import (
        AppliedSchedule,
        Firing,
        Schedule,
        Scheduler,
        Schedules,
    )
    from wellml.workspace import Workspace

log = logging.getLogger("wellml.pipelines")


class Pipelines:
    """Runs pipelines and keeps their records (``ws.pipelines``)."""

    def __init__(self, workspace: Workspace) -> None:
        self._ws = workspace
        self._store = workspace.metadata
        self._artifacts = workspace.artifacts
        self._lineage = workspace.lineage
        self._schedules: Schedules | None = None

    # -- finding pipelines -------------------------------------------------------------------

    def declared(self) -> dict[str, PipelineSpec]:
        """The pipelines declared in ``wellml.yaml`` (name → function and default params)."""
        return dict(self._ws.spec.pipelines)

    def load(self, ref: str) -> Pipeline:
        """The pipeline a ``module:function`` reference or a declared name points at.

        Modules are imported with the workspace folder on the import path.

        Raises:
            NotFound: no such declared pipeline, module or attribute.
            InvalidInput: the reference is malformed or does not name a pipeline.
        """
        declared = self._ws.spec.pipelines.get(ref)
        target = declared.function if declared is not None else ref
        module_name, sep, attr = target.partition(":")
        if not sep or not module_name or not attr:
            known = ", ".join(sorted(self._ws.spec.pipelines)) or "none declared"
            raise InvalidInput(
                f"{ref!r} is neither a declared pipeline ({known}) nor module:function"
            )
        root = str(self._ws.root)
        if root not in sys.path:
            sys.path.insert(0, root)
        try:
            obj: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                raise NotFound(f"no module {module_name!r} (looked in {root} too)") from None
            raise
        for part in attr.split("."):
            if not hasattr(obj, part):
                raise NotFound(f"module {module_name!r} has no {attr!r}")
            obj = getattr(obj, part)
        if not isinstance(obj, Pipeline):
            raise InvalidInput(f"{target} is a {type(obj).__name__}, not a @pipeline")
        return obj

    # -- running -----------------------------------------------------------------------------

    def run(
        self,
        pipeline: Pipeline | str,
        params: Mapping[str, Any] | None = None,
        *,
        executor: str | Executor = "local",
        max_workers: int | None = None,
        ray_address: str | None = None,
        raise_on_failure: bool = True,
        progress: Callable[[StepRun], None] | None = None,
        resumed_from: str | None = None,
    ) -> PipelineRun:
        """Run a pipeline to its end and return the run's record.

        The graph and the parameters are checked first: nothing is recorded when they are
        invalid. A step whose cache key matches a completed step is not run again (status
        ``cached``); a failed gate blocks what follows it (the run ends ``blocked``).

        Args:
            pipeline: a :class:`Pipeline`, a ``module:function`` reference, or the name of a
                pipeline declared in ``wellml.yaml`` (whose default params apply).
            params: parameter values over the pipeline's defaults.
            executor: ``local`` (in this process, one step at a time), ``process`` (a process
                pool), ``ray`` or a ``ray://`` address, or an :class:`Executor` instance
                (left open afterwards, for reuse).
            max_workers: the process pool's size, or the CPUs of a Ray started here.
            ray_address: where Ray runs when ``executor="ray"`` (default: start it here).
            raise_on_failure: raise when a step fails; otherwise return the failed run.
            progress: called with each step's record as soon as the step ends.
            resumed_from: the run this one continues (recorded; reuse comes from the cache).

        Raises:
            InvalidInput: an invalid graph or parameters (naming the step or parameter), or a
                step output that cannot be stored.
            UserCodeError: a step raised or timed out (after its retries); the original
                exception is the ``__cause__`` and the traceback is in the step's record.
            BackendUnavailable: the executor could not run a step (e.g. Ray unreachable).
        """
        defaults: dict[str, Any] = {}
        if isinstance(pipeline, str):
            spec = self._ws.spec.pipelines.get(pipeline)
            defaults = dict(spec.params) if spec is not None else {}
            pipeline = self.load(pipeline)
        graph = pipeline.graph()
        values = pipeline.bind_params({**defaults, **(params or {})})
        self.reap_interrupted()
        exe, owned = make_executor(executor, max_workers=max_workers, ray_address=ray_address)
        run_id = new_id()
        orchestrator = RunOrchestrator(self, pipeline, graph, values, exe, run_id, progress)
        try:
            with self._store.write() as conn:
                sql.insert_run(conn, orchestrator.run_row(exe.name, resumed_from))
            log.info("run %s of pipeline %r started on %s", run_id[:12], pipeline.name, exe.name)
            try:
                orchestrator.run()
            except BaseException as exc:
                reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else "error"
                orchestrator.finish("interrupted", f"{reason}: {type(exc).__name__}: {exc}")
                raise
            status, error = orchestrator.final_status()
            orchestrator.finish(status, error)
        finally:
            if owned:
                exe.close()
        record = self.get(run_id)
        log.info("run %s of pipeline %r ended %s", run_id[:12], pipeline.name, record.status)
        if record.status == "failed" and raise_on_failure and orchestrator.failures:
            raise orchestrator.error_for(orchestrator.failures[0])
        return record

    def resume(
        self,
        run_id: str,
        *,
        executor: str | Executor = "local",
        max_workers: int | None = None,
        ray_address: str | None = None,
        raise_on_failure: bool = True,
        progress: Callable[[StepRun], None] | None = None,
    ) -> PipelineRun:
        """Run a pipeline again with the parameters of an earlier run: steps that completed
        then are cached now, so the new run continues where the old one stopped.

        Raises:
            NotFound: no such run.
            Conflict: the run is still running.
            InvalidInput: the run's pipeline cannot be imported by reference.
        """
        old = self.get(run_id)
        if old.status == "running":
            raise Conflict(f"run {old.id} is still running (pid {old.pid} on {old.host})")
        if not old.pipeline_ref:
            raise InvalidInput(f"run {old.id} was of a pipeline without an importable reference")
        return self.run(
            self.load(old.pipeline_ref),
            old.params,
            executor=executor,
            max_workers=max_workers,
            ray_address=ray_address,
            raise_on_failure=raise_on_failure,
            progress=progress,
            resumed_from=old.id,
        )

    # -- records -----------------------------------------------------------------------------

    def get(self, run_id: str) -> PipelineRun:
        """A run by id (or a unique prefix of at least 6 characters).

        Raises:
            NotFound: no such run, or the prefix is ambiguous.
        """
        self.reap_interrupted()
        with self._store.read() as conn:
            rows = sql.get_runs(conn, [run_id])
            if not rows and len(run_id) >= 6:
                ids = sql.run_ids_with_prefix(conn, run_id)
                if len(ids) > 1:
                    raise NotFound(f"run id prefix {run_id!r} is ambiguous")
                rows = sql.get_runs(conn, ids)
            if not rows:
                raise NotFound(f"no pipeline run {run_id!r}")
            steps = sql.steps_of_runs(conn, [rows[0]["id"]])
        return run_from_rows(rows[0], steps[rows[0]["id"]])

    def list(
        self, pipeline: str | None = None, *, status: str | None = None, limit: int = 100
    ) -> builtins.list[PipelineRun]:
        """Runs, newest first, optionally of one pipeline or with one status."""
        self.reap_interrupted()
        with self._store.read() as conn:
            ids = sql.list_run_ids(conn, pipeline=pipeline, status=status, limit=limit)
            rows = sql.get_runs(conn, ids)
            steps = sql.steps_of_runs(conn, ids)
        return [run_from_rows(r, steps[r["id"]]) for r in rows]

    def load_output(self, run: PipelineRun | str, step: str) -> Any:
        """The output a step of a run produced (or reused from the cache).

        Raises:
            NotFound: no such run or step, or the step has no output (it did not complete).
        """
        record = run if isinstance(run, PipelineRun) else self.get(run)
        st = record.step(step)
        stored = st.output
        if stored is None:
            raise NotFound(f"step {step!r} of run {record.id} has no output (it is {st.status})")
        return load_value(self._artifacts, stored)

    def reap_interrupted(self) -> int:
        """Mark runs whose process on this host has died as interrupted; return how many."""
        with self._store.read() as conn:
            dead = [r for r in sql.running_runs(conn) if died_here(r["host"], r["pid"])]
        reaped = 0
        for r in dead:
            with self._store.write() as conn:
                reaped += sql.interrupt_run(
                    conn,
                    r["id"],
                    ended_at=now(),
                    error=f"process {r['pid']} on {HOST} exited before the run ended",
                )
        if reaped:
            log.warning("marked %d pipeline run(s) of dead processes interrupted", reaped)
        return reaped

    # -- schedules and triggers --------------------------------------------------------------

    @property
    def _book(self) -> Schedules:
        if self._schedules is None:
            from wellml.pipelines.schedules import Schedules

            self._schedules = Schedules(self)
        return self._schedules

    def schedule(
        self,
        pipeline: str,
        *,
        cron: str,
        params: Mapping[str, Any] | None = None,
        name: str | None = None,
        executor: str = "local",
        replace: bool = False,
    ) -> Schedule:
        """Run a pipeline at every slot of a cron expression (five fields, UTC).

        The first run is at the first slot after now; a scheduler (``wellml pipelines
        scheduler``) must be running. The pipeline and parameters are checked now.

        Args:
            pipeline: a pipeline declared in ``wellml.yaml`` (its default params apply) or a
                ``module:function`` reference.
            cron: e.g. ``"0 3 * * *"`` for 03:00 UTC every day.
            params: parameter values over the pipeline's defaults.
            name: the schedule's name (default: the pipeline's).
            executor: where its runs execute (``local``, ``process``, ``ray`` or ``ray://``).
            replace: change an existing enabled schedule of that name.

        Raises:
            InvalidInput: a bad cron expression, name, executor, pipeline or parameters.
            NotFound: no such pipeline.
            Conflict: an enabled schedule of that name exists and ``replace`` is False.
        """
        return self._book.create(
            pipeline, cron=cron, params=params, name=name, executor=executor, replace=replace
        )

    def trigger(
        self,
        pipeline: str,
        *,
        on_dataset: str,
        params: Mapping[str, Any] | None = None,
        dataset_param: str | None = None,
        name: str | None = None,
        executor: str = "local",
        replace: bool = False,
    ) -> Schedule:
        """Run a pipeline once for each version of a dataset registered from now on.

        Args:
            on_dataset: the dataset's name; it must exist.
            dataset_param: the pipeline parameter that receives the new version's reference
                (``name@N``); without it the parameters are the same for every run.
            name: the trigger's name (default: ``PIPELINE-on-DATASET``).

        Raises:
            InvalidInput, NotFound, Conflict: as for :meth:`schedule`; NotFound also for a
                dataset that does not exist.
        """
        return self._book.create(
            pipeline,
            on_dataset=on_dataset,
            dataset_param=dataset_param,
            params=params,
            name=name,
            executor=executor,
            replace=replace,
        )

    def apply_schedules(self) -> builtins.list[AppliedSchedule]:
        """Create or update the schedules and triggers declared in ``wellml.yaml``
        (``schedules:`` and ``triggers:``); idempotent, so it is safe to call at every start.

        Returns:
            What happened to each declared entry (``created``, ``updated``, ``unchanged``).

        Raises:
            InvalidInput, NotFound: an entry whose pipeline, parameters or dataset is wrong;
                nothing is written then.
        """
        return self._book.apply(self._ws.spec)

    def schedules(self) -> builtins.list[Schedule]:
        """Every schedule and trigger by name, disabled ones too."""
        return self._book.list()

    def get_schedule(self, name: str) -> Schedule:
        """A schedule or trigger by name.

        Raises:
            NotFound: no such schedule.
        """
        return self._book.get(name)

    def unschedule(self, name: str) -> Schedule:
        """Disable a schedule or trigger (its firings stay on record).

        Raises:
            NotFound: no such schedule.
        """
        return self._book.disable(name)

    def firings(self, schedule: str | None = None, *, limit: int = 50) -> builtins.list[Firing]:
        """What schedulers ran, newest first: for one schedule, or everything (retrain triggers
        included).

        Raises:
            NotFound: no such schedule.
        """
        return self._book.firings(schedule, limit)

    def scheduler(
        self, *, executor: str = "local", on_firing: Callable[[Firing], None] | None = None
    ) -> Scheduler:
        """A scheduler for this workspace: ``.tick()`` runs what is due once,
        ``.run_forever(interval=30)`` keeps doing so.

        Args:
            executor: where runs asked for by monitors' retrain triggers execute.
            on_firing: called with each firing when it starts and when it ends.
        """
        from wellml.pipelines.schedules import Scheduler

        return Scheduler(self, executor=executor, on_firing=on_firing)
