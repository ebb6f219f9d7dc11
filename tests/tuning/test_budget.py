"""A budget in seconds stops the trial running at the deadline too, here and on Ray."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from wellml.errors import UserCodeError
from wellml.pipelines.executors import TimeLimitExceeded, time_limit
from wellml.tuning import Trial
from wellml.workspace import Workspace


def slow_after_first(params: dict[str, Any], trial: Trial) -> float:
    """Trial 0 is quick; later trials sleep far past any budget of these tests, swallowing
    ordinary exceptions as careless objectives do."""
    if trial.number == 0:
        return float(params["x"])
    try:
        time.sleep(60)
    except Exception:
        return -1.0
    return float(params["x"])


def always_slow(params: dict[str, Any]) -> float:
    time.sleep(60)
    return float(params["x"])


def reports_while_slow(params: dict[str, Any], trial: Trial) -> float:
    """Never stops by itself, but reports every 50 ms."""
    for step in range(100_000):
        trial.report(float(params["x"]), step)
        time.sleep(0.05)
    return float(params["x"])


def test_a_trial_running_at_the_deadline_is_stopped_and_recorded_pruned(
    workspace: Workspace,
) -> None:
    started = time.monotonic()
    result = workspace.tuning.tune(
        slow_after_first, {"x": (0.0, 1.0)}, direction="maximize", timeout=1.0, seed=0
    )
    took = time.monotonic() - started
    assert took < 20  # the 60-second trial did not run to its end
    assert [t.state for t in result.trials] == ["complete", "pruned"]
    stopped = result.trials[1]
    assert stopped.error is not None
    assert stopped.error.startswith("stopped by the study's time budget after")
    run = workspace.tracking.get_run(stopped.run_id or "")
    assert run.status == "finished" and run.tags["trial.state"] == "pruned"
    assert "time budget" in (run.error or "")
    assert result.best_trial == 0 and result.status == "completed"


def test_a_study_whose_only_trial_overruns_says_the_budget_ran_out(
    workspace: Workspace,
) -> None:
    with pytest.raises(UserCodeError, match=r"the time budget of 0\.5 s ran out \(trial 0 was"):
        workspace.tuning.tune(always_slow, {"x": (0.0, 1.0)}, direction="maximize", timeout=0.5)
    (study,) = workspace.tuning.list()
    assert study.status == "failed" and [t.state for t in study.trials] == ["pruned"]


def test_a_trial_outside_the_main_thread_is_stopped_at_its_next_report(
    workspace: Workspace,
) -> None:
    out: dict[str, Any] = {}

    def search() -> None:
        try:
            out["result"] = workspace.tuning.tune(
                reports_while_slow, {"x": (0.0, 1.0)}, direction="maximize", timeout=0.5,
                pruner="none",
            )  # fmt: skip
        except BaseException as exc:  # handed to the test thread
            out["error"] = exc

    thread = threading.Thread(target=search)
    thread.start()
    thread.join(30)
    assert not thread.is_alive()
    error = out.get("error")
    assert isinstance(error, UserCodeError) and "time budget of 0.5 s ran out" in str(error)


def test_an_enclosing_time_limit_still_wins_and_is_rearmed(workspace: Workspace) -> None:
    # A study inside a pipeline step with a shorter timeout: the step's limit stops it.
    with pytest.raises(TimeLimitExceeded) as caught, time_limit(0.5) as outer:
        workspace.tuning.tune(always_slow, {"x": (0.0, 1.0)}, direction="maximize", timeout=30)
    assert outer.owns(caught.value)

    # A study that ends inside the enclosing limit leaves that limit armed.
    with pytest.raises(TimeLimitExceeded) as caught, time_limit(1.0) as outer:
        workspace.tuning.tune(
            slow_after_first, {"x": (0.0, 1.0)}, direction="maximize", n_trials=1, timeout=30
        )
        time.sleep(10)
    assert outer.owns(caught.value)


def test_time_limit_refuses_no_time_and_ignores_none() -> None:
    with pytest.raises(TimeLimitExceeded, match="was up before"), time_limit(0):
        pass
    with time_limit(None) as limit:
        time.sleep(0.01)
    assert limit.seconds is None and not limit.enforced


@pytest.mark.ray
def test_a_ray_trial_running_at_the_deadline_is_stopped(
    workspace: Workspace, ray_local: Any
) -> None:
    started = time.monotonic()
    result = workspace.tuning.tune(
        slow_after_first, {"x": (0.0, 1.0)}, direction="maximize", timeout=3.0, seed=0,
        executor="ray", n_jobs=2,
    )  # fmt: skip
    took = time.monotonic() - started
    assert took < 30
    states = [t.state for t in result.trials]
    assert states[0] == "complete" and set(states[1:]) == {"pruned"}
    assert all("time budget" in (t.error or "") for t in result.trials[1:])
