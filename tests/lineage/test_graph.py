"""The lineage graph: recording, upstream/downstream walks, paths, provenance."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pytest

from wellml.errors import NotFound
from wellml.lineage.provenance import code_version, environment
from wellml.workspace import Workspace


def _chain(ws: Workspace) -> dict[str, str]:
    """raw -> (ingest) -> derived; derived -> run -> model artifact."""
    raw = ws.data.register("raw", pd.DataFrame({"a": [1, 2, 3]}))
    derived = ws.data.register("derived", pd.DataFrame({"a": [1, 2]}), parents=[raw])
    with ws.tracking.start_run("e", name="train") as run:
        run.log_input(derived, "train")
        with ws.metadata.write() as conn:
            art = ws.lineage.add_artifact(conn, kind="model_version", ref="model:m@1")
        run.log_output(art, "model")
    return {
        "raw": raw.lineage_ref,
        "derived": derived.lineage_ref,
        "run": run.lineage_ref,
        "model": "model:m@1",
    }


def test_upstream_reaches_the_source_data(workspace: Workspace) -> None:
    refs = _chain(workspace)
    up = workspace.lineage.upstream(refs["model"])
    assert {refs["raw"], refs["derived"], refs["run"], refs["model"]} <= up.refs()
    roles = {(e.role) for e in up.edges}
    assert {"train", "model", "parent", "data"} <= roles


def test_downstream_reaches_the_model(workspace: Workspace) -> None:
    refs = _chain(workspace)
    down = workspace.lineage.downstream(refs["raw"])
    assert refs["model"] in down.refs() and refs["run"] in down.refs()
    assert refs["raw"] not in {
        n.ref for n in workspace.lineage.upstream(refs["raw"]).nodes if n.kind == "run"
    }


def test_depth_limits_the_walk(workspace: Workspace) -> None:
    refs = _chain(workspace)
    one = workspace.lineage.upstream(refs["model"], depth=1)
    assert refs["run"] in one.refs() and refs["derived"] not in one.refs()


def test_path_follows_data_flow(workspace: Workspace) -> None:
    refs = _chain(workspace)
    hops = [n.ref for n in workspace.lineage.path(refs["raw"], refs["model"])]
    assert hops[0] == refs["raw"] and hops[-1] == refs["model"] and refs["run"] in hops
    assert workspace.lineage.path(refs["model"], refs["raw"]) == []
    with pytest.raises(NotFound):
        workspace.lineage.path(refs["raw"], "model:missing@1")


def test_unknown_refs_are_not_found(workspace: Workspace) -> None:
    with pytest.raises(NotFound):
        workspace.lineage.upstream("dataset:nothing@1")


def test_executions_record_user_environment_and_code(workspace: Workspace) -> None:
    refs = _chain(workspace)
    node = workspace.lineage.node(refs["run"])
    assert node.user == "tester"
    assert node.environment_id == environment().id
    assert node.code_commit == code_version().commit


def test_code_version_reads_git_commit_and_dirty_flag(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@x",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@x",
        "PATH": "/usr/bin:/bin",
    }
    (repo / "f.txt").write_text("1")
    for args in (["init", "-q"], ["add", "f.txt"], ["commit", "-q", "-m", "x"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True)
    clean = code_version(repo)
    assert clean.commit and len(clean.commit) == 40 and clean.dirty is False
    none = code_version(tmp_path)
    assert none.commit is None and none.dirty is None


def test_environment_id_is_stable_and_lists_packages() -> None:
    env = environment()
    assert env.id == environment().id and len(env.id) == 64
    assert "scikit-learn" in env.packages and "wellml" in env.packages
