"""Trials: the study that proposes parameters and decides on pruning, and the code that runs
one trial wherever the executor put it.

The Optuna study lives in a :class:`StudyBroker`: in this process for the local executor, or in
a Ray actor for the Ray executor, so that trials running in parallel on Ray workers report
their intermediate values to the same study and learn at once whether to stop. Only the
process that runs :meth:`Tuning.tune` writes records.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from wellml.errors import InvalidInput
from wellml.pipelines.executors import TimeLimit, TimeLimitExceeded, time_limit
from wellml.tracking.resources import ResourceMeter, ResourceUsage
from wellml.tuning.objective import finite
from wellml.tuning.space import space_from_json

SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "halving", "hyperband", "none")
STATES = ("complete", "pruned", "failed")


class TrialPruned(Exception):
    """Raised by :meth:`Trial.report` when the pruner stops the trial; let it propagate."""


def make_sampler(spec: Any, seed: int | None) -> Any:
    """An Optuna sampler from ``"tpe"`` / ``"random"`` or a sampler instance.

    Raises:
        InvalidInput: an unknown name.
    """
    import optuna

    if isinstance(spec, optuna.samplers.BaseSampler):
        return spec
    if spec == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=5)
    if spec == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise InvalidInput(f"unknown sampler {spec!r}: use {', '.join(SAMPLERS)} or an Optuna sampler")


def make_pruner(spec: Any) -> Any:
    """An Optuna pruner from a name or an instance.

    ``median`` stops a trial whose mean score so far is worse than the median of earlier
    trials at the same step (after 3 trials); ``halving`` is successive halving over the steps
    (keeps the best third at steps 1, 3, 9, ...); ``hyperband`` runs several halving brackets;
    ``none`` never prunes.

    Raises:
        InvalidInput: an unknown name.
    """
    import optuna

    if isinstance(spec, optuna.pruners.BasePruner):
        return spec
    if spec == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    if spec == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if spec == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, reduction_factor=3)
    if spec in ("none", None):
        return optuna.pruners.NopPruner()
    raise InvalidInput(f"unknown pruner {spec!r}: use {', '.join(PRUNERS)} or an Optuna pruner")


def describe_component(spec: Any) -> str:
    """A sampler or pruner as text for the records."""
    return spec if isinstance(spec, str) else type(spec).__name__


class StudyBroker:
    """Holds the Optuna study: hands out parameters, takes intermediate values and results."""

    def __init__(
        self,
        direction: str,
        space: Mapping[str, str],
        sampler: Any,
        pruner: Any,
        seed: int | None,
        enqueue: list[dict[str, Any]],
    ) -> None:
        import optuna

        optuna.logging.set_verbosity(logging.WARNING)
        self._space = space_from_json(space)
        self._study = optuna.create_study(
            direction=cast(Literal["minimize", "maximize"], direction),
            sampler=make_sampler(sampler, seed),
            pruner=make_pruner(pruner),
        )
        for params in enqueue:
            self._study.enqueue_trial(params, skip_if_exists=True)
        self._open: dict[int, Any] = {}

    def ask(self) -> tuple[int, dict[str, Any]]:
        """A new trial's number and parameters."""
        trial = self._study.ask(self._space)
        self._open[trial.number] = trial
        return trial.number, dict(trial.params)

    def report(self, number: int, step: int, value: float) -> bool:
        """Record an intermediate value; True when the trial should stop."""
        trial = self._open[number]
        trial.report(value, step)
        return bool(trial.should_prune())

    def tell(self, number: int, state: str, value: float | None) -> None:
        """Record how a trial ended."""
        from optuna.trial import TrialState

        trial = self._open.pop(number)
        if state == "complete" and value is not None:
            self._study.tell(trial, value)
        elif state == "pruned":
            self._study.tell(trial, state=TrialState.PRUNED)
        else:
            self._study.tell(trial, state=TrialState.FAIL)


class Trial:
    """What an objective with two arguments receives besides the parameters.

    Attributes:
        number: the trial's number in the study (0, 1, ...).
        params: the parameters to try.
    """

    def __init__(
        self,
        number: int,
        params: dict[str, Any],
        reporter: Callable[[int, int, float], bool] | None = None,
        deadline: float | None = None,
    ) -> None:
        self.number = number
        self.params = params
        self._reporter = reporter
        self._deadline = deadline
        self.intermediate: list[tuple[int, float]] = []
        self.logged: list[tuple[str, float, int]] = []

    def report(self, value: float, step: int) -> None:
        """Report an intermediate value (e.g. the score after a fold or an epoch).

        Raises:
            TrialPruned: the pruner decided to stop this trial; let it propagate.
            TimeLimitExceeded: the study's time budget has run out (checked here too, for
                trials that no timer signal can interrupt); let it propagate.
            InvalidInput: the value is not a finite number, or the step is not an int >= 0.
        """
        number = finite(value)
        if number is None:
            raise InvalidInput(f"trial {self.number}: intermediate value {value!r} is not finite")
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise InvalidInput(f"trial {self.number}: step must be an int >= 0, not {step!r}")
        self.intermediate.append((step, number))
        if self._deadline is not None and time.time() >= self._deadline:
            raise TimeLimitExceeded("the study's time budget ran out")
        if self._reporter is not None and self._reporter(self.number, step, number):
            raise TrialPruned(f"trial {self.number} pruned at step {step}")

    def log_metric(self, key: str, value: float, step: int = 0) -> None:
        """Log an extra metric point to the trial's run (written when the trial ends)."""
        self.logged.append((key, float(value), int(step)))


@dataclass(frozen=True)
class TrialOutcome:
    """How one trial ended, as sent back from wherever it ran."""

    number: int
    params: dict[str, Any]
    state: str
    value: float | None
    started_at: float
    ended_at: float
    intermediate: list[tuple[int, float]] = field(default_factory=list)
    logged: list[tuple[str, float, int]] = field(default_factory=list)
    error: str | None = None
    usage: ResourceUsage | None = None


def budget_stop(elapsed: float) -> str:
    """The reason recorded on a trial stopped by the study's time budget."""
    return f"stopped by the study's time budget after {elapsed:.1f} s"


def run_trial(
    objective: Callable[..., Any],
    number: int,
    params: dict[str, Any],
    reporter: Callable[[int, int, float], bool] | None,
    takes_trial: bool,
    watts: float,
    deadline: float | None = None,
) -> TrialOutcome:
    """Run one trial here; failures are described in the outcome, never raised.

    With a ``deadline`` (epoch seconds), a trial still running then is interrupted and ends
    ``pruned``, its reason in ``error`` (see :func:`wellml.pipelines.executors.time_limit`).
    """
    import optuna

    started = time.time()
    meter = ResourceMeter(watts=watts)
    trial = Trial(number, dict(params), reporter, deadline)
    state, value, error = "failed", None, None
    limit: TimeLimit | None = None
    try:
        with time_limit(None if deadline is None else deadline - started) as limit:
            raw = objective(dict(params), trial) if takes_trial else objective(dict(params))
        value = finite(raw)
        if value is None:
            error = f"the objective returned {raw!r}, not a finite number"
        else:
            state = "complete"
    except TimeLimitExceeded as exc:
        if limit is not None and exc.limit is not None and not limit.owns(exc):
            raise  # an enclosing limit ran out (a pipeline step's timeout): not ours to handle
        state = "pruned"
        value = trial.intermediate[-1][1] if trial.intermediate else None
        error = budget_stop(time.time() - started)
    except (TrialPruned, optuna.TrialPruned):
        state = "pruned"
        value = trial.intermediate[-1][1] if trial.intermediate else None
    except Exception as exc:
        error = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-8000:]
    return TrialOutcome(
        number=number,
        params=dict(params),
        state=state,
        value=value,
        started_at=started,
        ended_at=time.time(),
        intermediate=trial.intermediate,
        logged=trial.logged,
        error=error,
        usage=meter.stop(),
    )


def ray_trial(
    objective: Callable[..., Any],
    number: int,
    params: dict[str, Any],
    broker: Any,
    takes_trial: bool,
    watts: float,
    deadline: float | None = None,
) -> TrialOutcome:
    """:func:`run_trial` in a Ray worker, reporting to the study's Ray actor."""
    import ray

    def report(n: int, step: int, value: float) -> bool:
        return bool(ray.get(broker.report.remote(n, step, value)))

    return run_trial(objective, number, params, report, takes_trial, watts, deadline)
