"""Shared set-up of the monitoring tests: a deployed classifier and traffic written the way a
running endpoint writes it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from wellml.serving.capture import CaptureWriter
from wellml.workspace import Workspace


def customers(n: int, seed: int, *, shift: float = 0.0, p_b: float = 0.5) -> pd.DataFrame:
    """Customers with a numeric ``x``, a plan ``a``/``b`` and a label that follows ``x``."""
    rng = np.random.default_rng(seed)
    x = rng.normal(shift, 1.0, n)
    plan = rng.choice(["a", "b"], n, p=[1 - p_b, p_b])
    y = (x + rng.normal(0, 0.5, n) > 0).astype(int)
    return pd.DataFrame({"x": x, "plan": plan, "y": y})


@pytest.fixture
def served(workspace: Workspace) -> Workspace:
    """Endpoint ``ep`` serving ``m@1``, a pipeline over ``x`` and ``plan`` trained on
    ``train@1`` (recorded in lineage) with its validation metrics."""
    train = customers(3000, 0)
    dv = workspace.data.register("train", train)
    model = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"])],
                    remainder="passthrough",
                ),
            ),
            ("clf", LogisticRegression()),
        ]
    ).fit(train[["x", "plan"]], train["y"])
    with workspace.tracking.start_run("e") as run:
        run.log_input(dv, "train")
        workspace.registry.register(
            "m",
            model,
            X=train[["x", "plan"]],
            y=train["y"],
            run=run,
            metrics={"val_accuracy": 0.85, "val_roc_auc": 0.93},
        )
    workspace.registry.approve("m@1")
    workspace.endpoints.deploy("m@1", name="ep", port=1)
    return workspace


def capture(
    ws: Workspace,
    frame: pd.DataFrame,
    *,
    endpoint: str = "ep",
    ids: Sequence[str] | None = None,
    batch: int = 1,
) -> list[str]:
    """Predict ``frame`` with the endpoint's model and capture it in requests of ``batch``
    rows, as the running endpoint does; return the inference id of each row."""
    ep = ws.endpoints.get(endpoint)
    model = ws.registry.load(ws.registry.by_id(ep.model_version_id))
    writer = CaptureWriter(
        ws.urls.capture,
        endpoint,
        flush_seconds=60,
        on_file=lambda uri, rows, t0, t1: ws.endpoints._record_capture(ep.id, uri, rows, t0, t1),
    )
    inputs = frame[["x", "plan"]].reset_index(drop=True)
    proba = model.predict_proba(inputs)
    preds = model.predict(inputs)
    row_ids = []
    for n, start in enumerate(range(0, len(inputs), batch)):
        part = slice(start, start + batch)
        rid = ids[n] if ids is not None else f"req-{start}-{np.random.default_rng().integers(1e12)}"
        writer.add(
            rid,
            "m@1",
            inputs.iloc[part],
            {
                "prediction": [int(p) for p in preds[part]],
                "probability": [float(max(p)) for p in proba[part]],
            },
        )
        row_ids.extend([rid] * len(inputs.iloc[part]))
    writer.close()
    return row_ids
