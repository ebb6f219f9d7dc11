"""Defining pipelines: the graph is checked before anything runs, and nothing is recorded
when it is invalid."""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.pipelines import sample_steps as s
from wellml.errors import InvalidInput
from wellml.pipelines import (
    FromStep,
    GateResult,
    Node,
    Pipeline,
    PipelineParam,
    StepOptions,
    Value,
    pipeline,
    step,
)
from wellml.pipelines.definition import code_digest, types_compatible
from wellml.store.tables import lineage_executions
from wellml.workspace import Workspace


def _nothing_recorded(ws: Workspace) -> None:
    assert ws.pipelines.list() == []
    with ws.metadata.read() as conn:
        assert conn.execute(select(func.count()).select_from(lineage_executions)).scalar() == 0


def test_the_graph_is_ordered_with_upstream_steps_first() -> None:
    graph = s.arithmetic.graph()
    assert [n.name for n in graph.nodes] == ["make_numbers", "total", "scale"]
    assert graph.node("total").inputs["numbers"] == FromStep("make_numbers")
    assert graph.downstream("make_numbers") == {"total", "scale"}


def test_a_cycle_is_rejected_naming_the_steps(workspace: Workspace) -> None:
    pipe = Pipeline.from_nodes(
        "loop",
        [
            Node(
                "a",
                s.scale,
                {"value": FromStep("b"), "factor": Value(1.0), "marker_dir": Value("")},
            ),
            Node(
                "b",
                s.scale,
                {"value": FromStep("a"), "factor": Value(1.0), "marker_dir": Value("")},
            ),
        ],
    )
    with pytest.raises(InvalidInput, match=r"cycle: a -> b -> a"):
        workspace.pipelines.run(pipe)
    _nothing_recorded(workspace)


def test_a_missing_input_is_rejected_naming_the_step(workspace: Workspace) -> None:
    with pytest.raises(InvalidInput, match=r"step 'describe': missing input\(s\) data"):
        workspace.pipelines.run(s.missing_input)
    _nothing_recorded(workspace)


def test_a_type_mismatch_is_rejected_naming_both_steps(workspace: Workspace) -> None:
    with pytest.raises(InvalidInput) as err:
        workspace.pipelines.run(s.mistyped)
    message = str(err.value)
    assert "step 'wants_text'" in message and "step 'frame'" in message
    assert "expects str" in message and "DataFrame" in message
    _nothing_recorded(workspace)


def test_an_input_from_an_unknown_step_is_rejected(workspace: Workspace) -> None:
    pipe = Pipeline.from_nodes("dangling", [Node("n", s.wants_text, {"text": FromStep("ghost")})])
    with pytest.raises(InvalidInput, match="unknown step 'ghost'"):
        workspace.pipelines.run(pipe)
    _nothing_recorded(workspace)


def test_bad_parameters_are_rejected_before_anything_runs(workspace: Workspace) -> None:
    with pytest.raises(InvalidInput, match="parameter 'marker_dir' is required"):
        workspace.pipelines.run(s.arithmetic)
    with pytest.raises(InvalidInput, match=r"no parameter\(s\) nope"):
        workspace.pipelines.run(s.arithmetic, {"marker_dir": "m", "nope": 1})
    with pytest.raises(InvalidInput, match="'n' expects int"):
        workspace.pipelines.run(s.arithmetic, {"marker_dir": "m", "n": "five"})
    _nothing_recorded(workspace)


def test_a_parameter_of_the_wrong_annotated_type_is_a_mismatch() -> None:
    @pipeline
    def p(text: str = "x") -> None:
        s.total(text, "m")  # type: ignore[arg-type]

    with pytest.raises(InvalidInput, match="parameter 'text' is str"):
        p.graph()


def test_a_literal_that_is_not_json_is_rejected() -> None:
    @pipeline
    def p() -> None:
        s.total({1, 2}, "m")  # type: ignore[arg-type]

    with pytest.raises(InvalidInput, match="step 'total': input 'numbers' must be JSON-able"):
        p.graph()


def test_placeholders_cannot_be_used_as_values_in_the_body() -> None:
    @pipeline
    def p(n: int = 3) -> None:
        if n:
            s.make_numbers(n, "m")

    with pytest.raises(InvalidInput, match="placeholder while the pipeline is defined"):
        p.graph()


def test_a_step_called_twice_gets_a_second_name() -> None:
    @pipeline
    def p() -> None:
        a = s.make_numbers(2, "m")
        s.total(a, "m")
        s.total(a, "m")
        s.total.with_options(name="grand_total")(a, "m")

    assert [n.name for n in p.graph().nodes] == ["make_numbers", "total", "total_2", "grand_total"]


def test_calling_a_step_outside_a_pipeline_just_calls_it(tmp_path: Path) -> None:
    assert s.total([1, 2, 3], str(tmp_path)) == 6.0


def test_step_options_are_checked() -> None:
    with pytest.raises(InvalidInput, match="retries"):
        StepOptions(name="x", retries=-1)
    with pytest.raises(InvalidInput, match="timeout"):
        StepOptions(name="x", timeout=0)
    with pytest.raises(InvalidInput, match="resource 'num_cpus'"):
        StepOptions(name="x", resources={"num_cpus": -1})

    def variadic(*values: int) -> int:
        return sum(values)

    with pytest.raises(InvalidInput, match=r"step 'variadic': \*args"):
        step(variadic)


def test_backoff_doubles_up_to_its_cap() -> None:
    opts = StepOptions(name="x", retries=5, backoff=0.5, max_backoff=3.0)
    assert opts.backoff_delays() == [0.5, 1.0, 2.0, 3.0, 3.0]


def _function_from(tmp_path: Path, name: str, source: str) -> Any:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.f


def test_code_digest_ignores_comments_docstrings_and_decorators(tmp_path: Path) -> None:
    plain = _function_from(
        tmp_path,
        "plain",
        """
        def f(x):
            return x + 1
    """,
    )
    decorated = _function_from(
        tmp_path,
        "decorated",
        """
        import functools

        @functools.lru_cache(maxsize=3)  # the decorator is not the step's code
        def f(x):
            \"\"\"A docstring.\"\"\"
            # a comment
            return (x +
                    1)
    """,
    )
    changed = _function_from(
        tmp_path,
        "changed",
        """
        def f(x):
            return x + 2
    """,
    )
    assert code_digest(plain) == code_digest(decorated.__wrapped__)
    assert code_digest(plain) != code_digest(changed)


def test_type_compatibility_rules() -> None:
    assert types_compatible(int, float)
    assert not types_compatible(float, int)
    assert types_compatible(list[int], list[int])
    assert not types_compatible(list[int], list[str])
    assert types_compatible(bool, int)
    assert types_compatible(int, int | None)
    assert not types_compatible(int | None, int)
    assert types_compatible(Any, str) and types_compatible(str, Any)
    assert types_compatible(dict[str, float], dict[str, float])
    assert not types_compatible(GateResult, dict)


def test_gate_result_beats_a_baseline_by_a_margin() -> None:
    assert GateResult.beats(0.85, 0.80, margin=0.02, metric="auc").passed
    worse = GateResult.beats(0.81, 0.80, margin=0.02, metric="auc")
    assert not worse.passed and "does not beat" in worse.reason and "auc" in worse.reason
    assert GateResult.beats(0.1, 0.2, higher_is_better=False).passed
    assert not GateResult.beats(float("nan"), 0.2).passed


def test_pipeline_params_are_declared_from_the_signature() -> None:
    params = s.arithmetic.params
    assert params["n"] == PipelineParam("n", int, 5)
    assert params["marker_dir"].required and not params["n"].required
    assert s.arithmetic.parse_params(["n=7", "factor=0.5", "marker_dir=123"]) == {
        "n": 7,
        "factor": 0.5,
        "marker_dir": "123",
    }
    with pytest.raises(InvalidInput, match="key=value"):
        s.arithmetic.parse_params(["n"])
