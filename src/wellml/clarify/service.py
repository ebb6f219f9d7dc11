"""Clarify in a workspace: bias and explanation reports on registered datasets and models.

``ws.clarify.bias(...)`` measures bias on a dataset version (and, given a model version, in
its predictions); ``ws.clarify.explain(...)`` computes SHAP values and partial dependence of
a model version on a dataset version. Each call stores its report as one content-addressed
JSON artifact and records, in one transaction, a lineage execution (kind ``clarify_bias`` or
``clarify_explain``) whose inputs are the dataset version (role ``data``) and the model
version (role ``model``) and whose output is the report (kind ``clarify_report``, ref
``clarify-report:ID``). The report node's properties carry what a reader of the graph needs
without opening the file: its ``kinds`` (``pre_training_bias``, ``post_training_bias``,
``global_shap``, ``local_shap``), ``subject``, ``model``, ``dataset``, ``digest`` and a summary
(bias metrics per facet group, or the global SHAP values), so the lens can ask "is there a
global SHAP report for this model version" with one walk of the graph.

A report renders as a self-contained HTML page with Plotly charts (:func:`render_html`),
written next to a copy of its JSON by :meth:`Clarify.write_html`. The page embeds plotly.js
(about 4.7 MB), so it opens offline.
"""

from __future__ import annotations

import html as html_text
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from wellml.clarify.bias import (
    Threshold,
    ValuesOrThreshold,
    posttraining_bias,
    pretraining_bias,
)
from wellml.clarify.explain import BaselineSpec, Method, json_scalar
from wellml.clarify.explain import explain as shap_explain
from wellml.clarify.explain import partial_dependence as dependence_of
from wellml.clarify.report import BiasReport, bias_analysis
from wellml.config import current_user
from wellml.errors import InvalidInput, NotFound, SchemaMismatch
from wellml.store.metadata import new_id

if TYPE_CHECKING:
    from wellml.data.catalog import DatasetVersion
    from wellml.registry.service import ModelVersion
    from wellml.workspace import Workspace

__all__ = ["REPORT_FORMAT", "Clarify", "ClarifyReport", "ReportInfo", "render_html"]

REPORT_FORMAT = "wellml-clarify-report/1"
REPORT_KIND = "clarify_report"
_REF_PREFIX = "clarify-report:"
_PREFLIGHT_ROWS = 5
_TOP_SHOWN = 20


@dataclass(frozen=True)
class ReportInfo:
    """What the lineage graph records about a Clarify report.

    Attributes:
        id: The report id.
        kinds: What the report holds: ``pre_training_bias``, ``post_training_bias``,
            ``global_shap`` and/or ``local_shap``.
        subject: The lineage ref the report is about: the model version when there is one,
            else the dataset version.
        model: The model version (``name@N``), if any.
        dataset: The dataset version (``name@N``).
        digest: The sha256 of the report's JSON in the artifact store.
        created_at: When it was recorded (epoch seconds).
        created_by: Who recorded it.
        summary: The headline numbers: bias metrics per facet group, or global SHAP values.
    """

    id: str
    kinds: tuple[str, ...]
    subject: str
    model: str | None
    dataset: str
    digest: str
    created_at: float
    created_by: str | None
    summary: dict[str, Any]

    @property
    def ref(self) -> str:
        """The report's node in the lineage graph: ``clarify-report:ID``."""
        return f"{_REF_PREFIX}{self.id}"

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return {
            "id": self.id,
            "ref": self.ref,
            "kinds": list(self.kinds),
            "subject": self.subject,
            "model": self.model,
            "dataset": self.dataset,
            "digest": self.digest,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "summary": self.summary,
        }


@dataclass(frozen=True)
class ClarifyReport:
    """A stored report: its record and its JSON document.

    Attributes:
        info: What the lineage graph records about it.
        document: The report: ``format``, ``id``, ``type`` (``"bias"`` or ``"explanation"``),
            ``kinds``, ``model``, ``dataset``, ``created_at``, ``created_by``,
            ``parameters``, ``analysis`` (Clarify's ``analysis.json`` sections) and, for an
            explanation, ``local_shap`` and ``partial_dependence``; for bias, ``groups`` and
            ``rows``.
        html_path: Where its HTML page was written, when it was.
    """

    info: ReportInfo
    document: dict[str, Any]
    html_path: str | None = None

    @property
    def id(self) -> str:
        """The report id."""
        return self.info.id

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output: the record, ``document`` and ``html``."""
        return {**self.info.to_dict(), "html": self.html_path, "document": self.document}


class Clarify:
    """Bias and explanation reports of a workspace's datasets and models."""

    def __init__(self, ws: Workspace) -> None:
        self._ws = ws

    # -- bias ------------------------------------------------------------------------------

    def bias(
        self,
        dataset: str | DatasetVersion,
        *,
        label: str,
        label_values_or_threshold: ValuesOrThreshold,
        facet: str,
        facet_values_or_threshold: ValuesOrThreshold | None = None,
        model: str | ModelVersion | None = None,
        group_variable: str | None = None,
        probability_threshold: float | None = None,
        pretraining_methods: str | Sequence[str] = "all",
        posttraining_methods: str | Sequence[str] = "all",
        html: str | os.PathLike[str] | None = None,
    ) -> ClarifyReport:
        """Measure bias on a dataset version, and in a model version's predictions on it.

        Pre-training bias is always measured on the dataset's labels; with ``model``, the
        model predicts on the dataset (its signature's columns) and post-training bias is
        measured on those predictions as well. See :mod:`wellml.clarify.bias` for facets d
        and a, values and thresholds.

        Args:
            dataset: The dataset version (``name@N``, ``name``, or the record).
            label: The label column.
            label_values_or_threshold: Positive label value(s), or ``Threshold(t)``.
            facet: The facet column.
            facet_values_or_threshold: Value(s) or ``Threshold(t)`` selecting facet **d**;
                ``None`` for each distinct value in turn.
            model: A model version whose predictions to measure too.
            group_variable: Column CDDL and CDDPL condition on.
            probability_threshold: The model's predictions are scores; positive above this.
            pretraining_methods: ``"all"`` or keys of
                :data:`~wellml.clarify.PRETRAINING_METHODS`.
            posttraining_methods: ``"all"`` or keys of
                :data:`~wellml.clarify.POSTTRAINING_METHODS`.
            html: Also write the HTML page here (and its JSON beside it).

        Returns:
            The stored report.

        Raises:
            NotFound: No such dataset or model version.
            BiasInputError: Columns, values or parameters the analysis cannot use (an
                :class:`~wellml.errors.InvalidInput`).
            SchemaMismatch: The dataset lacks the model's columns, or the model cannot
                predict on it.
            UserCodeError: The model raised on the data after a successful trial.
        """
        started = time.time()
        _check_html_target(html)
        dv = self._dataset(dataset)
        mv = self._model(model) if model is not None else None
        df = self._ws.data.load(dv)
        pre = pretraining_bias(
            df,
            label=label,
            label_values_or_threshold=label_values_or_threshold,
            facet=facet,
            facet_values_or_threshold=facet_values_or_threshold,
            group_variable=group_variable,
            methods=pretraining_methods,
        )
        reports: list[BiasReport] = [pre]
        if mv is not None:
            fitted = self._ws.registry.load(mv)
            columns = self._preflight(fitted, mv, dv, df)
            reports.append(
                posttraining_bias(
                    df,
                    label=label,
                    label_values_or_threshold=label_values_or_threshold,
                    facet=facet,
                    facet_values_or_threshold=facet_values_or_threshold,
                    model=fitted,
                    probability_threshold=probability_threshold,
                    features=columns,
                    group_variable=group_variable,
                    methods=posttraining_methods,
                )
            )
        parameters = {
            "label": label,
            "label_values_or_threshold": _spec_json(label_values_or_threshold),
            "facet": facet,
            "facet_values_or_threshold": _spec_json(facet_values_or_threshold),
            "group_variable": group_variable,
            "probability_threshold": probability_threshold,
            "pretraining_methods": _methods_json(pretraining_methods),
            "posttraining_methods": _methods_json(posttraining_methods) if mv else None,
        }
        kinds = tuple(f"{r.stage}_bias" for r in reports)
        document = {
            "analysis": bias_analysis(reports),
            "groups": [
                {
                    "stage": r.stage,
                    "facet": r.facet,
                    "value_or_threshold": g.value_or_threshold,
                    "n_d": g.n_d,
                    "n_a": g.n_a,
                }
                for r in reports
                for g in r.groups
            ],
            "rows": {
                r.stage: {
                    "n_rows": r.n_rows,
                    "n_excluded": r.n_excluded,
                    "excluded_by_column": dict(r.excluded_by_column),
                }
                for r in reports
            },
        }
        summary = {
            "label": label,
            "label_value_or_threshold": pre.label_value_or_threshold,
            "facets": [facet],
            "metrics": {
                r.stage: {
                    g.value_or_threshold: {m.name: m.to_dict()["value"] for m in g.metrics}
                    for g in r.groups
                }
                for r in reports
            },
        }
        return self._record(
            "bias",
            kinds=kinds,
            dv=dv,
            mv=mv,
            parameters=parameters,
            body=document,
            summary=summary,
            started=started,
            html=html,
        )

    # -- explanations ----------------------------------------------------------------------

    def explain(
        self,
        model: str | ModelVersion,
        dataset: str | DatasetVersion,
        *,
        rows: int | None = 100,
        target_class: Any = None,
        method: Method = "auto",
        baseline: BaselineSpec = "kmeans",
        n_clusters: int = 10,
        n_samples: int = 256,
        seed: int = 0,
        partial_dependence: int | Sequence[str] = 3,
        grid_resolution: int = 20,
        html: str | os.PathLike[str] | None = None,
    ) -> ClarifyReport:
        """SHAP values and partial dependence of a model version on a dataset version.

        The model reads its signature's columns of the dataset. See
        :mod:`wellml.clarify.explain` for the algorithms, the baseline and the seed.

        Args:
            model: The model version (``name@N``, ``name@alias``, ``name``, or the record).
            dataset: The dataset version whose rows to explain.
            rows: Explain at most this many rows (sampled with the seed); ``None`` for all.
            target_class: The class whose probability is explained (classifiers).
            method: ``"auto"``, ``"tree"`` or ``"kernel"``.
            baseline: ``"kmeans"``, ``"mean"`` or a data frame of baseline rows.
            n_clusters: Baseline rows made by ``"kmeans"``.
            n_samples: Kernel SHAP coalitions per row.
            seed: Seed of every random choice.
            partial_dependence: The features to compute partial dependence for, or how many
                of the top-ranked ones (``0`` for none).
            grid_resolution: Largest numeric grid of partial dependence.
            html: Also write the HTML page here (and its JSON beside it).

        Returns:
            The stored report.

        Raises:
            NotFound: No such model or dataset version.
            SchemaMismatch: The dataset lacks the model's columns, or the model cannot
                predict on it.
            ExplainInputError: Parameters or data the explanation cannot use (an
                :class:`~wellml.errors.InvalidInput`).
            UserCodeError: The model raised while being explained.
        """
        started = time.time()
        _check_html_target(html)
        if rows is not None and (isinstance(rows, bool) or not isinstance(rows, int) or rows < 1):
            raise InvalidInput(f"rows must be a positive number of rows, not {rows!r}")
        mv = self._model(model)
        dv = self._dataset(dataset)
        df = self._ws.data.load(dv)
        fitted = self._ws.registry.load(mv)
        columns = self._preflight(fitted, mv, dv, df)
        explanation = shap_explain(
            fitted,
            df,
            features=columns,
            target_class=target_class,
            method=method,
            baseline=baseline,
            n_clusters=n_clusters,
            n_samples=n_samples,
            max_rows=rows,
            seed=seed,
        )
        if isinstance(partial_dependence, bool):
            raise InvalidInput("partial_dependence must be a count ≥ 0 or feature names")
        if isinstance(partial_dependence, int):
            if partial_dependence < 0:
                raise InvalidInput("partial_dependence must be a count ≥ 0 or feature names")
            pd_features = list(explanation.ranking[:partial_dependence])
        elif isinstance(partial_dependence, str):
            pd_features = [partial_dependence]
        else:
            pd_features = list(partial_dependence)
        dependence = [
            dependence_of(
                fitted,
                df,
                feature,
                features=columns,
                target_class=target_class,
                grid_resolution=grid_resolution,
                seed=seed,
            )
            for feature in pd_features
        ]
        parameters = {
            **explanation.params,
            "rows": rows,
            "partial_dependence": pd_features,
            "grid_resolution": grid_resolution,
        }
        document = {
            "analysis": explanation.to_dict(),
            "local_shap": explanation.local_to_dict(),
            "partial_dependence": [p.to_dict() for p in dependence],
        }
        summary = {
            "label": explanation.label,
            "method": explanation.method,
            "rows": explanation.n_rows,
            "expected_value": explanation.expected_value,
            "global_shap_values": explanation.global_shap_values,
        }
        return self._record(
            "explanation",
            kinds=("global_shap", "local_shap"),
            dv=dv,
            mv=mv,
            parameters=parameters,
            body=document,
            summary=summary,
            started=started,
            html=html,
        )

    # -- reading ---------------------------------------------------------------------------

    def reports(
        self,
        *,
        model: str | ModelVersion | None = None,
        dataset: str | DatasetVersion | None = None,
    ) -> list[ReportInfo]:
        """Reports, newest first: about one model version, one dataset version, or all.

        Every report reads a dataset version, so "all" walks the graph from each dataset
        version (two steps downstream each).

        Raises:
            NotFound: No such model or dataset version.
        """
        if model is not None:
            starts = [self._model(model).lineage_ref]
        elif dataset is not None:
            starts = [self._dataset(dataset).lineage_ref]
        else:
            starts = [dv.lineage_ref for dv in self._ws.data.versions()]
        found: dict[str, ReportInfo] = {}
        for ref in starts:
            graph = self._ws.lineage.downstream(ref, depth=2)
            for node in graph.by_kind(REPORT_KIND):
                if node.ref not in found:
                    found[node.ref] = _info(node.ref, node.properties, node.created_at, node.user)
        infos = list(found.values())
        if dataset is not None and model is not None:
            wanted = self._dataset(dataset).ref
            infos = [i for i in infos if i.dataset == wanted]
        return sorted(infos, key=lambda i: (-i.created_at, i.id))

    def get_report(self, report_id: str) -> ClarifyReport:
        """A report by id (or ``clarify-report:ID``), its JSON verified against its digest.

        Raises:
            NotFound: No such report, or its file is missing.
            IntegrityError: The stored file no longer matches its digest.
        """
        rid = report_id.strip().removeprefix(_REF_PREFIX)
        if not rid:
            raise InvalidInput("give a report id")
        try:
            node = self._ws.lineage.node(f"{_REF_PREFIX}{rid}")
        except NotFound:
            raise NotFound(f"no clarify report {rid!r}") from None
        if node.kind != REPORT_KIND:
            raise NotFound(f"no clarify report {rid!r}")
        info = _info(node.ref, node.properties, node.created_at, node.user)
        document = json.loads(self._ws.artifacts.get_bytes(info.digest))
        return ClarifyReport(info, document)

    def write_html(
        self, report: str | ClarifyReport, path: str | os.PathLike[str]
    ) -> tuple[Path, Path]:
        """Write a report's HTML page to ``path`` and its JSON next to it (``.json``).

        Both files are written to a temporary name first and moved into place.

        Args:
            report: The report or its id.
            path: Where the HTML goes; the JSON takes the same name with ``.json``.

        Returns:
            The HTML path and the JSON path.

        Raises:
            NotFound: No such report.
            InvalidInput: ``path`` is a folder, or its folder cannot be written.
        """
        rep = report if isinstance(report, ClarifyReport) else self.get_report(report)
        _check_html_target(path)
        target = Path(path).expanduser()
        json_path = target.with_suffix(".json")
        if json_path == target:
            json_path = target.with_name(target.name + ".json")
        page = render_html(rep.document)
        data = json.dumps(rep.document, indent=2, allow_nan=False)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            _write_text(target, page)
            _write_text(json_path, data + "\n")
        except OSError as exc:
            raise InvalidInput(f"cannot write the report to {target}: {exc.strerror}") from None
        return target, json_path

    # -- internals -------------------------------------------------------------------------

    def _dataset(self, ref: str | DatasetVersion) -> DatasetVersion:
        return self._ws.data.get(ref) if isinstance(ref, str) else ref

    def _model(self, ref: str | ModelVersion) -> ModelVersion:
        return self._ws.registry.get(ref) if isinstance(ref, str) else ref

    def _preflight(
        self, fitted: Any, mv: ModelVersion, dv: DatasetVersion, df: pd.DataFrame
    ) -> list[str]:
        """The model's input columns, after checking that it predicts on a few rows.

        Raises:
            SchemaMismatch: Columns are missing, or the model raises on the first rows.
        """
        columns = mv.signature.columns or [str(c) for c in df.columns]
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise SchemaMismatch(
                f"dataset {dv.ref} lacks column(s) {', '.join(missing)} that model {mv.ref} reads"
            )
        if len(df) == 0:
            raise InvalidInput(f"dataset {dv.ref} has no rows")
        try:
            fitted.predict(df[columns].head(_PREFLIGHT_ROWS))
        except Exception as exc:
            raise SchemaMismatch(
                f"model {mv.ref} cannot predict on dataset {dv.ref}: "
                f"{type(exc).__name__}: {exc}".replace("\n", " ")
            ) from exc
        return columns

    def _record(
        self,
        report_type: str,
        *,
        kinds: tuple[str, ...],
        dv: DatasetVersion,
        mv: ModelVersion | None,
        parameters: dict[str, Any],
        body: dict[str, Any],
        summary: dict[str, Any],
        started: float,
        html: str | os.PathLike[str] | None,
    ) -> ClarifyReport:
        """Store the report's JSON, then record its lineage in one transaction."""
        rid = new_id()
        created_at = time.time()
        user = current_user()
        document = _strict(
            {
                "format": REPORT_FORMAT,
                "id": rid,
                "type": report_type,
                "kinds": list(kinds),
                "model": mv.ref if mv else None,
                "dataset": dv.ref,
                "created_at": created_at,
                "created_by": user,
                "parameters": parameters,
                **body,
            }
        )
        digest = self._ws.artifacts.put_bytes(
            json.dumps(document, allow_nan=False, sort_keys=False).encode()
        )
        properties = _strict(
            {
                "report_id": rid,
                "kinds": list(kinds),
                "subject": mv.lineage_ref if mv else dv.lineage_ref,
                "model": mv.ref if mv else None,
                "dataset": dv.ref,
                "digest": digest,
                "created_at": created_at,
                "summary": summary,
            }
        )
        inputs = [(dv.lineage_artifact_id, "data")]
        if mv is not None:
            inputs.append((mv.lineage_artifact_id, "model"))
        what = f"{mv.ref} on {dv.ref}" if mv else dv.ref
        with self._ws.metadata.write() as conn:
            artifact = self._ws.lineage.add_artifact(
                conn,
                kind=REPORT_KIND,
                ref=f"{_REF_PREFIX}{rid}",
                uri=f"sha256:{digest}",
                digest=digest,
                properties=properties,
            )
            self._ws.lineage.record_execution(
                conn,
                kind="clarify_bias" if report_type == "bias" else "clarify_explain",
                ref=f"clarify-{'bias' if report_type == 'bias' else 'explain'}:{rid}",
                name=f"clarify {report_type} of {what}",
                inputs=inputs,
                outputs=[(artifact, "report")],
                properties=_strict({"report_id": rid, "parameters": parameters}),
                started_at=started,
            )
        report = ClarifyReport(_info(f"{_REF_PREFIX}{rid}", properties, created_at, user), document)
        if html is not None:
            page, _ = self.write_html(report, html)
            report = ClarifyReport(report.info, report.document, str(page))
        return report


def _info(ref: str, props: dict[str, Any], created_at: float, user: str | None) -> ReportInfo:
    return ReportInfo(
        id=str(props.get("report_id") or ref.removeprefix(_REF_PREFIX)),
        kinds=tuple(props.get("kinds", ())),
        subject=str(props.get("subject", "")),
        model=props.get("model"),
        dataset=str(props.get("dataset", "")),
        digest=str(props.get("digest", "")),
        created_at=float(props.get("created_at") or created_at),
        created_by=user,
        summary=dict(props.get("summary") or {}),
    )


def _check_html_target(path: str | os.PathLike[str] | None) -> None:
    """Refuse an HTML path that is a folder before anything is computed or recorded."""
    if path is not None and Path(path).expanduser().is_dir():
        raise InvalidInput(f"{path} is a folder; give a file name such as report.html")


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{new_id()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _spec_json(spec: Any) -> Any:
    """A values-or-threshold argument as JSON: ``{"threshold": t}`` or the value(s)."""
    if spec is None:
        return None
    if isinstance(spec, Threshold):
        return {"threshold": json_scalar(spec.value)}
    if isinstance(spec, str | bytes) or not isinstance(spec, Sequence | set | frozenset):
        return json_scalar(spec)
    return [json_scalar(v) for v in spec]


def _methods_json(methods: str | Sequence[str]) -> str | list[str]:
    return methods if isinstance(methods, str) else list(methods)


def _strict(value: Any) -> Any:
    """``value`` as strict JSON data: NaN as ``None``, ±inf as ``"Infinity"``/``"-Infinity"``,
    NumPy scalars as Python numbers."""
    if isinstance(value, dict):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
    return value


# --------------------------------------------------------------------------------------------
# HTML pages


def render_html(document: dict[str, Any]) -> str:
    """A report as one self-contained HTML page: Plotly charts and tables, plotly.js inlined.

    Args:
        document: A report document (:attr:`ClarifyReport.document`).

    Returns:
        The page. It loads nothing from the network.

    Raises:
        InvalidInput: The document is not a Clarify report.
    """
    kind = document.get("type")
    if kind == "bias":
        title = f"Bias report {document.get('id', '')}"
        sections = _bias_sections(document)
    elif kind == "explanation":
        title = f"Explanation report {document.get('id', '')}"
        sections = _explanation_sections(document)
    else:
        raise InvalidInput(f"not a clarify report document (type {kind!r})")
    from plotly.offline import get_plotlyjs

    created = float(document.get("created_at") or 0.0)
    facts = [
        ("report", document.get("id")),
        ("kinds", ", ".join(document.get("kinds", []))),
        ("model", document.get("model") or "-"),
        ("dataset", document.get("dataset")),
        ("created (UTC)", time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(created))),
        ("by", document.get("created_by")),
    ]
    head = _table(("field", "value"), facts)
    params = _table(
        ("parameter", "value"),
        [(k, json.dumps(v)) for k, v in (document.get("parameters") or {}).items()],
    )
    body = "\n".join(
        f"<section><h2>{_esc(name)}</h2>\n{content}</section>" for name, content in sections
    )
    return (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        f"<title>{_esc(title)}</title>\n"
        f"<script type='text/javascript'>{get_plotlyjs()}</script>\n"
        f"<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{_esc(title)}</h1>\n{head}\n{body}\n"
        f"<section><h2>Parameters</h2>\n{params}</section>\n</body>\n</html>\n"
    )


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;font-size:.9em}"
    "th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}"
    "section{margin-bottom:2em}"
)


def _esc(value: Any) -> str:
    return html_text.escape("-" if value is None else str(value))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"<td class='num'>{value:.6g}</td>"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"<td class='num'>{value}</td>"
    return f"<td>{_esc(value)}</td>"


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{_esc(c)}</th>" for c in columns)
    body = "\n".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table>\n<tr>{head}</tr>\n{body}\n</table>"


def _figure(fig: Any) -> str:
    return str(fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False}))


def _number(value: Any) -> float | None:
    """A metric value for a chart: finite numbers only."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _bias_sections(document: dict[str, Any]) -> list[tuple[str, str]]:
    import plotly.graph_objects as go

    sections: list[tuple[str, str]] = []
    sizes = {
        (g["stage"], g["facet"], g["value_or_threshold"]): (g["n_d"], g["n_a"])
        for g in document.get("groups", [])
    }
    for key, section in document.get("analysis", {}).items():
        stage = key.removesuffix("_bias_metrics")
        fig = go.Figure()
        rows: list[tuple[Any, ...]] = []
        for facet, groups in section.get("facets", {}).items():
            for group in groups:
                value = group["value_or_threshold"]
                names = [m["name"] for m in group["metrics"]]
                fig.add_bar(
                    x=names,
                    y=[_number(m["value"]) for m in group["metrics"]],
                    name=f"{facet} = {value}",
                    hovertext=[m["description"] for m in group["metrics"]],
                )
                n_d, n_a = sizes.get((stage, facet, value), (None, None))
                rows.extend(
                    (
                        facet,
                        value,
                        n_d,
                        n_a,
                        m["name"],
                        m["description"],
                        m["value"],
                        m.get("error", ""),
                    )
                    for m in group["metrics"]
                )
        fig.update_layout(
            title=(
                f"{stage.replace('_', '-')} bias: label {section.get('label')} = "
                f"{section.get('label_value_or_threshold')} (facet d = the value shown)"
            ),
            barmode="group",
            showlegend=True,
            yaxis_title="metric value",
            height=420,
        )
        table = _table(
            ("facet", "facet d", "n_d", "n_a", "metric", "description", "value", "undefined"),
            rows,
        )
        sections.append((f"{stage.replace('_', '-').capitalize()} bias", _figure(fig) + table))
    return sections


def _explanation_sections(document: dict[str, Any]) -> list[tuple[str, str]]:
    import plotly.graph_objects as go

    local = document.get("local_shap", {})
    features: list[str] = local.get("features", [])
    label = local.get("label", "")
    classifier = (local.get("params") or {}).get("target_class") is not None
    what = f"probability of class {label}" if classifier else "prediction"
    values = np.asarray(local.get("shap_values") or np.zeros((0, len(features))), dtype=float)
    sections: list[tuple[str, str]] = []

    global_values: dict[str, float] = {}
    expected: float | None = None
    for entry in (
        document.get("analysis", {}).get("explanations", {}).get("kernel_shap", {}).values()
    ):
        global_values = entry.get("global_shap_values", {})
        expected = entry.get("expected_value")
    top = list(global_values)[:_TOP_SHOWN]
    bar = go.Figure(
        go.Bar(
            x=[global_values[f] for f in reversed(top)],
            y=list(reversed(top)),
            orientation="h",
            marker_color="#1f77b4",
        )
    )
    bar.update_layout(
        title=f"Mean |SHAP value| (explained: the {what})",
        xaxis_title="mean |SHAP value|",
        height=max(300, 28 * len(top) + 120),
    )
    facts = [
        ("explained output", what),
        ("method", local.get("method")),
        ("expected value (base)", expected),
        ("rows explained", int(values.shape[0])),
        ("baseline rows", len(local.get("baseline", []))),
    ] + [("note", n) for n in local.get("notes", [])]
    ranking = _table(("feature", "mean |SHAP|"), [(f, global_values[f]) for f in global_values])
    sections.append(
        ("Global importance", _figure(bar) + _table(("fact", "value"), facts) + ranking)
    )

    if values.size:
        swarm = _swarm(go, features, top, values, local.get("feature_values", []))
        sections.append(("SHAP values per row", _figure(swarm)))

    plots = []
    for dep in document.get("partial_dependence", []):
        fig = go.Figure()
        if dep["kind"] == "categorical":
            fig.add_bar(x=[str(v) for v in dep["values"]], y=dep["average"])
        else:
            fig.add_scatter(x=dep["values"], y=dep["average"], mode="lines+markers")
        fig.update_layout(
            title=f"Partial dependence on {dep['feature']} ({dep['n_rows']} rows)",
            xaxis_title=dep["feature"],
            yaxis_title=f"average {what}",
            height=360,
        )
        plots.append(_figure(fig))
    if plots:
        sections.append(("Partial dependence", "\n".join(plots)))
    return sections


def _swarm(
    go: Any,
    features: list[str],
    top: list[str],
    values: np.ndarray,
    feature_values: list[list[Any]],
) -> Any:
    """A beeswarm-like chart: one point per row and feature, coloured by the feature's value."""
    rng = np.random.default_rng(0)
    xs: list[float] = []
    ys: list[float] = []
    colours: list[float] = []
    texts: list[str] = []
    shown = list(reversed(top))
    for position, feature in enumerate(shown):
        j = features.index(feature)
        column = pd.Series([row[j] if j < len(row) else None for row in feature_values])
        colours.extend(_relative(column))
        xs.extend(float(v) for v in values[:, j])
        ys.extend(float(position + d) for d in rng.uniform(-0.3, 0.3, size=int(values.shape[0])))
        texts.extend(f"{feature} = {v}" for v in column)
    fig = go.Figure(
        go.Scattergl(
            x=xs,
            y=ys,
            mode="markers",
            text=texts,
            hovertemplate="%{text}<br>SHAP %{x:.4g}<extra></extra>",
            marker={
                "color": colours,
                "colorscale": "RdBu_r",
                "cmin": 0,
                "cmax": 1,
                "size": 6,
                "opacity": 0.75,
                "colorbar": {"title": "feature value<br>(low → high)"},
            },
        )
    )
    fig.update_layout(
        title="SHAP value of every explained row (colour: the row's value of the feature)",
        xaxis_title="SHAP value",
        yaxis={"tickmode": "array", "tickvals": list(range(len(shown))), "ticktext": shown},
        height=max(300, 32 * len(shown) + 120),
        showlegend=False,
    )
    return fig


def _relative(column: pd.Series) -> list[float]:
    """Values placed in [0, 1] by rank (categories by order of first appearance); missing: 0.5."""
    numbers = pd.to_numeric(column, errors="coerce")
    if numbers.notna().sum() == column.notna().sum() and numbers.notna().any():
        ranks = numbers.rank(pct=True)
    else:
        codes, _ = pd.factorize(column)
        ranks = pd.Series(np.where(codes < 0, np.nan, codes), dtype=float)
        top = ranks.max()
        ranks = ranks / top if top and top > 0 else ranks * 0.0 + 0.5
    return [0.5 if pd.isna(r) else float(r) for r in ranks]
