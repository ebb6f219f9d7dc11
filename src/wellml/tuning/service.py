"""Hyperparameter tuning of a workspace (``ws.tuning``): Optuna studies recorded as runs.

``tune`` searches a space of hyperparameters for an estimator (scored by cross-validation on a
dataset version or on ``X, y``) or for any objective function. Every trial is a child run of the
study's run, with its parameters, its value, the intermediate values it reported, its duration
and the resources it used; a pruner stops bad trials after their first folds (or whatever steps
the objective reports). A study can start from an earlier one (its best trials are tried first)
or from a registered model version's parameters. Trials run here one at a time, or in parallel
on Ray.

Where the study lives: the Optuna study runs in memory (in this process, or in a Ray actor),
and wellml writes every finished trial to its own tables (``tuning_studies``,
``tuning_trials``) and to tracking as it ends. Optuna's own database storage is not used: it
brings its own schema and migration table into the metadata database, beside wellml's. So a
study killed mid-way keeps every finished trial, and ``warm_start_from=<that study>`` continues
from its best ones.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from wellml.config import current_user
from wellml.errors import InvalidInput, NotFound, UserCodeError, WellmlError
from wellml.names import check_key, check_name
from wellml.processes import HOST, died_here
from wellml.store import tuning as sql
from wellml.store.metadata import new_id, now
from wellml.tracking.resources import cpu_watts, record_usage
from wellml.tuning.objective import (
    EstimatorObjective,
    Metric,
    check_params,
    cv_folds,
    default_metric,
    is_estimator,
    objective_arity,
    problem_of,
    resolve_metric,
)
from wellml.tuning.records import TrialRecord, TuningResult, study_from_rows, trial_from_row
from wellml.tuning.space import contains, describe, parse_space, space_to_json
from wellml.tuning.trials import (
    StudyBroker,
    TrialOutcome,
    budget_stop,
    describe_component,
    make_pruner,
    make_sampler,
    ray_trial,
    run_trial,
)

if TYPE_CHECKING:
    from wellml.tracking.service import ActiveRun
    from wellml.tuning.automl import AutoMLResult
    from wellml.workspace import Workspace

log = logging.getLogger("wellml.tuning")
EXECUTORS = ("local", "ray")
# How long a Ray trial may run past the budget before its task is ended from outside, when
# the timer signal in the worker could not interrupt it.
_RAY_GRACE_S = 5.0


# --- where trials run --------------------------------------------------------------------------


class _LocalTrials:
    """Runs each trial in this process as soon as it is submitted."""

    capacity = 1

    def __init__(self, broker_args: dict[str, Any], objective: Any, takes_trial: bool) -> None:
        self._broker = StudyBroker(**broker_args)
        self._objective = objective
        self._takes_trial = takes_trial
        self._done: list[TrialOutcome] = []
        self.watts = cpu_watts()

    def ask(self) -> tuple[int, dict[str, Any]]:
        return self._broker.ask()

    def submit(self, number: int, params: dict[str, Any], deadline: float | None) -> None:
        self._done.append(
            run_trial(
                self._objective,
                number,
                params,
                self._broker.report,
                self._takes_trial,
                self.watts,
                deadline,
            )
        )

    def wait(self) -> TrialOutcome:
        return self._done.pop(0)

    def tell(self, number: int, state: str, value: float | None) -> None:
        self._broker.tell(number, state, value)

    def close(self) -> None:
        """Nothing to release."""


class _RayTrials:
    """Runs trials as Ray tasks, ``capacity`` at a time; the study lives in a Ray actor."""

    def __init__(
        self,
        broker_args: dict[str, Any],
        objective: Any,
        takes_trial: bool,
        *,
        address: str | None,
        n_jobs: int | None,
    ) -> None:
        from wellml.pipelines.executors import import_ray

        ray = import_ray()
        self._ray = ray
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {
                "include_dashboard": False,
                "logging_level": logging.WARNING,
            }
            if address:
                kwargs["address"] = address
            else:
                kwargs["num_cpus"] = n_jobs
            try:
                ray.init(**kwargs)
            except Exception as exc:
                from wellml.errors import BackendUnavailable

                raise BackendUnavailable(f"cannot start or reach Ray at {address}: {exc}") from exc
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.capacity = max(1, n_jobs or cpus)
        self.watts = cpu_watts()
        self._broker = ray.remote(num_cpus=0)(StudyBroker).remote(**broker_args)
        self._objective = ray.put(objective)
        self._task = ray.remote(num_cpus=1, max_retries=0)(ray_trial)
        self._takes_trial = takes_trial
        self._inflight: dict[Any, tuple[int, dict[str, Any], float]] = {}
        self._deadline: float | None = None
        self._overdue: list[TrialOutcome] = []

    def ask(self) -> tuple[int, dict[str, Any]]:
        number, params = self._ray.get(self._broker.ask.remote())
        return int(number), dict(params)

    def submit(self, number: int, params: dict[str, Any], deadline: float | None) -> None:
        self._deadline = deadline
        ref = self._task.remote(
            self._objective, number, params, self._broker, self._takes_trial, self.watts, deadline
        )
        self._inflight[ref] = (number, params, time.time())

    def wait(self) -> TrialOutcome:
        if self._overdue:
            return self._overdue.pop(0)
        timeout = None
        if self._deadline is not None:
            timeout = max(0.0, self._deadline + _RAY_GRACE_S - time.time())
        done, _ = self._ray.wait(list(self._inflight), num_returns=1, timeout=timeout)
        if not done:
            # The trials ignored the worker's timer past the grace period (stuck in native
            # code, say): end their tasks, and record them as stopped by the budget.
            ended = time.time()
            for ref, (number, params, started) in list(self._inflight.items()):
                self._ray.cancel(ref, force=True)
                self._overdue.append(
                    TrialOutcome(
                        number,
                        params,
                        "pruned",
                        None,
                        started,
                        ended,
                        error=budget_stop(ended - started) + "; its Ray task was ended",
                    )
                )
            self._inflight.clear()
            return self._overdue.pop(0)
        number, params, started = self._inflight.pop(done[0])
        try:
            outcome: TrialOutcome = self._ray.get(done[0])
        except Exception as exc:  # the worker died or the task could not run
            return TrialOutcome(
                number, params, "failed", None, started, time.time(), error=f"Ray task: {exc}"
            )
        return outcome

    def tell(self, number: int, state: str, value: float | None) -> None:
        self._ray.get(self._broker.tell.remote(number, state, value))

    def close(self) -> None:
        for ref in self._inflight:
            self._ray.cancel(ref, force=True)
        self._ray.kill(self._broker)


# --- the service -------------------------------------------------------------------------------


def _check_budget(n_trials: int | None, timeout: float | None) -> None:
    if n_trials is None and timeout is None:
        raise InvalidInput("give a budget: n_trials, timeout (seconds), or both")
    if n_trials is not None and (
        isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1
    ):
        raise InvalidInput(f"n_trials must be an integer >= 1, not {n_trials!r}")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0
    ):
        raise InvalidInput(f"timeout must be a number of seconds > 0, not {timeout!r}")


def _better(a: float, b: float | None, direction: str) -> bool:
    return b is None or (a > b if direction == "maximize" else a < b)


def _plain(value: Any) -> Any:
    item = getattr(value, "item", None)
    return item() if callable(item) else value


class Tuning:
    """Hyperparameter search and AutoML (``ws.tuning``)."""

    def __init__(self, workspace: Workspace) -> None:
        self._ws = workspace
        self._store = workspace.metadata

    # -- tuning ------------------------------------------------------------------------------

    def tune(
        self,
        objective: Any,
        search_space: Mapping[str, Any],
        *,
        dataset: str | None = None,
        target: str | None = None,
        X: Any = None,
        y: Any = None,
        metric: str | None = None,
        direction: str | None = None,
        n_trials: int | None = None,
        timeout: float | None = None,
        pruner: Any = "median",
        sampler: Any = "tpe",
        warm_start_from: Any = None,
        warm_start_top: int = 3,
        executor: str = "local",
        n_jobs: int | None = None,
        seed: int | None = None,
        cv: int = 3,
        refit: bool = True,
        experiment: str = "tuning",
        name: str | None = None,
        parent: ActiveRun | str | None = None,
        progress: Callable[[TrialRecord], None] | None = None,
    ) -> TuningResult:
        """Search ``search_space`` for the best value of an objective.

        Args:
            objective: a scikit-learn estimator (or pipeline), scored by ``cv``-fold
                cross-validation with the trial's parameters set on a clone (the mean score so
                far is reported after each fold, so the pruner can stop it early); or a
                function ``f(params) -> float`` or ``f(params, trial) -> float`` whose
                ``trial.report(value, step)`` reports intermediate values.
            search_space: see :mod:`wellml.tuning.space` (``{"C": (1e-3, 10.0, "log"),
                "penalty": ["l1", "l2"]}``); for an estimator, its parameter names
                (``clf__C`` inside a pipeline).
            dataset, target: a dataset version (``name`` or ``name@N``) and its label column,
                for an estimator; rows without a label are left out. Or give ``X`` and ``y``.
            metric: for an estimator, one of :data:`wellml.tuning.objective.METRICS` or a
                scikit-learn scorer name (default: ROC AUC for binary classification, macro F1
                for multiclass, RMSE for regression); for a function, the name of its value.
            direction: ``maximize`` or ``minimize``; required for a function, implied by the
                metric for an estimator.
            n_trials, timeout: the budget: at most this many trials, and no new trial after
                ``timeout`` seconds, when a trial still running is stopped and recorded
                ``pruned`` with the reason as its error. At least one is required.
            pruner: ``median`` (default), ``halving``, ``hyperband``, ``none`` or an Optuna
                pruner.
            sampler: ``tpe`` (default) or ``random``, or an Optuna sampler.
            warm_start_from: an earlier study (a :class:`TuningResult`, its id or name): its
                ``warm_start_top`` best trials' parameters are tried first; or a registered
                model version (``name@version|alias`` or a ``ModelVersion``): its parameters
                that are in the search space are tried first.
            executor: ``local`` (trials one at a time in this process) or ``ray`` /
                ``ray://host:port`` (``n_jobs`` trials at a time on Ray; default: its CPUs).
            seed: seeds the sampler and the folds; a seeded local study is reproducible.
            cv: folds for an estimator (fewer for tiny data).
            refit: refit the estimator with the best parameters on all the data; it is the
                result's ``best_estimator`` and the study run's ``model.skops`` artifact.
            experiment, name: the experiment and name of the study's run.
            parent: a run to nest the study's run under (AutoML does).
            progress: called with each trial's record when it ends.

        Returns:
            The study: best parameters and value, and every trial with its run id.

        Raises:
            InvalidInput: a bad search space, budget, metric, data or option.
            NotFound: no such dataset, column, study or model to warm start from.
            UserCodeError: no trial completed (the first failure's traceback is in the error).
            BackendUnavailable: Ray is asked for but not installed or reachable.
        """
        _check_budget(n_trials, timeout)
        space = parse_space(search_space)
        for key in space:
            check_key(key, "search space parameter")  # each becomes a trial run's param key
        if executor not in EXECUTORS and not str(executor).startswith("ray://"):
            raise InvalidInput(f"unknown executor {executor!r}: use local, ray or a ray:// address")
        if direction not in (None, "maximize", "minimize"):
            raise InvalidInput(f"direction must be 'maximize' or 'minimize', not {direction!r}")
        make_sampler(sampler, seed)
        make_pruner(pruner)
        if n_jobs is not None and (not isinstance(n_jobs, int) or n_jobs < 1):
            raise InvalidInput("n_jobs must be an integer >= 1")
        settings: dict[str, Any] = {
            "sampler": describe_component(sampler),
            "pruner": describe_component(pruner),
            "seed": seed,
            "n_trials": n_trials,
            "timeout": timeout,
            "executor": executor,
            "host": HOST,
            "pid": os.getpid(),
        }

        dataset_version = None
        estimator = None
        if is_estimator(objective):
            estimator = objective
            check_params(estimator, list(space))
            X, y, dataset_version = self._data(dataset, target, X, y)
            problem = problem_of(estimator, y)
            measure = resolve_metric(metric or default_metric(problem), direction)
            folds = cv_folds(
                y,
                classification=problem != "regression",
                folds=cv,
                seed=0 if seed is None else seed,
            )
            run_objective: Any = EstimatorObjective(estimator, X, y, measure, folds)
            takes_trial = True
            settings |= {
                "objective": type(estimator).__name__,
                "problem": problem,
                "cv_folds": len(folds),
                "rows": len(y),
                "dataset": dataset_version.ref if dataset_version is not None else None,
                "target": target,
            }
        elif callable(objective):
            if dataset is not None or X is not None:
                raise InvalidInput(
                    "data (dataset, X, y) is for tuning an estimator; an objective function "
                    "reads its own"
                )
            if direction is None:
                raise InvalidInput("say which way is better: direction='maximize' or 'minimize'")
            measure = Metric(metric or "objective", "", direction)
            takes_trial = objective_arity(objective) == 2
            run_objective = objective
            settings["objective"] = getattr(objective, "__qualname__", type(objective).__name__)
        else:
            raise InvalidInput(
                f"objective must be a scikit-learn estimator or a function, not "
                f"{type(objective).__name__}"
            )
        check_key(measure.name, "metric")

        enqueue = self._warm_start(warm_start_from, space, warm_start_top)
        settings["warm_start"] = {
            "from": None if warm_start_from is None else str(_warm_label(warm_start_from)),
            "params": enqueue,
        }
        broker_args = {
            "direction": measure.direction,
            "space": space_to_json(space),
            "sampler": sampler,
            "pruner": pruner,
            "seed": seed,
            "enqueue": enqueue,
        }
        if name is not None:
            study_name = check_name(name, "study name")
        else:
            study_name = "tune-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", settings["objective"])[:120]

        tracking = self._ws.tracking
        run_params = {
            "metric": measure.name,
            "direction": measure.direction,
            "n_trials": n_trials,
            "timeout": timeout,
            "sampler": settings["sampler"],
            "pruner": settings["pruner"],
            "seed": seed,
            "executor": executor,
            "objective": settings["objective"],
        } | {f"space.{k}": v for k, v in describe(space).items()}
        with tracking.start_run(
            experiment, name=study_name, kind="tuning", parent=parent, params=run_params
        ) as study_run:
            if dataset_version is not None:
                study_run.log_input(dataset_version, "train")
            study_id = new_id()
            with self._store.write() as conn:
                sql.insert_study(
                    conn,
                    {
                        "id": study_id,
                        "name": study_name,
                        "metric": measure.name,
                        "direction": measure.direction,
                        "search_space": broker_args["space"],
                        "settings": settings,
                        "status": "running",
                        "parent_run_id": study_run.id,
                        "best_trial": None,
                        "best_value": None,
                        "best_params": None,
                        "error": None,
                        "created_at": now(),
                        "created_by": current_user(),
                        "ended_at": None,
                    },
                )
            study_run.set_tags({"tuning.study": study_id})
            try:
                best_estimator = self._search(
                    study_id,
                    study_run,
                    experiment,
                    measure,
                    broker_args,
                    run_objective,
                    takes_trial,
                    executor,
                    n_jobs,
                    n_trials,
                    timeout,
                    estimator if refit else None,
                    (X, y),
                    progress,
                )
            except KeyboardInterrupt:
                self._end_study(study_id, "interrupted", "interrupted")
                raise
            except BaseException as exc:
                self._end_study(study_id, "failed", f"{type(exc).__name__}: {exc}")
                raise
        result = self.get(study_id)
        return _with_estimator(result, best_estimator)

    def _search(
        self,
        study_id: str,
        study_run: ActiveRun,
        experiment: str,
        measure: Metric,
        broker_args: dict[str, Any],
        objective: Any,
        takes_trial: bool,
        executor: str,
        n_jobs: int | None,
        n_trials: int | None,
        timeout: float | None,
        estimator: Any,
        data: tuple[Any, Any],
        progress: Callable[[TrialRecord], None] | None,
    ) -> Any:
        runner: _LocalTrials | _RayTrials
        if executor == "local":
            runner = _LocalTrials(broker_args, objective, takes_trial)
        else:
            address = executor if executor.startswith("ray://") else None
            runner = _RayTrials(broker_args, objective, takes_trial, address=address, n_jobs=n_jobs)
        tracking = self._ws.tracking
        deadline = None if timeout is None else time.monotonic() + timeout
        # Trials run elsewhere too (Ray workers): they are told the deadline in wall time.
        wall_deadline = None if timeout is None else time.time() + timeout
        asked = 0
        inflight: dict[int, ActiveRun] = {}
        best: tuple[int, float, dict[str, Any]] | None = None
        first_error: str | None = None
        budget_note: str | None = None
        try:
            while True:
                while (
                    (n_trials is None or asked < n_trials)
                    and (deadline is None or time.monotonic() < deadline)
                    and len(inflight) < runner.capacity
                ):
                    number, params = runner.ask()
                    asked += 1
                    inflight[number] = tracking.start_run(
                        experiment,
                        name=f"trial-{number}",
                        kind="trial",
                        parent=study_run,
                        params={k: _plain(v) for k, v in params.items()},
                    )
                    runner.submit(number, params, wall_deadline)
                if not inflight:
                    break
                outcome = runner.wait()
                runner.tell(outcome.number, outcome.state, outcome.value)
                record = self._record_trial(
                    study_id, measure, inflight.pop(outcome.number), outcome
                )
                if record.state == "failed" and first_error is None:
                    first_error = record.error
                if record.state == "pruned" and record.error and budget_note is None:
                    budget_note = f"trial {record.number} was {record.error}"
                if (
                    record.state == "complete"
                    and record.value is not None
                    and _better(record.value, best[1] if best else None, measure.direction)
                ):
                    best = (record.number, record.value, record.params)
                    with self._store.write() as conn:
                        sql.update_study(
                            conn,
                            study_id,
                            best_trial=best[0],
                            best_value=best[1],
                            best_params=best[2],
                        )
                if best is not None and record.state == "complete":
                    study_run.log_metric(f"best_{measure.name}", best[1], step=record.number)
                if progress is not None:
                    progress(record)
        finally:
            for child in inflight.values():
                child.end("killed", "the study stopped before this trial ended")
            runner.close()

        counts = {s: 0 for s in ("complete", "pruned", "failed")}
        for t in self._trial_rows(study_id):
            counts[t["state"]] += 1
        study_run.log_metrics({f"trials_{k}": float(v) for k, v in counts.items()})
        if best is None:
            error = (
                f"no trial of study {study_id} completed ({asked} tried: {counts['pruned']} "
                f"pruned, {counts['failed']} failed)"
            )
            if budget_note:
                error += f"; the time budget of {timeout:g} s ran out ({budget_note})"
            if first_error:
                error += f"; the first failure:\n{first_error}"
            raise UserCodeError(error)
        study_run.log_batch(
            metrics={f"best_{measure.name}": best[1]},
            tags={
                "tuning.best_trial": best[0],
                "tuning.best_params": json.dumps(best[2], sort_keys=True, default=str),
            },
        )
        fitted = None
        if estimator is not None:
            fitted = self._refit(estimator, best[2], *data, study_run)
        self._end_study(study_id, "completed", None)
        return fitted

    def _refit(self, estimator: Any, params: dict[str, Any], X: Any, y: Any, run: ActiveRun) -> Any:
        import warnings

        from sklearn.base import clone

        from wellml.registry.packaging import save_model

        model = clone(estimator).set_params(**params)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(X, y)
        try:
            run.log_bytes(save_model(model), "model.skops")
        except InvalidInput as exc:
            run.set_tag("model", f"not stored: {exc}")
        return model

    def _record_trial(
        self, study_id: str, measure: Metric, run: ActiveRun, outcome: TrialOutcome
    ) -> TrialRecord:
        ts = time.time()
        points: list[tuple[str, float, int, float]] = []
        if outcome.value is not None and outcome.state == "complete":
            points.append((measure.name, outcome.value, 0, ts))
        points += [(f"{measure.name}.intermediate", v, s, ts) for s, v in outcome.intermediate]
        points += [(k, v, s, ts) for k, v, s in outcome.logged]
        points.append(("duration_s", outcome.ended_at - outcome.started_at, 0, ts))
        if outcome.usage is not None:
            record_usage(run, outcome.usage)
        try:
            run.log_batch(
                metrics=points,
                tags={
                    "trial.number": outcome.number,
                    "trial.state": outcome.state,
                    "tuning.study": study_id,
                },
            )
        except WellmlError as exc:  # a bad key the objective logged: keep the trial
            run.set_tag("trial.logging_error", str(exc))
        run.end("failed" if outcome.state == "failed" else "finished", outcome.error)
        row = {
            "study_id": study_id,
            "number": outcome.number,
            "state": outcome.state,
            "params": {k: _plain(v) for k, v in outcome.params.items()},
            "value": outcome.value,
            "intermediate": [[s, v] for s, v in outcome.intermediate],
            "run_id": run.id,
            "error": outcome.error,
            "started_at": outcome.started_at,
            "ended_at": outcome.ended_at,
        }
        with self._store.write() as conn:
            sql.insert_trial(conn, row)
        log.info(
            "study %s: trial %d %s%s",
            study_id[:12],
            outcome.number,
            outcome.state,
            "" if outcome.value is None else f" ({measure.name} {outcome.value:.6g})",
        )
        return trial_from_row(row)

    def _trial_rows(self, study_id: str) -> builtins.list[dict[str, Any]]:
        with self._store.read() as conn:
            return sql.trials_of(conn, [study_id])[study_id]

    def _end_study(self, study_id: str, status: str, error: str | None) -> None:
        with self._store.write() as conn:
            sql.update_study(conn, study_id, status=status, error=error, ended_at=now())

    # -- data and warm starts ----------------------------------------------------------------

    def _data(
        self, dataset: str | None, target: str | None, X: Any, y: Any
    ) -> tuple[Any, Any, Any]:
        if dataset is not None:
            if X is not None or y is not None:
                raise InvalidInput("give either a dataset and its target, or X and y, not both")
            if not target:
                raise InvalidInput("name the label column: target=...")
            version = self._ws.data.get(dataset)
            frame = self._ws.data.load(version)
            if target not in frame.columns:
                raise NotFound(f"{version.ref} has no column {target!r}")
            frame = frame[frame[target].notna()]
            return frame.drop(columns=[target]), frame[target], version
        if X is None or y is None:
            raise InvalidInput(
                "tuning an estimator needs data: dataset=... and target=..., or X, y"
            )
        if len(X) != len(y):
            raise InvalidInput(f"X has {len(X)} rows but y has {len(y)}")
        return X, y, None

    def _warm_start(
        self, source: Any, space: dict[str, Any], top: int
    ) -> builtins.list[dict[str, Any]]:
        if source is None:
            return []
        if not isinstance(top, int) or top < 1:
            raise InvalidInput("warm_start_top must be an integer >= 1")
        from wellml.registry.service import ModelVersion

        if isinstance(source, TuningResult):
            return _best_params(source, space, top)
        if isinstance(source, ModelVersion):
            return _model_params(self._ws.registry.load(source), source.ref, space)
        if not isinstance(source, str) or not source:
            raise InvalidInput(
                "warm_start_from takes a study (result, id or name) or a model version "
                f"(name@version), not {type(source).__name__}"
            )
        if "@" in source:
            version = self._ws.registry.get(source)
            return _model_params(self._ws.registry.load(version), version.ref, space)
        try:
            return _best_params(self.get(source), space, top)
        except NotFound:
            pass
        try:
            version = self._ws.registry.get(source)
        except (NotFound, InvalidInput):
            raise NotFound(
                f"no tuning study or registered model {source!r} to warm start from"
            ) from None
        return _model_params(self._ws.registry.load(version), version.ref, space)

    # -- records -----------------------------------------------------------------------------

    def get(self, ref: str) -> TuningResult:
        """A study by id (or a unique prefix of at least 6 characters) or by name (the latest
        of that name).

        Raises:
            NotFound: no such study, or an ambiguous prefix.
        """
        self.reap_interrupted()
        with self._store.read() as conn:
            row = sql.get_study(conn, ref)
            if row is None:
                ids = sql.study_ids(conn, name=ref, limit=1)
                if not ids and len(ref) >= 6:
                    ids = sql.study_ids(conn, prefix=ref, limit=2)
                    if len(ids) > 1:
                        raise NotFound(f"tuning study id prefix {ref!r} is ambiguous")
                row = sql.get_study(conn, ids[0]) if ids else None
            if row is None:
                raise NotFound(f"no tuning study {ref!r}")
            trials = sql.trials_of(conn, [row["id"]])[row["id"]]
        return study_from_rows(row, trials)

    def list(self, name: str | None = None, *, limit: int = 50) -> builtins.list[TuningResult]:
        """Studies, newest first (of one name, or all)."""
        self.reap_interrupted()
        with self._store.read() as conn:
            ids = sql.study_ids(conn, name=name, limit=limit)
            trials = sql.trials_of(conn, ids)
            rows = [sql.get_study(conn, i) for i in ids]
        return [study_from_rows(r, trials[r["id"]]) for r in rows if r is not None]

    def reap_interrupted(self) -> int:
        """Mark studies whose process on this host has died as interrupted; return how many."""
        with self._store.read() as conn:
            dead = [
                r
                for r in sql.running_studies(conn)
                if died_here((r["settings"] or {}).get("host"), (r["settings"] or {}).get("pid"))
            ]
        for r in dead:
            self._end_study(r["id"], "interrupted", "the process running the study exited")
        return len(dead)

    # -- AutoML ------------------------------------------------------------------------------

    def automl(self, data: Any, *, target: str, **options: Any) -> AutoMLResult:
        """Find a good model for a tabular dataset within a time budget; see
        :func:`wellml.tuning.automl.run_automl` for the options and the rules it follows.

        Raises:
            InvalidInput, NotFound: see :func:`wellml.tuning.automl.run_automl`.
        """
        from wellml.tuning.automl import run_automl

        return run_automl(self._ws, data, target=target, **options)


def _warm_label(source: Any) -> str:
    for attr in ("ref", "id"):
        value = getattr(source, attr, None)
        if isinstance(value, str):
            return value
    return str(source)


def _fits(space: dict[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k in space and contains(space[k], v)}


def _best_params(
    study: TuningResult, space: dict[str, Any], top: int
) -> builtins.list[dict[str, Any]]:
    done = [t for t in study.trials if t.state == "complete" and t.value is not None]
    done.sort(key=lambda t: t.value or 0.0, reverse=study.direction == "maximize")
    out: builtins.list[dict[str, Any]] = []
    for t in done:
        params = _fits(space, t.params)
        if params and params not in out:
            out.append(params)
        if len(out) == top:
            break
    return out


def _model_params(model: Any, ref: str, space: dict[str, Any]) -> builtins.list[dict[str, Any]]:
    if not hasattr(model, "get_params"):
        raise InvalidInput(f"model {ref} has no parameters to warm start from")
    have = {k: _plain(v) for k, v in model.get_params(deep=True).items()}
    params: dict[str, Any] = {}
    for key in space:
        if key in have:
            params[key] = have[key]
            continue
        # A space for the bare estimator against a registered pipeline, or the other way.
        tail = key.rsplit("__", 1)[-1]
        matches = [k for k in have if k == tail or k.endswith("__" + tail)]
        if len(matches) == 1:
            params[key] = have[matches[0]]
    params = _fits(space, params)
    if not params:
        raise InvalidInput(
            f"model {ref} has none of the searched parameters ({', '.join(space)}) within "
            "the search space"
        )
    return [params]


def _with_estimator(result: TuningResult, estimator: Any) -> TuningResult:
    from dataclasses import replace

    return replace(result, best_estimator=estimator)
