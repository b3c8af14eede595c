"""Typed episode columns accept only real bools / ints / numbers, and per-step arrays only number dtypes:
a refused finish() commits nothing and leaves the writer usable; verify copes with every dtype on disk."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from sime_data.errors import MetadataTypeError, UnsupportedDtypeError
from sime_data.verify import verify


def _steps(writer, n: int = 5) -> None:
    for t in range(n):
        writer.add_step(obs={"pos": np.full(3, t, np.float32)}, action=np.array([t, -t], np.float64))


@pytest.mark.parametrize("field,value", [
    ("success", "False"), ("success", "0"), ("success", math.nan), ("success", 0), ("success", 1.0),
    ("success", np.float64(1.0)), ("trial", 1.7), ("trial", 2.0), ("trial", "3"), ("trial", True),
    ("trial", np.float32(1)), ("round", "1"), ("seed", 1e9), ("noise_scale", "0.5"), ("tau1", True),
    ("task", 3), ("init_state_id", 1.5),
])
def test_finish_refuses_wrongly_typed_values_and_stays_usable(store, field, value):
    with store.writer(source="rollout", task="lift") as w:
        _steps(w)
        with pytest.raises(MetadataTypeError, match=rf"{field}={value!r}".replace("(", r"\(").replace(")", r"\)")) as info:
            w.finish(**{field: value})
        assert "Nothing was committed" in str(info.value)
        assert store.episodes().empty and w.steps_in_flight == 5
        eid = w.finish(success=True, trial=1)  # the same episode, all its steps, committed after the refusal
    row = store.episode(eid)
    assert row["length"] == 5 and row["success"] is True and row["trial"] == 1
    np.testing.assert_array_equal(store.read_episode(eid)["obs/pos"][:, 0], np.arange(5))
    assert verify(store).ok


def test_add_episode_refuses_before_writing(store):
    with store.writer(source="import", task="lift") as w:
        with pytest.raises(MetadataTypeError, match="success='yes'"):
            w.add_episode({"actions": np.zeros((4, 2))}, success="yes")
        eid = w.add_episode({"actions": np.zeros((4, 2))}, success=False)
    assert store.episodes()["episode_id"].tolist() == [eid]


def test_numpy_bools_and_integers_are_accepted(store):
    with store.writer(source="rollout", task="lift", round=np.int64(2), noise_scale=np.float32(0.25)) as w:
        _steps(w)
        eid = w.finish(success=np.bool_(True), trial=np.int32(3), seed=np.uint64(7), episode_return=math.nan,
                       init_state_id=4)
    row = store.episode(eid)
    assert (row["success"], row["trial"], row["seed"], row["round"], row["init_state_id"]) == (True, 3, 7, 2, "4")
    assert row["noise_scale"] == 0.25 and math.isnan(row["episode_return"])


def test_writer_defaults_are_checked_up_front(store):
    with pytest.raises(MetadataTypeError, match="round='1'"):
        store.writer(source="rollout", task="lift", round="1")
    assert not list(Path(store.sfs.path("locks")).glob("*.json"))  # no writer (and no lock) was made


@pytest.mark.parametrize("value", [np.array("text"), np.array(b"bytes"), np.array(np.datetime64("2024-01-01")),
                                   np.array(np.timedelta64(5, "s")), np.array({"a": 1}, dtype=object),
                                   np.zeros(2, dtype=[("x", "f4"), ("y", "i4")])])
def test_non_number_step_arrays_are_refused(store, value):
    with store.writer(source="rollout", task="lift") as w:
        with pytest.raises(UnsupportedDtypeError, match=r"obs/v.*bools or numbers"):
            w.add_step(obs={"v": value}, action=np.zeros(2))
        with pytest.raises(UnsupportedDtypeError, match="'obs/v'"):
            w.add_episode({"obs": {"v": np.stack([value, value])}, "actions": np.zeros((2, 2))})
        _steps(w)  # the writer is still usable
        w.finish()
    assert len(store.episodes()) == 1 and verify(store).ok


@pytest.mark.filterwarnings("ignore:The data type")
def test_verify_reports_instead_of_crashing_on_text_arrays(store, monkeypatch):
    """Stores written before the dtype rule may hold text/bytes arrays: verify checks them instead of raising."""
    import sime_data.segment
    import sime_data.writer

    with monkeypatch.context() as m:  # write the way the older writer did (it had no dtype rule)
        m.setattr(sime_data.segment, "check_dtype", lambda key, dtype: None)
        m.setattr(sime_data.writer, "check_dtype", lambda key, dtype: None)
        with store.writer(source="rollout", task="lift") as w:
            for t in range(3):
                w.add_step(obs={"label": np.array(f"t{t}"), "raw": np.array(b"ab")}, action=np.zeros(2))
            w.finish()
    report = verify(sime_data.open_store(store.location), deep=True)
    assert report.n_episodes == 1 and report.n_chunks_checked > 0, report.summary()
