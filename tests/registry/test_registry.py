"""Model registry: versions from runs, safe packages, signatures, approval and aliases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from wellml.errors import (
    Conflict,
    IntegrityError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    SchemaMismatch,
)
from wellml.registry.packaging import load_model, save_model
from wellml.registry.signature import Signature, infer_signature, validate_frame
from wellml.workspace import Workspace


@pytest.fixture
def training() -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"x1": rng.normal(size=200), "x2": rng.integers(0, 5, 200)})
    y = pd.Series((X["x1"] + rng.normal(scale=0.5, size=200) > 0).astype(int))
    return X, y


def _register(ws: Workspace, X: pd.DataFrame, y: pd.Series, **kw: object):  # type: ignore[no-untyped-def]
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    with ws.tracking.start_run("reg") as run:
        dv = ws.data.register("train", X.assign(y=y))
        run.log_input(dv, "train")
        mv = ws.registry.register("clf", model, X=X, y=y, run=run, **kw)  # type: ignore[arg-type]
    return model, mv


def test_register_from_run_records_lineage_signature_and_card(workspace, training) -> None:  # type: ignore[no-untyped-def]
    X, y = training
    model, mv = _register(workspace, X, y, card={"intended_use": "tests"}, metrics={"auc": 0.9})
    assert mv.ref == "clf@1" and mv.status == "pending"
    assert [c.name for c in mv.signature.inputs] == ["x1", "x2"]
    assert [c.type for c in mv.signature.inputs] == ["float", "integer"]
    assert mv.signature.output == {"type": "classification", "classes": [0, 1]}
    assert any(r.startswith("scikit-learn==") for r in mv.requirements)
    assert mv.card["intended_use"] == "tests" and mv.card["owner"] == "tester"
    up = workspace.lineage.upstream(mv.lineage_ref).refs()
    assert f"run:{mv.run_id}" in up and "dataset:train@1" in up
    loaded = workspace.registry.load("clf@1")
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_versions_count_up_and_latest_resolves(workspace, training) -> None:  # type: ignore[no-untyped-def]
    X, y = training
    _register(workspace, X, y)
    _, mv2 = _register(workspace, X, y)
    assert mv2.version == 2
    assert workspace.registry.get("clf").version == 2
    assert workspace.registry.get("clf@v1").version == 1
    with pytest.raises(NotFound):
        workspace.registry.get("clf@7")
    with pytest.raises(NotFound):
        workspace.registry.get("nope@1")


def test_approval_and_rejection_record_who_and_why(workspace, training) -> None:  # type: ignore[no-untyped-def]
    X, y = training
    _register(workspace, X, y)
    mv = workspace.registry.approve("clf@1", reason="beats baseline", by="lead")
    assert (mv.status, mv.status_by, mv.status_reason) == ("approved", "lead", "beats baseline")
    with pytest.raises(Conflict):
        workspace.registry.approve("clf@1")
    with pytest.raises(InvalidInput):
        workspace.registry.reject("clf@1", reason=" ")
    mv = workspace.registry.reject("clf@1", reason="bias found", by="auditor")
    assert mv.status == "rejected"
    actions = [e["action"] for e in workspace.registry.history("clf@1")]
    assert actions == ["registered", "approved", "rejected"]


def test_aliases_move_and_refuse_version_like_names(workspace, training) -> None:  # type: ignore[no-untyped-def]
    X, y = training
    _register(workspace, X, y)
    _register(workspace, X, y)
    workspace.registry.set_alias("clf", "production", 1)
    assert workspace.registry.get("clf@production").version == 1
    workspace.registry.set_alias("clf", "production", 2)
    assert workspace.registry.get("clf@production").version == 2
    assert workspace.registry.get("clf@2").aliases == ("production",)
    for bad in ("3", "latest", "v2"):
        with pytest.raises(InvalidInput):
            workspace.registry.set_alias("clf", bad, 1)
    workspace.registry.delete_alias("clf", "production")
    with pytest.raises(NotFound):
        workspace.registry.get("clf@production")


def test_compare_versions(workspace, training) -> None:  # type: ignore[no-untyped-def]
    X, y = training
    _register(workspace, X, y, metrics={"auc": 0.8})
    _register(workspace, X, y, metrics={"auc": 0.85})
    out = workspace.registry.compare("clf@1", "clf@2")
    assert out["metrics"]["auc"]["diff"] == pytest.approx(0.05)
    assert out["signature"] == {"added": [], "removed": [], "type_changed": []}


def test_a_corrupted_model_file_is_refused(workspace, training) -> None:  # type: ignore[no-untyped-def]
    X, y = training
    _, mv = _register(workspace, X, y)
    manifest = workspace.registry.package(mv)
    digest = manifest["files"]["model.skops"]
    path = workspace.artifacts.path(digest)
    with open(path, "r+b") as fh:
        fh.seek(100)
        fh.write(b"XXXX")
    workspace.registry._loaded.clear()
    with pytest.raises(IntegrityError):
        workspace.registry.load(mv.ref)
    with pytest.raises(IntegrityError):
        workspace.registry.verify(mv.ref)


def test_loading_refuses_types_outside_the_allowlist() -> None:
    import skops.io as sio

    class Sneaky:  # stands for any class a file could name
        pass

    data = sio.dumps({"payload": Sneaky()})
    with pytest.raises(PermissionDenied, match="Sneaky"):
        load_model(data)
    with pytest.raises(InvalidInput):
        load_model(b"not a zip file")


def test_only_sklearn_estimators_are_packaged() -> None:
    with pytest.raises(InvalidInput):
        save_model(object())


def test_register_needs_a_signature_source(workspace, training) -> None:  # type: ignore[no-untyped-def]
    X, y = training
    model = LogisticRegression().fit(X, y)
    with pytest.raises(InvalidInput):
        workspace.registry.register("clf", model)
    with pytest.raises(InvalidInput):
        workspace.registry.register("bad name!", model, X=X)


def test_signature_validation_coerces_and_explains() -> None:
    X = pd.DataFrame({"n": [1.0, 2.0], "i": [1, 2], "s": ["a", "b"], "b": [True, False]})
    sig = infer_signature(X)
    assert Signature.from_dict(sig.to_dict()) == sig
    ok = validate_frame(
        pd.DataFrame({"n": ["3.5"], "i": [4], "s": [7], "b": ["true"], "extra": [1]}), sig
    )
    assert list(ok.columns) == ["n", "i", "s", "b"]
    assert ok["n"].iloc[0] == 3.5 and ok["s"].iloc[0] == "7" and bool(ok["b"].iloc[0])
    with pytest.raises(SchemaMismatch, match="missing input column"):
        validate_frame(pd.DataFrame({"n": [1.0]}), sig)
    with pytest.raises(SchemaMismatch, match="n: expected float, got 'abc'"):
        validate_frame(pd.DataFrame({"n": ["abc"], "i": [1], "s": ["a"], "b": [True]}), sig)
    with pytest.raises(SchemaMismatch, match="i: expected integer"):
        validate_frame(pd.DataFrame({"n": [1.0], "i": [1.5], "s": ["a"], "b": [True]}), sig)
    with pytest.raises(SchemaMismatch, match="never had one"):
        validate_frame(pd.DataFrame({"n": [None], "i": [1], "s": ["a"], "b": [True]}), sig)


def test_only_the_most_recently_used_models_stay_loaded(workspace, training) -> None:  # type: ignore[no-untyped-def]
    from wellml.registry.service import LOADED_MODELS

    X, y = training
    for _ in range(LOADED_MODELS + 1):
        _register(workspace, X, y)
    first = workspace.registry.load("clf@1")
    assert workspace.registry.load("clf@1") is first  # kept while recently used
    for v in range(2, LOADED_MODELS + 2):
        workspace.registry.load(f"clf@{v}")
    again = workspace.registry.load("clf@1")  # dropped as the least recently used, read again
    assert again is not first
    assert again.predict(X).tolist() == first.predict(X).tolist()
