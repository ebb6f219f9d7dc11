"""The process pool runs independent branches in parallel; the Ray executor runs a pipeline
end to end on a real local Ray."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.pipelines import sample_steps as s
from tests.pipelines.conftest import executions
from wellml.errors import InvalidInput, UserCodeError
from wellml.pipelines import Pipeline, ProcessExecutor, pipeline, step
from wellml.workspace import Workspace


def _overlap(a: Any, b: Any) -> bool:
    return bool(a.started_at < b.ended_at and b.started_at < a.ended_at)


def test_the_process_pool_runs_independent_branches_in_parallel(workspace: Workspace) -> None:
    run = workspace.pipelines.run(s.two_naps, {"seconds": 1.0}, executor="process", max_workers=2)
    assert run.status == "completed" and run.executor == "process"
    naps = [st for st in run.steps if st.name.startswith("nap")]
    assert len(naps) == 2 and _overlap(*naps)
    # Two one-second naps one after the other would take over 2 s.
    assert run.duration is not None and run.duration < 1.9
    assert workspace.pipelines.load_output(run, "join") == "ab"


def test_the_process_pool_runs_the_same_pipeline_with_the_same_results(
    workspace: Workspace, markers: Path
) -> None:
    params = {"marker_dir": str(markers)}
    run = workspace.pipelines.run(s.arithmetic, params, executor="process")
    assert workspace.pipelines.load_output(run, "scale") == 20.0
    again = workspace.pipelines.run(s.arithmetic, params, executor="local")
    assert [st.status for st in again.steps] == ["cached"] * 3
    assert executions(markers, "total") == 1


def test_process_pool_retries_timeouts_and_user_errors(workspace: Workspace, markers: Path) -> None:
    with ProcessExecutor(2) as exe:
        run = workspace.pipelines.run(s.flaky_pipeline, {"marker_dir": str(markers)}, executor=exe)
        assert run.step("flaky").attempts == 3 and run.status == "completed"
        with pytest.raises(UserCodeError, match="timed out"):
            workspace.pipelines.run(s.slow_pipeline, executor=exe)
        with pytest.raises(UserCodeError) as err:
            workspace.pipelines.run(s.exploding, {"marker_dir": str(markers)}, executor=exe)
        assert isinstance(err.value.__cause__, ValueError)


def test_a_step_a_worker_cannot_import_fails_clearly(workspace: Workspace) -> None:
    @step
    def local_only(x: int) -> int:
        return x

    @pipeline
    def p() -> None:
        local_only(1)

    assert isinstance(p, Pipeline)
    with pytest.raises(InvalidInput, match=r"step 'local_only'.*define it at module level"):
        workspace.pipelines.run(p, executor="process")
    assert workspace.pipelines.list()[0].step("local_only").attempts == 1
    assert workspace.pipelines.run(p).status == "completed"  # fine in this process


@pytest.mark.ray
def test_a_pipeline_runs_end_to_end_on_ray(
    workspace: Workspace, markers: Path, ray_local: Any
) -> None:
    run = workspace.pipelines.run(s.diamond, {"x": 4}, executor="ray")
    assert run.status == "completed" and run.executor == "ray"
    assert [st.status for st in run.steps] == ["completed"] * 3
    assert workspace.pipelines.load_output(run, "add_up") == 12
    seen = workspace.pipelines.run(s.resources_seen, executor="ray")
    assert workspace.pipelines.load_output(seen, "assigned_resources") == {"CPU": 2.0}
    up = workspace.lineage.upstream(run.step("add_up").output_lineage_ref or "")
    assert {f"pipeline-step:{run.id}/square", f"pipeline-step:{run.id}/negate"} <= up.refs()

    params = {"marker_dir": str(markers), "fail_times": 1}
    flaky = workspace.pipelines.run(s.flaky_pipeline, params, executor="ray")
    assert flaky.step("flaky").attempts == 2 and flaky.status == "completed"
    with pytest.raises(UserCodeError, match=r"timed out after 0\.5 s"):
        workspace.pipelines.run(s.slow_pipeline, executor="ray")
    again = workspace.pipelines.run(s.diamond, {"x": 4}, executor="ray")
    assert [st.status for st in again.steps] == ["cached"] * 3
