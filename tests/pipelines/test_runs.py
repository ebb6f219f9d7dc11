"""Running pipelines in process: caching, retries, timeouts, conditions, gates, failures,
outputs and lineage."""

from __future__ import annotations

import importlib
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from tests.pipelines import sample_steps as s
from tests.pipelines.conftest import executions
from wellml.errors import InvalidInput, NotFound, UserCodeError
from wellml.pipelines import GateResult
from wellml.pipelines.values import decode, encode
from wellml.workspace import Workspace

# --- caching -----------------------------------------------------------------------------------


def test_a_rerun_with_the_same_inputs_is_cached_and_says_so(
    workspace: Workspace, markers: Path
) -> None:
    params = {"marker_dir": str(markers)}
    first = workspace.pipelines.run(s.arithmetic, params)
    assert first.status == "completed"
    assert [st.status for st in first.steps] == ["completed"] * 3
    second = workspace.pipelines.run(s.arithmetic, params)
    assert [st.status for st in second.steps] == ["cached"] * 3
    assert all(executions(markers, n) == 1 for n in ("make_numbers", "total", "scale"))
    for a, b in zip(first.steps, second.steps):
        assert a.digest == b.digest and a.cache_key == b.cache_key
        assert b.cached_from == a.id and f"cache hit: run {first.id[:12]}" in b.reason
    assert workspace.pipelines.load_output(second, "scale") == 20.0


def test_a_changed_parameter_reruns_only_the_steps_that_use_it(
    workspace: Workspace, markers: Path
) -> None:
    workspace.pipelines.run(s.arithmetic, {"marker_dir": str(markers)})
    run = workspace.pipelines.run(s.arithmetic, {"marker_dir": str(markers), "factor": 3.0})
    assert [st.status for st in run.steps] == ["cached", "cached", "completed"]
    assert workspace.pipelines.load_output(run, "scale") == 30.0
    run = workspace.pipelines.run(s.arithmetic, {"marker_dir": str(markers), "n": 6})
    assert [st.status for st in run.steps] == ["completed"] * 3
    assert workspace.pipelines.load_output(run, "scale") == 30.0  # sum(range(6)) * 2


def test_a_changed_input_reruns_the_step_and_equal_content_does_not(
    workspace: Workspace, markers: Path, tmp_path: Path
) -> None:
    text = tmp_path / "in.txt"
    text.write_text("one two three")
    params = {"path": str(text), "marker_dir": str(markers)}
    workspace.pipelines.run(s.words, params)
    # read_text is never cached; its output is the same, so count_words is.
    run = workspace.pipelines.run(s.words, params)
    assert [st.status for st in run.steps] == ["completed", "cached"]
    text.write_text("one two three four")
    run = workspace.pipelines.run(s.words, params)
    assert [st.status for st in run.steps] == ["completed", "completed"]
    assert workspace.pipelines.load_output(run, "count_words") == 4
    assert executions(markers, "read_text") == 3 and executions(markers, "count_words") == 2


_MODULE = """
from wellml.pipelines import pipeline, step

@step
def shout(text: str) -> str:
    return text.upper(){suffix}

@pipeline
def loud(text: str = "hi") -> None:
    shout(text)
"""


def test_a_changed_step_code_misses_the_cache(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "code"
    folder.mkdir()
    module = folder / "loud_steps.py"
    module.write_text(_MODULE.format(suffix=""))
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    mod = importlib.import_module("loud_steps")
    assert workspace.pipelines.run(mod.loud).steps[0].status == "completed"
    assert workspace.pipelines.run(mod.loud).steps[0].status == "cached"
    module.write_text(_MODULE.format(suffix=' + "!"'))
    mod = importlib.reload(mod)
    run = workspace.pipelines.run(mod.loud)
    assert run.steps[0].status == "completed"
    assert workspace.pipelines.load_output(run, "shout") == "HI!"
    module.write_text(_MODULE.format(suffix=' + "!"  # a comment changes nothing'))
    mod = importlib.reload(mod)
    assert workspace.pipelines.run(mod.loud).steps[0].status == "cached"


def test_a_cached_output_whose_blob_is_gone_is_computed_again(
    workspace: Workspace, markers: Path
) -> None:
    first = workspace.pipelines.run(s.arithmetic, {"marker_dir": str(markers)})
    blob = Path(workspace.artifacts.path(first.step("scale").digest or ""))
    blob.unlink()
    run = workspace.pipelines.run(s.arithmetic, {"marker_dir": str(markers)})
    assert [st.status for st in run.steps] == ["cached", "cached", "completed"]
    assert blob.exists()


# --- retries, timeouts, failures ---------------------------------------------------------------


def test_a_step_failing_twice_then_succeeding_completes_on_the_third_attempt(
    workspace: Workspace, markers: Path
) -> None:
    run = workspace.pipelines.run(s.flaky_pipeline, {"marker_dir": str(markers)})
    st = run.step("flaky")
    assert run.status == "completed" and st.status == "completed"
    assert st.attempts == 3 and executions(markers, "flaky") == 3
    assert workspace.pipelines.load_output(run, "flaky") == "succeeded on attempt 3"
    # Two backoffs of 0.05 s and 0.1 s lie between the first start and the end.
    assert st.duration is not None and st.duration >= 0.15


def test_a_step_failing_more_than_its_retries_fails_with_its_error(
    workspace: Workspace, markers: Path
) -> None:
    with pytest.raises(UserCodeError, match="after 3 attempts") as err:
        workspace.pipelines.run(s.flaky_pipeline, {"marker_dir": str(markers), "fail_times": 5})
    assert isinstance(err.value.__cause__, ConnectionError)
    assert str(err.value.__cause__) == "attempt 3 failed"
    assert executions(markers, "flaky") == 3
    run = workspace.pipelines.list()[0]
    assert run.status == "failed" and run.step("flaky").attempts == 3


def test_a_step_over_its_timeout_fails_and_blocks_what_needs_it(workspace: Workspace) -> None:
    began = time.monotonic()
    with pytest.raises(UserCodeError, match=r"timed out after 0\.5 s"):
        workspace.pipelines.run(s.slow_pipeline)
    assert time.monotonic() - began < 30  # the step would sleep for a minute
    run = workspace.pipelines.list()[0]
    assert run.status == "failed" and "timed out" in (run.error or "")
    assert run.step("sleepy").status == "failed"
    assert run.step("after_sleep").status == "blocked"
    assert "upstream step 'sleepy' failed" in run.step("after_sleep").reason


def test_user_code_errors_keep_their_cause_traceback_and_call_the_handlers(
    workspace: Workspace, markers: Path
) -> None:
    s.STEP_FAILURES.clear()
    s.PIPELINE_FAILURES.clear()
    with pytest.raises(UserCodeError) as err:
        workspace.pipelines.run(s.exploding, {"marker_dir": str(markers), "message": "kaboom"})
    assert isinstance(err.value.__cause__, ValueError)
    assert str(err.value.__cause__) == "kaboom"
    assert "step 'explode'" in str(err.value)
    run = workspace.pipelines.list()[0]
    failed = run.step("explode")
    assert failed.status == "failed" and failed.error is not None
    assert "ValueError: kaboom" in failed.error and "in explode" in failed.error
    assert run.step("consume").status == "blocked"
    # The independent branch still ran, so a rerun loses nothing.
    assert run.step("independent").status == "completed"
    assert [f.step for f in s.STEP_FAILURES] == ["explode"]
    assert [f.step for f in s.PIPELINE_FAILURES] == ["explode"]
    failure = s.STEP_FAILURES[0]
    assert failure.run_id == run.id and failure.attempts == 1
    assert isinstance(failure.error, UserCodeError) and "kaboom" in failure.traceback


def test_a_failed_run_can_be_returned_instead_of_raised(
    workspace: Workspace, markers: Path
) -> None:
    run = workspace.pipelines.run(s.exploding, {"marker_dir": str(markers)}, raise_on_failure=False)
    assert run.status == "failed" and run.counts() == {
        "failed": 1,
        "blocked": 1,
        "completed": 1,
    }


def test_an_unstorable_output_fails_clearly_without_retrying(workspace: Workspace) -> None:
    with pytest.raises(InvalidInput, match="step 'unstorable' returned a set; supported"):
        workspace.pipelines.run(s.bad_output)
    assert workspace.pipelines.list()[0].step("unstorable").attempts == 1


# --- conditions and gates ----------------------------------------------------------------------


def test_a_condition_that_does_not_hold_skips_the_step_and_what_needs_it(
    workspace: Workspace, markers: Path
) -> None:
    run = workspace.pipelines.run(s.conditional, {"marker_dir": str(markers), "value": 0.2})
    assert run.status == "completed"
    assert run.step("celebrate").status == "skipped"
    assert run.step("celebrate").reason == "condition not met: score above 0.5"
    assert run.step("announce").status == "skipped"
    assert run.step("always").status == "completed"
    assert executions(markers, "celebrate") == 0
    run = workspace.pipelines.run(s.conditional, {"marker_dir": str(markers), "value": 0.9})
    assert run.step("celebrate").status == "completed"
    assert workspace.pipelines.load_output(run, "announce") == "SCORE 0.9"


def test_a_gate_blocks_a_worse_model_from_being_registered(
    workspace: Workspace, markers: Path
) -> None:
    run = workspace.pipelines.run(
        s.promote, {"marker_dir": str(markers), "candidate": 0.81, "baseline": 0.80}
    )
    assert run.status == "blocked"
    assert run.step("beats_baseline").status == "completed"
    assert "does not beat baseline 0.8" in run.step("beats_baseline").reason
    for name in ("register", "notify"):
        st = run.step(name)
        assert st.status == "blocked"
        assert st.reason.startswith("gate 'beats_baseline' did not pass: candidate auc 0.81")
    assert executions(markers, "register") == 0
    assert "gate 'beats_baseline'" in (run.error or "")
    verdict = workspace.pipelines.load_output(run, "beats_baseline")
    assert isinstance(verdict, GateResult) and not verdict.passed
    assert verdict.details["gain"] == pytest.approx(0.01)


def test_a_gate_lets_a_better_model_through(workspace: Workspace, markers: Path) -> None:
    run = workspace.pipelines.run(
        s.promote, {"marker_dir": str(markers), "candidate": 0.9, "baseline": 0.8}
    )
    assert run.status == "completed"
    assert run.step("register").status == "completed"
    assert workspace.pipelines.load_output(run, "notify").startswith("registered a model")
    # A cached gate decides again from its stored result.
    again = workspace.pipelines.run(
        s.promote, {"marker_dir": str(markers), "candidate": 0.9, "baseline": 0.8}
    )
    assert again.status == "completed" and again.step("beats_baseline").status == "cached"


# --- outputs -----------------------------------------------------------------------------------


def test_dataframe_outputs_round_trip_as_parquet(workspace: Workspace) -> None:
    run = workspace.pipelines.run(s.frames, {"rows": 5})
    data = workspace.pipelines.load_output(run, "frame")
    pd.testing.assert_frame_equal(
        data, pd.DataFrame({"x": range(5), "y": [f"r{i}" for i in range(5)]})
    )
    out = run.step("frame").output
    assert out is not None and out.format == "pandas" and out.type == "pandas.DataFrame"
    assert workspace.pipelines.load_output(run, "describe") == {"rows": 5.0, "x_mean": 2.0}


@pytest.mark.parametrize(
    "value",
    [
        None,
        {"a": [1, 2.5, "x", None, True]},
        b"\x00raw",
        pd.Series([1.5, 2.5], name="s"),
        np.arange(6).reshape(2, 3),
        GateResult(True, "fine", {"k": 1}),
    ],
    ids=["none", "json", "bytes", "series", "numpy", "gate"],
)
def test_supported_values_round_trip(value: object) -> None:
    fmt, data = encode(value, "step 'x'")
    back = decode(fmt, data)
    if isinstance(value, pd.Series):
        pd.testing.assert_series_equal(back, value)
    elif isinstance(value, np.ndarray):
        np.testing.assert_array_equal(back, value)
    else:
        assert back == value


def test_sklearn_models_are_stored_with_skops_and_load_back() -> None:
    model = LogisticRegression().fit(np.array([[0.0], [1.0], [2.0], [3.0]]), [0, 0, 1, 1])
    fmt, data = encode(model, "step 'train'")
    assert fmt == "skops" and data[:2] == b"PK"
    back = decode(fmt, data)
    np.testing.assert_array_equal(back.predict([[0.0], [3.0]]), [0, 1])


def test_unsupported_values_are_refused_naming_the_step() -> None:
    with pytest.raises(InvalidInput, match="step 'x' returned a object; supported outputs"):
        encode(object(), "step 'x'")
    with pytest.raises(InvalidInput, match="cannot store the numpy array"):
        encode(np.array([object()]), "step 'x'")
    with pytest.raises(InvalidInput, match="must be JSON-able"):
        encode({1: "int key"}, "step 'x'")


def test_loading_the_output_of_a_step_that_did_not_complete_is_not_found(
    workspace: Workspace, markers: Path
) -> None:
    run = workspace.pipelines.run(s.conditional, {"marker_dir": str(markers), "value": 0.1})
    with pytest.raises(NotFound, match="skipped"):
        workspace.pipelines.load_output(run, "celebrate")
    with pytest.raises(NotFound):
        workspace.pipelines.load_output(run, "nope")


# --- records and lineage -----------------------------------------------------------------------


def test_runs_are_listed_newest_first_and_found_by_prefix(
    workspace: Workspace, markers: Path
) -> None:
    a = workspace.pipelines.run(s.arithmetic, {"marker_dir": str(markers)})
    b = workspace.pipelines.run(s.frames)
    assert [r.id for r in workspace.pipelines.list()] == [b.id, a.id]
    assert [r.id for r in workspace.pipelines.list("frames")] == [b.id]
    assert workspace.pipelines.get(a.id[:10]).id == a.id
    data = workspace.pipelines.get(a.id).to_dict()
    assert data["params"] == {"marker_dir": str(markers), "n": 5, "factor": 2.0}
    assert data["pipeline_ref"] == "tests.pipelines.sample_steps:arithmetic"
    assert [st["name"] for st in data["steps"]] == ["make_numbers", "total", "scale"]
    assert data["steps"][0]["outputs"]["output"]["digest"]
    with pytest.raises(NotFound):
        workspace.pipelines.get("0000000000")


def test_step_executions_are_upstream_of_their_outputs_in_the_lineage(
    workspace: Workspace, markers: Path
) -> None:
    run = workspace.pipelines.run(s.arithmetic, {"marker_dir": str(markers)})
    scale = run.step("scale")
    assert scale.output_lineage_ref == f"pipeline-output:{run.id}/scale"
    up = workspace.lineage.upstream(scale.output_lineage_ref)
    for name in ("make_numbers", "total", "scale"):
        assert f"pipeline-step:{run.id}/{name}" in up.refs()
        assert f"pipeline-output:{run.id}/{name}" in up.refs()
    node = workspace.lineage.node(f"pipeline-step:{run.id}/total")
    assert node.kind == "pipeline_step" and node.status == "completed"
    assert node.properties["pipeline"] == "arithmetic" and node.properties["attempts"] == 1
    roles = {e.role for e in up.edges}
    assert {"numbers", "value", "output"} <= roles
    # A cached step is an execution too, whose output is the original artifact.
    again = workspace.pipelines.run(s.arithmetic, {"marker_dir": str(markers)})
    cached_ref = again.step("scale").lineage_ref
    assert cached_ref is not None and workspace.lineage.node(cached_ref).status == "cached"
    down = workspace.lineage.downstream(cached_ref)
    assert f"pipeline-output:{run.id}/scale" in down.refs()


def test_progress_is_reported_as_each_step_ends(workspace: Workspace, markers: Path) -> None:
    seen: list[tuple[str, str]] = []
    workspace.pipelines.run(
        s.conditional,
        {"marker_dir": str(markers), "value": 0.1},
        progress=lambda st: seen.append((st.name, st.status)),
    )
    assert seen == [
        ("score", "completed"),
        ("celebrate", "skipped"),
        ("announce", "skipped"),
        ("always", "completed"),
    ]


def test_pipelines_declared_in_the_spec_run_by_name_with_their_defaults(
    tmp_path: Path, markers: Path
) -> None:
    ws = Workspace.init(
        tmp_path / "declared",
        spec={
            "name": "declared",
            "pipelines": {
                "arith": {
                    "function": "tests.pipelines.sample_steps:arithmetic",
                    "params": {"marker_dir": str(markers), "n": 3},
                },
                "short": "tests.pipelines.sample_steps:frames",
            },
        },
    )
    try:
        assert set(ws.pipelines.declared()) == {"arith", "short"}
        run = ws.pipelines.run("arith", {"factor": 10.0})
        assert run.params["n"] == 3 and ws.pipelines.load_output(run, "scale") == 30.0
        assert ws.pipelines.run("short").status == "completed"
        with pytest.raises(InvalidInput, match="neither a declared pipeline"):
            ws.pipelines.run("unknown")
        with pytest.raises(NotFound, match="no module"):
            ws.pipelines.run("not_a_module_anywhere:p")
    finally:
        ws.close()


def test_an_invalid_pipeline_declaration_is_rejected(tmp_path: Path) -> None:
    bad = textwrap.dedent("""
        name: x
        pipelines:
          train: not-a-function-ref
    """)
    (tmp_path / "wellml.yaml").write_text(bad)
    with pytest.raises(InvalidInput, match=r"pipelines\.train\.function"):
        Workspace.open(tmp_path)


def test_a_condition_that_raises_fails_its_step(workspace: Workspace) -> None:
    with pytest.raises(UserCodeError, match="step 'always'") as err:
        workspace.pipelines.run(s.broken_condition)
    assert isinstance(err.value.__cause__, TypeError)
    st = workspace.pipelines.list()[0].step("always")
    assert st.status == "failed" and "condition" in st.reason


@pytest.mark.postgres
def test_a_pipeline_runs_and_caches_on_postgres(
    postgres_url: str, tmp_path: Path, markers: Path
) -> None:
    ws = Workspace.init(tmp_path / "pg", spec={"name": "pg", "stores": {"metadata": postgres_url}})
    try:
        params = {"marker_dir": str(markers)}
        assert ws.pipelines.run(s.arithmetic, params).status == "completed"
        again = ws.pipelines.run(s.arithmetic, params)
        assert [st.status for st in again.steps] == ["cached"] * 3
        assert ws.pipelines.get(again.id[:8]).id == again.id
        up = ws.lineage.upstream(again.step("scale").output_lineage_ref or "")
        assert any(ref.startswith("pipeline-step:") for ref in up.refs())
    finally:
        ws.close()


def test_each_step_cache_key_is_computed_once_and_recorded(
    workspace: Workspace, markers: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wellml.pipelines import runner

    calls: list[str] = []
    real = runner.cache_key

    def counting(node, inputs):  # type: ignore[no-untyped-def]
        calls.append(node.name)
        return real(node, inputs)

    monkeypatch.setattr(runner, "cache_key", counting)
    run = workspace.pipelines.run(s.arithmetic, {"marker_dir": str(markers)})
    assert sorted(calls) == ["make_numbers", "scale", "total"]
    keys = {st.name: st.cache_key for st in run.steps}
    assert all(keys.values())

    # A step retried after failures: still one key, the one its completed record carries.
    calls.clear()
    flaky = workspace.pipelines.run(s.flaky_pipeline, {"marker_dir": str(markers)})
    assert calls == ["flaky"] and flaky.step("flaky").attempts == 3
    assert flaky.step("flaky").cache_key

    # The second run finds every step by the same keys.
    calls.clear()
    again = workspace.pipelines.run(s.arithmetic, {"marker_dir": str(markers)})
    assert sorted(calls) == ["make_numbers", "scale", "total"]
    assert {st.name: st.cache_key for st in again.steps} == keys
    assert again.counts() == {"cached": 3}
