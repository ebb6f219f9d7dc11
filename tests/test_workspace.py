"""Workspaces and the project spec: init, discovery, validation, store URLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from wellml.config import find_workspace_root, load_spec, parse_spec, store_urls
from wellml.errors import AlreadyExists, InvalidInput, NotFound
from wellml.workspace import Workspace


def test_init_writes_spec_and_state_folder(tmp_path: Path) -> None:
    ws = Workspace.init(
        tmp_path / "proj",
        owner="ana",
        spec={
            "business": {"goal": "g", "kpis": [{"name": "auc", "target": 0.8}]},
            "stages": ["dev", "prod"],
        },
    )
    assert (ws.root / "wellml.yaml").is_file() and (ws.root / ".wellml").is_dir()
    spec = load_spec(ws.root / "wellml.yaml")
    assert spec.name == "proj" and spec.owner == "ana"
    assert [s.name for s in spec.stages] == ["dev", "prod"]
    assert spec.business.kpis[0].target == 0.8
    with pytest.raises(AlreadyExists):
        Workspace.init(tmp_path / "proj")


def test_open_finds_the_workspace_from_a_subfolder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = Workspace.init(tmp_path / "p")
    sub = ws.root / "a" / "b"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    assert Workspace.open().root == ws.root
    assert find_workspace_root(sub) == ws.root


def test_env_var_names_the_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = Workspace.init(tmp_path / "p")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WELLML_WORKSPACE", str(ws.root))
    assert Workspace.open().root == ws.root
    monkeypatch.setenv("WELLML_WORKSPACE", str(tmp_path / "missing"))
    with pytest.raises(NotFound, match="WELLML_WORKSPACE"):
        Workspace.open()


def test_no_workspace_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(NotFound, match="wellml init"):
        Workspace.open()


def test_every_bad_field_gets_its_own_line() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_spec(
            {
                "name": "bad name",
                "owner": 3,
                "stages": ["dev", "dev"],
                "business": {"kpis": [{"target": "high"}]},
                "colour": "blue",
            }
        )
    lines = str(info.value).splitlines()
    assert any(line.startswith("wellml.yaml: name:") for line in lines)
    assert any("business.kpis.0.name" in line for line in lines)
    assert any("business.kpis.0.target" in line for line in lines)
    assert any("colour" in line for line in lines)
    assert any("stages" in line and "unique" in line for line in lines)


def test_malformed_yaml_is_invalid_input(tmp_path: Path) -> None:
    (tmp_path / "wellml.yaml").write_text("name: [unclosed\n")
    with pytest.raises(InvalidInput, match="not valid YAML"):
        load_spec(tmp_path / "wellml.yaml")
    (tmp_path / "wellml.yaml").write_text("- a list\n")
    with pytest.raises(InvalidInput, match="mapping"):
        load_spec(tmp_path / "wellml.yaml")


def test_store_urls_resolve_against_the_workspace_and_env_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = parse_spec({"name": "x"})
    urls = store_urls(spec, tmp_path)
    assert urls.metadata == f"sqlite:///{tmp_path}/.wellml/metadata.db"
    assert urls.artifacts == str(tmp_path / ".wellml" / "artifacts")
    monkeypatch.setenv("WELLML_DB_URL", "postgresql+psycopg://h/db")
    monkeypatch.setenv("WELLML_ARTIFACTS_URL", "s3://bucket/prefix")
    urls = store_urls(spec, tmp_path)
    assert urls.metadata == "postgresql+psycopg://h/db" and urls.artifacts == "s3://bucket/prefix"
