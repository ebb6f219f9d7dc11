"""MLflow's side of the serving benchmark, run with the interpreter of MLflow's venv.

    python _serving_worker.py DATA.npz OUTDIR

Fits the same scaler + logistic regression as wellml's side on the same data and saves it as
an MLflow model in ``OUTDIR/model``; prints ``{"model": path}``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> int:
    """Fit and save the model."""
    import mlflow.sklearn
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = np.load(sys.argv[1])
    columns = [f"f{i}" for i in range(data["X"].shape[1])]
    X = pd.DataFrame(data["X"], columns=columns)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, data["y"])
    path = Path(sys.argv[2]) / "model"
    signature = mlflow.models.infer_signature(X, model.predict(X))
    mlflow.sklearn.save_model(model, str(path), signature=signature)
    print(json.dumps({"model": str(path)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
