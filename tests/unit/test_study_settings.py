"""A study's settings, the refusal of unsafe designs, and the wall clock that survives a killed part."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from sime_policy.pipeline import get_pipeline_preset
from sime_policy.pipeline.study import StudyConfig, WallClock, check_study, check_study_file, replicate_config


def test_a_killed_part_keeps_its_time_and_the_next_part_adds_to_it(tmp_path: Path) -> None:
    path = tmp_path / "replicate.json"
    with WallClock(path, {"run": "s-r001"}, every_s=0.02):
        time.sleep(0.15)                                  # then the process is killed: no finish()
    first = json.loads(path.read_text())
    assert first["done"] is False and first["parts"] == 1 and first["wall_s"] >= 0.1 - 0.03
    with WallClock(path, {"run": "s-r001"}, every_s=10.0) as clock:
        time.sleep(0.05)
        record = clock.finish()
    assert record["done"] is True and record["parts"] == 2 and record["wall_s"] >= first["wall_s"] + 0.05
    assert json.loads(path.read_text()) == record


def test_replicates_draw_their_own_states_and_the_confirmatory_seed() -> None:
    base = get_pipeline_preset("quick-study")
    assert base.eval_states_seed == 300_000 and base.eval_states_seed != get_pipeline_preset("quick").eval_states_seed
    study = StudyConfig(name="s", replicates=3).validate()
    configs = [replicate_config(base, study, k) for k in (1, 2, 3)]
    assert [c.eval_states_seed for c in configs] == [300_001, 300_002, 300_003]
    assert [c.states_seed for c in configs] == [base.states_seed + k for k in (1, 2, 3)]
    assert len({c.seeds for c in configs}) == 3 and [c.name for c in configs] == ["s-r001", "s-r002", "s-r003"]
    shared = replicate_config(base, StudyConfig(name="s", shared_collection_states=True), 2)
    assert shared.states_seed == base.states_seed


@pytest.mark.parametrize("updates, message", [
    ({"eval_states": 0}, "held-out evaluation states"),
    ({"rounds": 2}, "one SIME round"),
    ({"eval_states_seed": 100_010}, "more than --replicates"),
])
def test_unsafe_study_designs_are_refused(updates: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_study(get_pipeline_preset("quick-study").with_updates(**updates), StudyConfig(replicates=16))


def test_a_study_resumes_only_with_its_own_settings(tmp_path: Path) -> None:
    base = get_pipeline_preset("quick-study")
    check_study_file(tmp_path, base, StudyConfig(name="s", replicates=4))
    check_study_file(tmp_path, base, StudyConfig(name="s", replicates=8, parallel=2))   # extending is fine
    with pytest.raises(ValueError, match="threshold differ"):
        check_study_file(tmp_path, base.with_updates(threshold=0.4), StudyConfig(name="s", replicates=8))
    with pytest.raises(ValueError, match="study_seed differ"):
        check_study_file(tmp_path, base, StudyConfig(name="s", replicates=8, study_seed=1))
    with pytest.raises(ValueError, match="replicates must be a positive integer"):
        StudyConfig(replicates=0).validate()
