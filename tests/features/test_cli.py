"""``wellml features``: plan, apply, list, show, materialize, get and history from the shell."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tests.features.conftest import activity_frame
from wellml.cli.app import main
from wellml.cli.context import state
from wellml.workspace import Workspace


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    state._ws = None
    state.workspace = None
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    ws = Workspace.init(tmp_path / "proj", name="proj")
    ws.data.register("activity", activity_frame())
    ws.close()
    monkeypatch.chdir(tmp_path / "proj")
    return tmp_path / "proj"


DEFINITIONS = """
features:
  entities:
    - {name: customer, join_keys: [customer_id]}
  feature_views:
    - name: activity
      entities: [customer]
      source: {dataset: activity}
      timestamp_field: event_timestamp
      features: [{name: spend, dtype: float64}, {name: plan, dtype: string}]
      owner: growth
  feature_services:
    - {name: churn, features: ["activity:*"]}
"""


def test_plan_apply_list_show_materialize_get_history(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    defs = project / "features.yaml"
    defs.write_text(textwrap.dedent(DEFINITIONS))
    code, out, err = run(capsys, "features", "plan", "--file", str(defs), "--format", "json")
    assert code == 0, err
    assert [i["action"] for i in json.loads(out)["items"]] == ["create"] * 3
    code, out, _ = run(capsys, "features", "apply", "--file", str(defs))
    assert code == 0 and "3 change(s) applied" in out
    code, out, _ = run(capsys, "features", "apply", "--file", str(defs), "-f", "json")
    assert [i["action"] for i in json.loads(out)["items"]] == ["unchanged"] * 3
    code, out, _ = run(capsys, "features", "list", "-f", "json")
    assert {(d["kind"], d["name"], d["version"]) for d in json.loads(out)} == {
        ("entity", "customer", 1),
        ("feature_view", "activity", 1),
        ("feature_service", "churn", 1),
    }
    code, out, _ = run(capsys, "features", "show", "activity", "-f", "json")
    shown = json.loads(out)
    assert shown["spec"]["source"] == {"dataset": "activity@1"}
    assert shown["last_materialization"] is None
    code, out, _ = run(capsys, "features", "materialize", "activity", "-f", "json")
    assert code == 0 and json.loads(out)["rows_written"] == 20
    code, out, _ = run(
        capsys,
        "features",
        "get",
        "churn",
        "-e",
        "customer_id=1",
        "-e",
        "customer_id=999",
        "-f",
        "json",
    )
    rows = json.loads(out)
    assert code == 0 and rows[0]["customer_id"] == 1 and rows[0]["spend"] is not None
    assert rows[1]["spend"] is None
    code, out, _ = run(capsys, "features", "get", "activity:spend", "-e", "customer_id=1")
    assert code == 0 and "spend" in out
    code, out, _ = run(capsys, "features", "history", "activity", "-f", "json")
    history = json.loads(out)
    assert [v["version"] for v in history["versions"]] == [1]
    assert history["materializations"][0]["status"] == "completed"
    for command in (("list",), ("show", "activity"), ("history", "activity")):
        code, out, _ = run(capsys, "features", *command)
        assert code == 0 and "activity" in out


def test_definitions_in_a_python_file_and_in_wellml_yaml(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    module = project / "my_features.py"
    module.write_text(
        textwrap.dedent(
            """
            from wellml.features import Entity, FeatureView, Source

            customer = Entity("customer", join_keys=("customer_id",))
            activity = FeatureView(
                "activity", entities=("customer",), source=Source(dataset="activity"),
                timestamp_field="event_timestamp",
            )
            """
        )
    )
    code, out, err = run(capsys, "features", "apply", "--file", str(module), "-f", "json")
    assert code == 0, err
    assert [i["name"] for i in json.loads(out)["items"]] == ["customer", "activity"]
    spec = (project / "wellml.yaml").read_text() + textwrap.dedent(DEFINITIONS)
    (project / "wellml.yaml").write_text(spec)
    code, out, _ = run(capsys, "features", "plan", "-f", "json")
    actions = {i["name"]: i["action"] for i in json.loads(out)["items"]}
    assert actions == {"customer": "unchanged", "activity": "update", "churn": "create"}


def test_bad_input_is_one_line_and_changes_nothing(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = project / "bad.yaml"
    bad.write_text(textwrap.dedent(DEFINITIONS).replace("event_timestamp", "when"))
    code, _, err = run(capsys, "features", "apply", "--file", str(bad))
    assert code == 1 and "timestamp_field column 'when' is missing" in err
    assert len(err.strip().splitlines()) == 1
    code, out, _ = run(capsys, "features", "list", "-f", "json")
    assert json.loads(out) == []
    code, _, err = run(capsys, "features", "apply", "--file", str(project / "nope.yaml"))
    assert code == 1 and "no such file" in err
    (project / "broken.yaml").write_text("features: [unclosed")
    code, _, err = run(capsys, "features", "plan", "--file", str(project / "broken.yaml"))
    assert code == 1 and "not valid YAML" in err
    code, _, err = run(capsys, "features", "get", "churn", "-e", "customer_id")
    assert code == 1 and "key=value" in err
    code, _, err = run(capsys, "features", "show", "ghost")
    assert code == 1 and "no feature definition 'ghost'" in err
