"""The practice catalog: complete, matching the lens, and strict about malformed data."""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from wellml.lens.catalog import (
    PHASES,
    PILLAR_PREFIX,
    PILLARS,
    Choice,
    Practice,
    get_practice,
    load_practices,
    parse_practices,
)

SEED_DIR = Path("/work/shared/seed")

MANUAL_IDS = [
    "MLOE-01",
    "MLPER-02",
    "MLPER-11",
    "MLCOST-02",
    "MLCOST-03",
    "MLCOST-04",
    "MLCOST-06",
    "MLCOST-12",
    "MLSUS-02",
    "MLSUS-03",
]

# Headings of the seed's per-phase sections, mapped to the catalog's phase names.
SEED_PHASES = {
    "Business Goal Identification Phase": "business-goal",
    "ML Problem Framing Phase": "problem-framing",
    "Data Processing Phase": "data-processing",
    "Model Development Phase": "model-development",
    "Deployment Phase": "deployment",
    "Monitoring Phase": "monitoring",
}


def _raw_document() -> dict[str, Any]:
    text = resources.files("wellml.lens").joinpath("practices.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def _seed_practices() -> dict[str, tuple[str, str]]:
    """Practice id -> (title, phase) as listed in the lens summary."""
    found: dict[str, tuple[str, str]] = {}
    for path in sorted(SEED_DIR.glob("*.txt")):
        phase = None
        for line in path.read_text(encoding="utf-8").splitlines():
            heading = re.match(r"^### (.+?)\s*$", line)
            if heading:
                phase = SEED_PHASES.get(heading.group(1))
                continue
            item = re.match(r"^• (ML[A-Z]+-\d+): (.+?)\s*$", line)
            if item and phase:
                found[item.group(1)] = (item.group(2), phase)
    return found


def test_the_catalog_holds_105_practices_with_unique_ids() -> None:
    practices = load_practices()
    assert len(practices) == 105
    assert len({p.id for p in practices}) == 105
    assert all(isinstance(p, Practice) for p in practices)


def test_counts_per_pillar_match_the_lens() -> None:
    assert Counter(p.pillar for p in load_practices()) == {
        "operational-excellence": 16,
        "security": 13,
        "reliability": 13,
        "performance-efficiency": 18,
        "cost-optimization": 29,
        "sustainability": 16,
    }


def test_counts_per_phase_match_the_lens() -> None:
    assert Counter(p.phase for p in load_practices()) == {
        "business-goal": 8,
        "problem-framing": 15,
        "data-processing": 18,
        "model-development": 34,
        "deployment": 13,
        "monitoring": 17,
    }


def test_mode_counts_and_the_ten_manual_practices() -> None:
    practices = load_practices()
    assert Counter(p.mode for p in practices) == {"auto": 85, "proxy": 5, "decl": 5, "manual": 10}
    assert [p.id for p in practices if p.mode == "manual"] == MANUAL_IDS


def test_risk_counts() -> None:
    assert Counter(p.risk for p in load_practices()) == {"high": 39, "medium": 66}


def test_practices_are_ordered_by_pillar_then_number_with_matching_prefixes() -> None:
    practices = load_practices()
    assert [p.id for p in practices[:2]] == ["MLOE-01", "MLOE-02"]
    assert practices[-1].id == "MLSUS-16"
    keys = [(PILLARS.index(p.pillar), int(p.id.split("-")[1])) for p in practices]
    assert keys == sorted(keys)
    assert all(p.id.startswith(PILLAR_PREFIX[p.pillar] + "-") for p in practices)
    assert {p.phase for p in practices} == set(PHASES)


def test_every_manual_practice_asks_a_question_that_can_pass_and_fail() -> None:
    for practice_id in MANUAL_IDS:
        p = get_practice(practice_id)
        assert p.question and p.question.endswith("?"), practice_id
        assert any(c.passes for c in p.choices), practice_id
        assert any(not c.passes for c in p.choices), practice_id
        assert all(c.text for c in p.choices), practice_id


def test_manual_answer_keys_follow_the_lens_map() -> None:
    # The review engine and stored answers refer to choices by key, so pin one mapping.
    assert [(c.key, c.passes) for c in get_practice("MLOE-01").choices] == [
        ("a", False),
        ("b", False),
        ("c", True),
        ("d", True),
    ]


def test_automated_practices_carry_no_question() -> None:
    for p in load_practices():
        if p.mode != "manual":
            assert p.question is None and p.choices == (), p.id
        assert p.check.strip(), p.id


def test_capabilities_put_the_primary_first_and_keep_optional_ones_apart() -> None:
    lineage = get_practice("MLOE-07")
    assert lineage.capabilities == ("lin", "reg", "exp")
    assert lineage.optional_capabilities == ("ep", "fs")
    assert get_practice("MLSUS-14").capabilities == ("ep",)
    assert get_practice("MLSUS-14").optional_capabilities == ()
    assert all(p.capabilities[0] == "lens" for p in load_practices() if p.mode == "manual")


@pytest.mark.skipif(not SEED_DIR.is_dir(), reason=f"the lens summary {SEED_DIR} is not present")
def test_ids_titles_and_phases_equal_the_lens_summary() -> None:
    seed = _seed_practices()
    assert len(seed) == 105
    assert {p.id: (p.title, p.phase) for p in load_practices()} == seed


def test_the_document_names_the_lens_and_a_version() -> None:
    data = _raw_document()
    assert data["lens"] == "machine-learning"
    assert isinstance(data["version"], str) and data["version"]


def test_get_practice_finds_a_known_id() -> None:
    p = get_practice("MLREL-13")
    assert p.title == "Ensure a recoverable endpoint with a managed version control strategy"
    assert (p.phase, p.pillar, p.mode, p.risk) == ("monitoring", "reliability", "auto", "high")


@pytest.mark.parametrize("practice_id", ["MLOE-99", "mloe-01", "", "MLXX-01"])
def test_get_practice_refuses_an_unknown_id(practice_id: str) -> None:
    with pytest.raises(KeyError, match="unknown lens practice id"):
        get_practice(practice_id)


def test_loading_is_cached_and_practices_are_immutable() -> None:
    assert load_practices() is load_practices()
    with pytest.raises(dataclasses.FrozenInstanceError):
        load_practices()[0].title = "changed"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        Choice("a", "text", True).passes = False  # type: ignore[misc]


def test_the_shipped_document_parses_to_the_loaded_catalog() -> None:
    assert parse_practices(_raw_document()) == load_practices()


def _broken(edit: Any) -> dict[str, Any]:
    data = _raw_document()
    edit(data["practices"])
    return data


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda ps: ps.pop(), "105"),
        (lambda ps: ps.__setitem__(-1, dict(ps[0])), "duplicate practice ids: MLOE-01"),
        (lambda ps: ps[0].update(pillar="speed"), "pillar 'speed'"),
        (lambda ps: ps[0].update(phase="training"), "phase 'training'"),
        (lambda ps: ps[1].update(mode="magic"), "mode 'magic'"),
        (lambda ps: ps[1].update(risk="low"), "risk 'low'"),
        (lambda ps: ps[1].update(capabilities=["gpu"]), "unknown capability codes gpu"),
        (lambda ps: ps[1].pop("title"), "missing field 'title'"),
        (lambda ps: ps[1].update(capabilities="spec"), "'capabilities' must be list"),
        (lambda ps: ps[0].pop("question"), "without a question"),
        (
            lambda ps: [c.update(passes=True) for c in ps[0]["choices"]],
            "one passing and one failing",
        ),
        (lambda ps: ps[1].update(question="Why?"), "must not carry a question"),
        (lambda ps: ps[1].update(id="MLSEC-99"), "MLOE-NN"),
        (lambda ps: ps.insert(0, ps.pop(1)), "ordered by pillar"),
    ],
)
def test_malformed_data_is_refused_with_a_clear_message(edit: Any, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_practices(_broken(edit))


@pytest.mark.parametrize(
    "document", [[], {"lens": "machine-learning"}, {"lens": "serverless", "practices": []}]
)
def test_a_document_of_the_wrong_shape_is_refused(document: Any) -> None:
    with pytest.raises(ValueError):
        parse_practices(document)
