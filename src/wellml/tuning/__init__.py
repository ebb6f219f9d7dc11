"""Hyperparameter tuning (Optuna) and AutoML, recorded as runs.

result = ws.tuning.tune(
    LogisticRegression(max_iter=500),
    {"C": (1e-3, 10.0, "log")},
    dataset="churn", target="churned", n_trials=30, seed=0,
)
result.best_params, result.best_value, result.best_estimator

automl = ws.tuning.automl("churn", target="churned", budget="10m", register="churn")
"""

from wellml.tuning.automl import AutoMLResult, Candidate, LeaderboardRow
from wellml.tuning.records import TrialRecord, TuningResult
from wellml.tuning.service import Tuning
from wellml.tuning.trials import Trial, TrialPruned

__all__ = [
    "AutoMLResult",
    "Candidate",
    "LeaderboardRow",
    "Trial",
    "TrialPruned",
    "TrialRecord",
    "Tuning",
    "TuningResult",
]
