"""AutoML: from a tabular dataset and a target column to a tuned, registered model.

The rules, in the order they apply:

1. **Rows**: rows without a target value are left out (and counted in the notes).
2. **Problem type** from the target: text, categorical or boolean targets are classification;
   a numeric target is classification when it has two values, or when its values are whole
   numbers with at most 10 distinct ones; anything else is regression. Two classes make it
   binary, more make it multiclass. ``problem=`` overrides. A constant target is an error.
3. **Columns**: numbers (and booleans) are numeric features — missing values imputed with
   the median, standardised for linear models; text columns with at most 50 distinct values,
   or fewer distinct values than half the rows, are categorical — missing values become their
   own category, one-hot encoded (at most 20 categories, rarer ones pooled); ignored, each
   with a note: columns with every value missing or a single value, dates, whole-number columns
   with a distinct value on every row (identifiers), free text (more than 50 distinct values
   in more than half the rows, or 50 characters on average) and other types.
4. **Candidates**: logistic regression (classification) or ridge regression, random forest,
   histogram gradient boosting, and LightGBM and XGBoost when installed (XGBoost only for
   class labels 0..k-1); each is a pipeline of the preprocessing above and the model, with its
   own search space. A dummy model (class prior, or the mean) is scored too, as the baseline.
5. **Start small**: each candidate is tuned (Optuna, TPE sampler, median pruning over the
   cross-validation folds) on a random sample of at most ``sample_rows`` rows (stratified by
   class) — all rows when there are fewer. The tuning share of the budget (70%) is divided
   between the candidates still to tune, and each tries at most ``max_trials`` configurations.
6. **Confirm on the full data**: the ``top_k`` candidates by their best sample score are
   cross-validated with their best parameters on all rows (while budget remains; the first is
   always confirmed). The best confirmed score wins; when the sample was all the data, the
   tuning scores stand as confirmed.
7. **Register**: the winner is refitted on all rows and, with ``register=NAME``, registered
   with a model card that explains the choice: problem type, metric, leaderboard, sample and
   full sizes, budget given and used, and the columns left out.

Everything is tracked: an ``automl`` run, a child ``tuning`` run per candidate (each trial a
child of that), and a ``confirm`` run per confirmed candidate.
"""

from __future__ import annotations

import functools
import math
import re
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from wellml.errors import InvalidInput, NotFound, UserCodeError
from wellml.tuning.objective import (
    CLASSIFICATION_METRICS,
    REGRESSION_METRICS,
    Metric,
    cv_folds,
    default_metric,
    resolve_metric,
    take,
)

if TYPE_CHECKING:
    from wellml.registry.service import ModelVersion
    from wellml.tracking.service import ActiveRun
    from wellml.tuning.records import TrialRecord, TuningResult
    from wellml.workspace import Workspace

PROBLEMS = ("binary", "multiclass", "regression")
_MAX_CLASSES_AS_NUMBERS = 10
_MAX_CATEGORIES = 50
_MAX_ONE_HOT = 20
_TEXT_LENGTH = 50
_TUNING_SHARE = 0.7


def parse_budget(budget: str | float | int) -> float:
    """Seconds from ``90``, ``"90s"``, ``"10m"`` or ``"1.5h"``.

    Raises:
        InvalidInput: anything else, or a budget that is not > 0.
    """
    if isinstance(budget, (int, float)) and not isinstance(budget, bool):
        seconds = float(budget)
    elif isinstance(budget, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", budget.lower())
        if not m:
            raise InvalidInput(
                f"budget {budget!r}: write seconds (90, 90s), minutes (10m) or hours"
            )
        seconds = float(m[1]) * {"": 1, "s": 1, "m": 60, "h": 3600}[m[2]]
    else:
        raise InvalidInput(f"budget must be seconds or text such as '10m', not {budget!r}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidInput("the budget must be more than 0 seconds")
    return seconds


# --- problem and columns -----------------------------------------------------------------------


def detect_problem(y: pd.Series) -> str:
    """``binary``, ``multiclass`` or ``regression`` from the target (rule 2 of the module).

    Raises:
        InvalidInput: the target has a single value.
    """
    values = y.dropna()
    distinct = values.nunique()
    if distinct <= 1:
        only = values.iloc[0] if len(values) else None
        raise InvalidInput(
            f"the target column {y.name!r} is constant (every row is {only!r}): there is "
            "nothing to learn"
        )
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        return "binary" if distinct == 2 else "multiclass"
    if distinct == 2:
        return "binary"
    whole = bool(np.all(np.mod(values.astype(float), 1) == 0))
    if whole and distinct <= _MAX_CLASSES_AS_NUMBERS:
        return "multiclass"
    return "regression"


@dataclass(frozen=True)
class ColumnPlan:
    """Which input columns are used, how, and why the others are not."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    ignored: dict[str, str] = field(default_factory=dict)

    @property
    def used(self) -> list[str]:
        """The feature columns, in the data's order."""
        return [*self.numeric, *self.categorical]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return {
            "numeric": list(self.numeric),
            "categorical": list(self.categorical),
            "ignored": dict(self.ignored),
        }


def plan_columns(X: pd.DataFrame) -> ColumnPlan:
    """Sort the input columns into numeric, categorical and ignored (rule 3 of the module).

    Raises:
        InvalidInput: no column can be used.
    """
    numeric: list[str] = []
    categorical: list[str] = []
    ignored: dict[str, str] = {}
    for name in X.columns:
        col = X[name]
        present = col.dropna()
        distinct = present.nunique() if len(present) else 0
        if not len(present):
            ignored[name] = "every value is missing"
        elif distinct == 1:
            ignored[name] = f"a single value ({present.iloc[0]!r})"
        elif pd.api.types.is_datetime64_any_dtype(col) or isinstance(col.dtype, pd.PeriodDtype):
            ignored[name] = "dates are not used; derive features from them first"
        elif pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
            if pd.api.types.is_integer_dtype(col) and distinct == len(col) and len(col) >= 20:
                ignored[name] = "a distinct whole number on every row: looks like an identifier"
            else:
                numeric.append(name)
        elif pd.api.types.is_object_dtype(col) or isinstance(
            col.dtype, (pd.CategoricalDtype, pd.StringDtype)
        ):
            kinds = {type(v) for v in present}
            if not kinds <= {str, bool, int, float, np.str_, np.bool_}:
                ignored[name] = "values of an unsupported type"
                continue
            text = present.astype(str)
            if text.str.len().mean() >= _TEXT_LENGTH:
                ignored[name] = "free text (long values); text features are not built"
            elif distinct > _MAX_CATEGORIES and distinct > 0.5 * len(present):
                ignored[name] = (
                    f"{distinct} distinct values in {len(present)} rows: free text or an identifier"
                )
            else:
                categorical.append(name)
        else:
            ignored[name] = f"unsupported type {col.dtype}"
    if not numeric and not categorical:
        reasons = "; ".join(f"{k}: {v}" for k, v in ignored.items()) or "no columns"
        raise InvalidInput(f"no usable feature columns ({reasons})")
    return ColumnPlan(tuple(numeric), tuple(categorical), ignored)


def prepare(X: pd.DataFrame, plan: ColumnPlan) -> pd.DataFrame:
    """The used columns, with categorical ones as text (missing values kept missing) and
    boolean ones as numbers, so that every encoder sees one type per column."""
    out = X[plan.used].copy()
    for name in plan.categorical:
        col = out[name]
        out[name] = col.astype(object).where(col.notna(), None)
        out[name] = out[name].map(lambda v: v if v is None else str(v))
    for name in plan.numeric:
        if pd.api.types.is_bool_dtype(out[name]):
            out[name] = out[name].astype(float)
    return out


def preprocessor(plan: ColumnPlan, *, scale: bool) -> Any:
    """The column transformer: impute (and scale) numbers, impute and one-hot categories."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    parts: list[tuple[str, Any, list[str]]] = []
    if plan.numeric:
        steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median"))]
        if scale:
            steps.append(("scale", StandardScaler()))
        parts.append(("numeric", Pipeline(steps), list(plan.numeric)))
    if plan.categorical:
        parts.append(
            (
                "categorical",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="constant", fill_value="(missing)")),
                        (
                            "encode",
                            OneHotEncoder(
                                handle_unknown="infrequent_if_exist",
                                max_categories=_MAX_ONE_HOT,
                                sparse_output=False,
                            ),
                        ),
                    ]
                ),
                list(plan.categorical),
            )
        )
    return ColumnTransformer(parts, remainder="drop")


# --- candidates --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """An algorithm AutoML tries: how to build it and what to search (parameters of the
    ``model`` step of its pipeline)."""

    name: str
    build: Callable[[int], Any]
    space: dict[str, Any]
    scale: bool = False


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _lightgbm(cls: Any, seed: int) -> Any:
    return cls(n_jobs=1, random_state=seed, verbose=-1)


def _xgboost(cls: Any, seed: int) -> Any:
    return cls(n_jobs=1, random_state=seed, verbosity=0, tree_method="hist")


def candidates_for(problem: str, labels: Sequence[Any] = ()) -> tuple[list[Candidate], list[str]]:
    """The candidates for a problem type, and notes on the ones left out."""
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.linear_model import LogisticRegression, Ridge

    classify = problem != "regression"
    forest_space = {
        "n_estimators": (50, 300),
        "max_depth": (2, 16),
        "min_samples_leaf": (1, 20),
        "max_features": ["sqrt", "log2"],
    }
    boost_space = {
        "learning_rate": (0.01, 0.3, "log"),
        "max_leaf_nodes": (8, 64),
        "max_iter": (50, 300),
        "l2_regularization": (1e-6, 1.0, "log"),
    }
    out: list[Candidate] = []
    notes: list[str] = []
    if classify:
        out += [
            Candidate(
                "logistic",
                lambda s: LogisticRegression(max_iter=2000),
                {"C": (1e-3, 100.0, "log")},
                scale=True,
            ),
            Candidate(
                "random_forest",
                lambda s: RandomForestClassifier(n_jobs=1, random_state=s),
                forest_space,
            ),
            Candidate(
                "hist_gradient_boosting",
                lambda s: HistGradientBoostingClassifier(random_state=s),
                boost_space,
            ),
        ]
    else:
        out += [
            Candidate("ridge", lambda s: Ridge(), {"alpha": (1e-3, 100.0, "log")}, scale=True),
            Candidate(
                "random_forest",
                lambda s: RandomForestRegressor(n_jobs=1, random_state=s),
                forest_space,
            ),
            Candidate(
                "hist_gradient_boosting",
                lambda s: HistGradientBoostingRegressor(random_state=s),
                boost_space,
            ),
        ]
    gbm_space = {
        "n_estimators": (50, 300),
        "learning_rate": (0.01, 0.3, "log"),
        "num_leaves": (8, 64),
        "min_child_samples": (5, 50),
    }
    if _installed("lightgbm"):
        import lightgbm

        cls = lightgbm.LGBMClassifier if classify else lightgbm.LGBMRegressor
        out.append(
            Candidate(
                "lightgbm",
                functools.partial(_lightgbm, cls),
                gbm_space,
            )
        )
    else:
        notes.append("LightGBM is not installed (pip install 'wellml[boost]'): not tried")
    if _installed("xgboost"):
        import xgboost

        xgb_space = {
            "n_estimators": (50, 300),
            "max_depth": (2, 10),
            "learning_rate": (0.01, 0.3, "log"),
            "subsample": (0.5, 1.0),
        }
        encoded = not classify or (
            all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in labels)
            and {int(v) for v in labels} == set(range(len(labels)))
        )
        if encoded:
            xcls = xgboost.XGBClassifier if classify else xgboost.XGBRegressor
            out.append(
                Candidate(
                    "xgboost",
                    functools.partial(_xgboost, xcls),
                    xgb_space,
                )
            )
        else:
            notes.append("XGBoost needs class labels 0..k-1: not tried for these labels")
    else:
        notes.append("XGBoost is not installed (pip install 'wellml[boost]'): not tried")
    return out, notes


def candidate_pipeline(candidate: Candidate, plan: ColumnPlan, seed: int) -> Any:
    """The candidate's pipeline: preprocessing, then the model (step ``model``)."""
    from sklearn.pipeline import Pipeline

    return Pipeline(
        [("prepare", preprocessor(plan, scale=candidate.scale)), ("model", candidate.build(seed))]
    )


# --- results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LeaderboardRow:
    """One candidate's outcome.

    Attributes:
        candidate: the algorithm's name.
        sample_score: its best cross-validated score while tuning on the sample.
        full_score: its cross-validated score with those parameters on all rows (None when it
            was not among the candidates confirmed).
        fit_time_s: mean seconds to fit it once on a cross-validation fold of all rows (of the
            sample, when not confirmed).
        params: its best parameters.
        study_id, run_id: its tuning study and run; best_run_id: the best trial's run.
        confirm_run_id: the run that confirmed it on all rows.
        trials: how many trials ended in each state.
        rank: 1 for the chosen model.
    """

    candidate: str
    sample_score: float | None
    full_score: float | None
    fit_time_s: float | None
    params: dict[str, Any]
    study_id: str | None
    run_id: str | None
    best_run_id: str | None
    confirm_run_id: str | None
    trials: dict[str, int]
    rank: int = 0
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return {
            "rank": self.rank,
            "candidate": self.candidate,
            "sample_score": self.sample_score,
            "full_score": self.full_score,
            "fit_time_s": self.fit_time_s,
            "params": self.params,
            "study_id": self.study_id,
            "run_id": self.run_id,
            "best_run_id": self.best_run_id,
            "confirm_run_id": self.confirm_run_id,
            "trials": self.trials,
            "note": self.note,
        }


@dataclass(frozen=True)
class AutoMLResult:
    """What AutoML found: the leaderboard, the chosen model, and how it got there.

    ``model`` is the chosen pipeline refitted on all rows (not part of :meth:`to_dict`).
    """

    run_id: str
    dataset: str | None
    target: str
    problem: str
    metric: str
    direction: str
    rows: int
    sample_rows: int
    columns: ColumnPlan
    baseline_score: float | None
    leaderboard: tuple[LeaderboardRow, ...]
    budget_s: float
    budget_used_s: float
    notes: tuple[str, ...]
    model_version: ModelVersion | None = None
    model: Any = field(default=None, compare=False, repr=False)

    @property
    def best(self) -> LeaderboardRow:
        """The chosen candidate."""
        return self.leaderboard[0]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return {
            "run_id": self.run_id,
            "dataset": self.dataset,
            "target": self.target,
            "problem": self.problem,
            "metric": self.metric,
            "direction": self.direction,
            "rows": self.rows,
            "sample_rows": self.sample_rows,
            "columns": self.columns.to_dict(),
            "baseline_score": self.baseline_score,
            "best": self.best.candidate,
            "leaderboard": [r.to_dict() for r in self.leaderboard],
            "budget_s": self.budget_s,
            "budget_used_s": self.budget_used_s,
            "notes": list(self.notes),
            "model_version": self.model_version.ref if self.model_version else None,
        }


# --- the run -----------------------------------------------------------------------------------


def _load(ws: Workspace, data: Any, target: str) -> tuple[pd.DataFrame, Any]:
    if isinstance(data, pd.DataFrame):
        frame, version = data, None
    elif isinstance(data, str):
        version = ws.data.get(data)
        frame = ws.data.load(version)
    else:
        raise InvalidInput(
            f"AutoML takes a dataset reference or a DataFrame, not {type(data).__name__}"
        )
    if not isinstance(target, str) or target not in frame.columns:
        where = version.ref if version is not None else "the data"
        raise NotFound(f"{where} has no column {target!r}")
    return frame, version


def _sample(
    X: pd.DataFrame, y: pd.Series, rows: int, classify: bool, seed: int
) -> tuple[pd.DataFrame, pd.Series]:
    if len(y) <= rows:
        return X, y
    from sklearn.model_selection import train_test_split

    counts = y.value_counts()
    stratify = y if classify and counts.min() >= 2 and len(counts) <= rows // 2 else None
    Xs, _, ys, _ = train_test_split(X, y, train_size=rows, stratify=stratify, random_state=seed)
    return Xs, ys


def _cross_validate(
    model: Any, X: pd.DataFrame, y: pd.Series, metric: Metric, folds: list[tuple[Any, Any]]
) -> tuple[float, float, Any]:
    """Mean score, mean fit seconds, and the first fold's fitted model."""
    from sklearn.base import clone
    from sklearn.metrics import get_scorer

    scorer = get_scorer(metric.scorer)
    scores, fits, first = [], [], None
    for train, valid in folds:
        m = clone(model)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m.fit(take(X, train), take(y, train))
            fits.append(time.perf_counter() - t0)
            scores.append(metric.sign * float(scorer(m, take(X, valid), take(y, valid))))
        if first is None:
            first = m
    return float(np.mean(scores)), float(np.mean(fits)), first


def _better(a: float | None, b: float | None, direction: str) -> bool:
    if a is None:
        return False
    return b is None or (a > b if direction == "maximize" else a < b)


def run_automl(
    ws: Workspace,
    data: Any,
    *,
    target: str,
    metric: str | None = None,
    budget: str | float = "10m",
    register: str | None = None,
    problem: str | None = None,
    candidates: Sequence[str] | None = None,
    sample_rows: int = 5000,
    top_k: int = 3,
    max_trials: int = 30,
    cv: int = 3,
    seed: int = 0,
    executor: str = "local",
    experiment: str = "automl",
    progress: Callable[[str], None] | None = None,
) -> AutoMLResult:
    """Tune candidate algorithms on a tabular dataset within a budget and pick the best
    (the rules are in the module docstring).

    Args:
        data: a dataset reference (``name`` or ``name@N``) or a DataFrame.
        target: the column to predict.
        metric: what to optimise (default: ROC AUC for binary, macro F1 for multiclass, RMSE
            for regression); see :data:`wellml.tuning.objective.METRICS`.
        budget: wall time for the whole search: seconds, or ``"90s"``, ``"10m"``, ``"1h"``.
        register: register the chosen model under this name, with a model card.
        problem: ``binary``, ``multiclass`` or ``regression`` instead of detecting it.
        candidates: only these algorithms (names as in the leaderboard).
        sample_rows: tune on at most this many rows.
        top_k: confirm this many candidates on all rows.
        max_trials: at most this many trials per candidate.
        cv: cross-validation folds (fewer for tiny data).
        seed: seeds sampling, folds, samplers and models.
        executor: ``local`` or ``ray`` (trials of each candidate in parallel).
        experiment: the tracking experiment of the runs.
        progress: called with one line per milestone.

    Raises:
        InvalidInput: a constant target, too few rows, no usable column, a metric that does
            not fit the problem, a bad budget or option.
        NotFound: no such dataset or column, or an unknown candidate name.
        UserCodeError: no candidate could be fitted.
    """
    started = time.monotonic()
    seconds = parse_budget(budget)
    say = progress or (lambda _line: None)
    for name, value, low in (("sample_rows", sample_rows, 20), ("top_k", top_k, 1),
                             ("max_trials", max_trials, 1), ("cv", cv, 2)):  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InvalidInput(f"{name} must be an integer >= {low}")
    frame, version = _load(ws, data, target)
    notes: list[str] = []
    missing = int(frame[target].isna().sum())
    if missing:
        frame = frame[frame[target].notna()]
        notes.append(f"{missing} row(s) without a value of {target!r} were left out")
    y = frame[target].reset_index(drop=True)
    X = frame.drop(columns=[target]).reset_index(drop=True)
    if not all(isinstance(c, str) for c in X.columns):
        X.columns = [str(c) for c in X.columns]
    if len(y) < 4:
        raise InvalidInput(f"{len(y)} rows with a target value are too few (at least 4)")
    detected = detect_problem(y)
    if problem is None:
        problem = detected
    elif problem not in PROBLEMS:
        raise InvalidInput(f"problem must be one of {', '.join(PROBLEMS)}, not {problem!r}")
    elif problem == "regression" and not pd.api.types.is_numeric_dtype(y):
        raise InvalidInput(f"the target {target!r} is not numeric: it cannot be regression")
    classify = problem != "regression"
    if classify and y.nunique() > 2 and problem == "binary":
        raise InvalidInput(f"the target {target!r} has {y.nunique()} classes, not 2")
    metric = metric or default_metric(problem)
    allowed = CLASSIFICATION_METRICS if classify else REGRESSION_METRICS
    if metric in CLASSIFICATION_METRICS + REGRESSION_METRICS and metric not in allowed:
        raise InvalidInput(
            f"metric {metric!r} does not fit a {problem} problem; use one of {', '.join(allowed)}"
        )
    if problem == "multiclass" and metric in ("roc_auc", "f1", "precision", "recall"):
        raise InvalidInput(
            f"metric {metric!r} is for binary problems; for multiclass use roc_auc_ovr, "
            "f1_macro, f1_weighted, accuracy or balanced_accuracy"
        )
    measure = resolve_metric(metric)
    if classify:
        counts = y.value_counts()
        rare = counts[counts < 2]
        if len(rare):
            raise InvalidInput(
                f"class(es) {', '.join(repr(c) for c in rare.index[:5])} of {target!r} have a "
                "single row; every class needs at least 2 to cross-validate"
            )
    plan = plan_columns(X)
    for name, reason in plan.ignored.items():
        notes.append(f"column {name!r} ignored: {reason}")
    X = prepare(X, plan)
    labels = y.unique().tolist() if classify else []
    pool, left_out = candidates_for(problem, labels)
    notes.extend(left_out)
    if candidates is not None:
        known = {c.name for c in pool}
        unknown = [c for c in candidates if c not in known]
        if unknown:
            raise NotFound(
                f"unknown candidate(s) {', '.join(unknown)}; available: {', '.join(sorted(known))}"
            )
        pool = [c for c in pool if c.name in candidates]

    Xs, ys = _sample(X, y, sample_rows, classify, seed)
    sample_is_full = len(ys) == len(y)
    full_folds = cv_folds(y, classification=classify, folds=cv, seed=seed)
    say(
        f"{problem} problem, metric {measure.name} ({measure.direction}); {len(y)} rows, "
        f"tuning on {len(ys)}; {len(plan.used)} feature column(s); "
        f"candidates: {', '.join(c.name for c in pool)}"
    )

    run_name = f"automl-{version.name if version is not None else target}"
    with ws.tracking.start_run(
        experiment,
        name=run_name,
        kind="automl",
        params={
            "target": target,
            "problem": problem,
            "metric": measure.name,
            "budget_s": seconds,
            "sample_rows": sample_rows,
            "top_k": top_k,
            "max_trials": max_trials,
            "seed": seed,
            "candidates": ",".join(c.name for c in pool),
        },
    ) as run:
        if version is not None:
            run.log_input(version, "train")
        from sklearn.dummy import DummyClassifier, DummyRegressor

        dummy = DummyClassifier(strategy="prior") if classify else DummyRegressor()
        baseline, _, _ = _cross_validate(dummy, X, y, measure, full_folds)
        run.log_metric(f"baseline_{measure.name}", baseline)

        studies = _tune_candidates(
            ws, pool, plan, Xs, ys, measure, run, experiment, seconds, started,
            max_trials, cv, seed, executor, say,
        )  # fmt: skip
        if not studies:
            raise UserCodeError("no candidate could be fitted; see the candidates' runs")
        rows = _confirm(
            ws, studies, pool, plan, X, y, measure, run, experiment, full_folds, seconds,
            started, top_k, sample_is_full, seed, say,
        )  # fmt: skip
        best = rows[0]
        chosen = next(c for c in pool if c.name == best.candidate)
        model = candidate_pipeline(chosen, plan, seed).set_params(**best.params)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(X, y)
        from wellml.registry.packaging import save_model

        run.log_bytes(save_model(model), "model.skops")
        used = time.monotonic() - started
        leaderboard = tuple(rows)
        run.log_batch(
            metrics={
                f"best_{measure.name}": best.full_score
                if best.full_score is not None
                else best.sample_score or math.nan,
                "budget_used_s": used,
            },
            tags={
                "automl.best": best.candidate,
                "automl.leaderboard": ",".join(r.candidate for r in leaderboard),
            },
        )
        result = AutoMLResult(
            run_id=run.id,
            dataset=version.ref if version is not None else None,
            target=target,
            problem=problem,
            metric=measure.name,
            direction=measure.direction,
            rows=len(y),
            sample_rows=len(ys),
            columns=plan,
            baseline_score=baseline,
            leaderboard=leaderboard,
            budget_s=seconds,
            budget_used_s=used,
            notes=tuple(notes),
            model=model,
        )
        if register is not None:
            mv = ws.registry.register(
                register,
                model,
                X=X,
                y=y,
                run=run,
                card=model_card(result),
                metrics={
                    measure.name: best.full_score
                    if best.full_score is not None
                    else best.sample_score,
                    f"baseline_{measure.name}": baseline,
                },
                training_data=[version] if version is not None else None,
            )
            say(f"registered {mv.ref}")
            from dataclasses import replace

            result = replace(result, model_version=mv)
    return result


def _tune_candidates(
    ws: Workspace,
    pool: list[Candidate],
    plan: ColumnPlan,
    Xs: pd.DataFrame,
    ys: pd.Series,
    measure: Metric,
    run: ActiveRun,
    experiment: str,
    seconds: float,
    started: float,
    max_trials: int,
    cv: int,
    seed: int,
    executor: str,
    say: Callable[[str], None],
) -> dict[str, TuningResult]:
    studies: dict[str, TuningResult] = {}
    tuning_end = started + _TUNING_SHARE * seconds
    for i, cand in enumerate(pool):
        remaining = tuning_end - time.monotonic()
        share = max(remaining / (len(pool) - i), 0.001)
        pipe = candidate_pipeline(cand, plan, seed)
        space = {f"model__{k}": v for k, v in cand.space.items()}

        def _tick(record: TrialRecord, name: str = cand.name) -> None:
            value = "-" if record.value is None else f"{record.value:.4g}"
            say(f"  {name} trial {record.number}: {record.state} {value}")

        try:
            study = ws.tuning.tune(
                pipe,
                space,
                X=Xs,
                y=ys,
                metric=measure.name,
                n_trials=max_trials,
                timeout=share,
                seed=seed,
                cv=cv,
                executor=executor,
                refit=False,
                experiment=experiment,
                name=f"automl-{cand.name}",
                parent=run,
                progress=_tick,
            )
        except UserCodeError as exc:
            say(f"{cand.name}: no trial completed ({str(exc).splitlines()[0]})")
            continue
        studies[cand.name] = study
        say(f"{cand.name}: best {measure.name} {study.best_value:.4g} on the sample")
    return studies


def _confirm(
    ws: Workspace,
    studies: dict[str, TuningResult],
    pool: list[Candidate],
    plan: ColumnPlan,
    X: pd.DataFrame,
    y: pd.Series,
    measure: Metric,
    run: ActiveRun,
    experiment: str,
    folds: list[tuple[Any, Any]],
    seconds: float,
    started: float,
    top_k: int,
    sample_is_full: bool,
    seed: int,
    say: Callable[[str], None],
) -> list[LeaderboardRow]:
    from sklearn.base import clone

    from wellml.tracking.diagnostics import diagnose, record_diagnostics

    reverse = measure.direction == "maximize"
    order = sorted(studies, key=lambda n: studies[n].best_value or 0.0, reverse=reverse)
    rows: list[LeaderboardRow] = []
    for position, name in enumerate(order):
        study = studies[name]
        best_run = study.best_run_id
        sample_fit = None
        if study.best_trial is not None:
            t = study.trial(study.best_trial)
            sample_fit = t.duration / max(1, len(t.intermediate) or 1)
        row = LeaderboardRow(
            candidate=name,
            sample_score=study.best_value,
            full_score=None,
            fit_time_s=sample_fit,
            params=dict(study.best_params or {}),
            study_id=study.id,
            run_id=study.parent_run_id,
            best_run_id=best_run,
            confirm_run_id=None,
            trials=study.counts(),
        )
        in_budget = time.monotonic() - started < seconds
        if position < top_k and (position == 0 or sample_is_full or in_budget):
            cand = next(c for c in pool if c.name == name)
            model = candidate_pipeline(cand, plan, seed).set_params(**row.params)
            with ws.tracking.start_run(
                experiment,
                name=f"confirm-{name}",
                kind="confirm",
                parent=run,
                params={k: v for k, v in row.params.items()},
            ) as confirm:
                if sample_is_full:
                    score, fit = row.sample_score, row.fit_time_s
                    first = None
                else:
                    score, fit, first = _cross_validate(model, X, y, measure, folds)
                confirm.log_metrics(
                    {measure.name: score if score is not None else math.nan,
                     "fit_time_s": fit if fit is not None else math.nan}
                )  # fmt: skip
                train, valid = folds[0]
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    if first is None:
                        first = clone(model).fit(take(X, train), take(y, train))
                    diag = diagnose(
                        first,
                        take(X, train),
                        take(y, train),
                        eval_set=(take(X, valid), take(y, valid)),
                    )
                record_diagnostics(confirm, diag)
            note = "confirmed on all rows" + (
                " (the sample was all rows)" if sample_is_full else ""
            )
            row = LeaderboardRow(
                **{**row.__dict__, "full_score": score, "fit_time_s": fit,
                   "confirm_run_id": confirm.id, "note": note}
            )  # fmt: skip
            say(f"{name}: {measure.name} {score:.4g} on all {len(y)} rows")
        elif position < top_k:
            row = LeaderboardRow(**{**row.__dict__, "note": "not confirmed: budget used up"})
        rows.append(row)
    confirmed = [r for r in rows if r.full_score is not None]
    rest = [r for r in rows if r.full_score is None]
    confirmed.sort(key=lambda r: (r.full_score or 0.0) * (-1 if reverse else 1))
    ranked = confirmed + rest
    return [LeaderboardRow(**{**r.__dict__, "rank": i + 1}) for i, r in enumerate(ranked)]


def model_card(result: AutoMLResult) -> dict[str, Any]:
    """The model card of the chosen model: why it was chosen, on what, within what budget."""
    best = result.best
    score = best.full_score if best.full_score is not None else best.sample_score
    versus = (
        f"; the dummy baseline scores {result.baseline_score:.4g}"
        if result.baseline_score is not None
        else ""
    )
    why = (
        f"{best.candidate} had the best cross-validated {result.metric} ({score:.4g}, "
        f"{'higher' if result.direction == 'maximize' else 'lower'} is better) among "
        f"{len(result.leaderboard)} tuned candidates{versus}."
    )
    sample = (
        "all rows"
        if result.sample_rows == result.rows
        else f"a random sample of {result.sample_rows} of {result.rows} rows"
    )
    return {
        "intended_use": f"predict {result.target!r} ({result.problem})",
        "training_data": (
            f"{result.dataset or 'a DataFrame'}: {result.rows} rows; features "
            f"{', '.join(result.columns.used)}"
        ),
        "evaluation_data": (
            f"cross-validation: candidates tuned on {sample}, the top ones confirmed on all "
            f"{result.rows} rows"
        ),
        "metrics": {result.metric: score, f"baseline_{result.metric}": result.baseline_score},
        "limitations": list(result.notes),
        "automl": {
            "problem": result.problem,
            "metric": result.metric,
            "direction": result.direction,
            "chosen": best.candidate,
            "why": why,
            "leaderboard": [r.to_dict() for r in result.leaderboard],
            "rows": result.rows,
            "sample_rows": result.sample_rows,
            "budget_s": result.budget_s,
            "budget_used_s": result.budget_used_s,
            "columns": result.columns.to_dict(),
            "rule": (
                "tune every candidate on a sample of at most sample_rows rows, confirm the "
                "top_k by cross-validation on all rows, choose the best confirmed score"
            ),
            "run_id": result.run_id,
        },
    }
