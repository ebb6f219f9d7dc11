"""The practice catalog matches the lens: counts per pillar, phase, mode and risk; titles."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from wellml.lens.catalog import get_practice, load_practices, validate

SEED = Path(__file__).resolve().parents[3] / "shared" / "seed"


def test_there_are_105_practices_in_the_right_pillars_and_phases() -> None:
    ps = load_practices()
    assert len(ps) == 105
    assert Counter(p.pillar for p in ps) == {
        "operational-excellence": 16,
        "security": 13,
        "reliability": 13,
        "performance-efficiency": 18,
        "cost-optimization": 29,
        "sustainability": 16,
    }
    assert Counter(p.phase for p in ps) == {
        "business-goal": 8,
        "problem-framing": 15,
        "data-processing": 18,
        "model-development": 34,
        "deployment": 13,
        "monitoring": 17,
    }
    assert Counter(p.mode for p in ps) == {"auto": 85, "proxy": 5, "decl": 5, "manual": 10}
    assert Counter(p.risk for p in ps) == {"high": 39, "medium": 66}


def test_manual_practices_ask_a_question_with_passing_and_failing_answers() -> None:
    manual = [p for p in load_practices() if p.mode == "manual"]
    assert sorted(p.id for p in manual) == sorted(
        [
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
    )
    for p in manual:
        assert p.question and p.question.endswith("?")
        assert any(c.passes for c in p.choices) and any(not c.passes for c in p.choices)


def test_every_practice_names_the_capabilities_it_needs() -> None:
    for p in load_practices():
        assert p.capabilities, p.id
        assert p.check, p.id


@pytest.mark.skipif(not SEED.is_dir(), reason="the lens summary is not beside the repository")
def test_titles_and_ids_match_the_lens_summary() -> None:
    text = "\n".join(f.read_text() for f in SEED.glob("*.txt"))
    seed = dict(re.findall(r"• (ML[A-Z]+-\d+): (.+)", text))
    assert {p.id: p.title for p in load_practices()} == {k: v.strip() for k, v in seed.items()}


def test_unknown_ids_and_malformed_data_are_refused() -> None:
    with pytest.raises(KeyError):
        get_practice("MLOE-99")
    ps = list(load_practices())
    with pytest.raises(ValueError, match="105"):
        validate(ps[:-1])
    with pytest.raises(ValueError, match="duplicate"):
        validate([*ps[:-1], ps[0]])
    with pytest.raises(ValueError, match="pillar"):
        validate([replace(ps[0], pillar="speed"), *ps[1:]])
