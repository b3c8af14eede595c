"""The pure-Python trim queue, name suggestions, chart helpers and the CLI command line."""

from __future__ import annotations

import pandas as pd
import pytest

from curation_app.charts import lineage_dot, removed_ranges, version_kind
from curation_app.cli import build_command, main
from curation_app.saving import suggest_name
from curation_app.trims import TrimQueue, intersect, normalise, subtract


def test_range_helpers() -> None:
    assert normalise([(5, 8), (0, 3), (2, 4), (9, 9)]) == [(0, 4), (5, 8)]
    assert subtract([(0, 10)], (3, 5)) == [(0, 3), (5, 10)]
    assert subtract([(0, 10)], (0, 10)) == []
    assert intersect([(0, 10)], [(2, 4), (8, 12)]) == [(2, 4), (8, 10)]
    assert removed_ranges(10, [(2, 4), (6, 8)]) == [(0, 2), (4, 6), (8, 10)]


def test_queue_window_cut_drop() -> None:
    q = TrimQueue("base", {"a": [(0, 20)], "b": [(0, 10)], "c": [(2, 8)]})
    assert q.changed() == [] and "nothing queued" in q.problems()[0]
    q.set_window("a", 3, 18)
    q.remove_segment("a", 8, 10)
    assert q.keep_ranges("a") == [(3, 8), (10, 18)]
    q.drop("b")
    assert q.trims() == {"a": [(3, 8), (10, 18)]} and q.drops() == ["b"]
    assert q.frames() == (20 + 10 + 6, 13 + 0 + 6)
    q.restore_segment("a", 0)
    assert q.keep_ranges("a") == [(3, 18)]
    q.drop("b", False)
    assert q.changed() == ["a"]
    # a window wider than the base keeps only the base's frames; the base window is the default
    assert q.window("c") == (2, 8)
    q.set_window("c", 0, 8)
    assert not q.is_changed("c")
    q.reset("a")
    assert q.changed() == []


def test_queue_problems_and_navigation() -> None:
    q = TrimQueue("base", {"a": [(0, 10)], "b": [(0, 10)]})
    q.set_window("a", 0, 4)
    q.remove_segment("a", 0, 4)
    assert "remove every frame" in q.problems()[0]
    q.reset("a")
    q.drop("a")
    q.drop("b")
    assert any("every episode is dropped" in p for p in q.problems())
    assert q.neighbour("a", 1) == "b" and q.neighbour("b", 1) == "b" and q.neighbour("a", -1) == "a"
    with pytest.raises(ValueError):
        q.set_window("a", 5, 5)
    with pytest.raises(KeyError):
        q.keep_ranges("zzz")


def test_suggest_name() -> None:
    assert suggest_name("v", []) == "v"
    assert suggest_name("v", ["v"]) == "v-2"
    assert suggest_name("v-2", ["v", "v-2", "v-3"]) == "v-4"


def test_lineage_dot_and_kinds() -> None:
    versions = pd.DataFrame({
        "name": ["demos", "sel", "train"], "parents": [[], ["demos"], ["demos", "sel"]],
        "rule": [None, '{"kind": "selection", "rule": "sr_lss"}', '{"kind": "union"}'],
        "n_episodes": [4, 2, 6], "n_frames": [40, 20, 60], "success_rate": [1.0, None, 1.0]})
    dot = lineage_dot(versions, highlight="sel")
    assert '"demos" -> "sel"' in dot and '"sel" -> "train"' in dot and "penwidth" in dot
    assert version_kind(None, []) == "root" and version_kind('{"kind": "trim"}', ["x"]) == "trim"


def test_cli_command_and_bad_store(tmp_path, capsys) -> None:
    cmd = build_command("/data/s", port=8555, host="127.0.0.1", headless=True)
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[-2:] == ["--store", "/data/s"]
    assert "8555" in cmd and "127.0.0.1" in cmd
    assert main(["--store", str(tmp_path / "nothing")]) == 2
    assert "no SIME store" in capsys.readouterr().err


def test_image_key_detection_and_display() -> None:
    import numpy as np

    from curation_app.frames import image_keys, lowdim_obs_keys, to_display
    from sime_data.segment import KeySpec

    specs = {"obs/agentview_image": KeySpec((84, 84, 3), "|u1"), "obs/depth": KeySpec((64, 64), "<f4"),
             "obs/eef_pos": KeySpec((3,), "<f4"), "states": KeySpec((45,), "<f8"),
             "obs/big_vector": KeySpec((2048,), "<f4")}
    assert image_keys(specs) == ["obs/agentview_image", "obs/depth"]
    assert lowdim_obs_keys(specs) == ["obs/big_vector", "obs/eef_pos"]
    depth = to_display(np.linspace(0, 5, 64 * 64, dtype=np.float32).reshape(64, 64))
    assert depth.dtype == np.uint8 and depth.min() == 0 and depth.max() == 255


def test_filmstrip_draws_the_trim_window() -> None:
    import numpy as np

    from curation_app.media import KEPT_RGB, REMOVED_RGB, compose_filmstrip, filmstrip_indices

    indices = filmstrip_indices(16, 4)
    assert indices == [0, 5, 10, 15] and filmstrip_indices(3, 12) == [0, 1, 2]
    thumbs = np.full((4, 8, 8, 3), 200, np.uint8)
    strip = compose_filmstrip(thumbs, indices, 16, [(4, 12)], current=8, gap=2, band=6)
    assert strip.shape == (8 + 6 + 3, 4 * 8 + 3 * 2, 3)
    bar = strip[-1]
    assert tuple(bar[0]) == REMOVED_RGB and tuple(bar[-1]) == REMOVED_RGB and tuple(bar[12]) == KEPT_RGB
    assert strip[:8, :8].mean() < 150 and (strip[:8, 10:18] == 200).all()  # frame 0 removed: dimmed; frame 5 kept


def test_rollout_kinds_from_rule_or_name() -> None:
    from curation_app.runs import group_label, rollout_kind

    assert rollout_kind("lift/sime/quick/seed233/round0/eval") == ("eval", None)
    assert rollout_kind("lift/sime/quick/seed233/sime/round1/explore") == ("explore", "sime")
    assert rollout_kind("anything", '{"pipeline_kind": "collect", "branch": "baseline"}') == ("collect", "baseline")
    assert rollout_kind("lift/core_5", '{"kind": "core_subset"}') is None
    assert group_label("eval", None) == "eval" and group_label("eval", "sime") == "sime eval"


def test_round_rates_split_run_kinds_and_name_other_episodes_by_source() -> None:
    import pandas as pd

    from curation_app.runs import rates_by_group

    episodes = pd.DataFrame({
        "episode_id": ["e1", "e2", "c1", "c2", "s1", "u1", "d1"],
        "round": [0, 0, 0, 0, 1, 1, None],
        "branch": [None, None, None, None, "sime", None, None],
        "source": ["rollout", "rollout", "rollout", "curated", "rollout", "rollout", "demo"],
        "success": [True, False, True, True, False, True, True],
    })
    groups = {"e1": "eval", "e2": "eval", "c1": "explore"}
    rates = rates_by_group(episodes, groups)
    got = {(r, g): (n, sr) for r, g, n, sr in rates[["round", "group", "episodes", "success_rate"]].itertuples(index=False)}
    assert got == {("0", "eval"): (2, 0.5), ("0", "explore"): (1, 1.0), ("0", "curated"): (1, 1.0),
                   ("1", "sime"): (1, 0.0), ("1", "unlabelled"): (1, 1.0)}
    assert list(rates["group"][rates["round"] == "0"]) == ["eval", "explore", "curated"]  # run kinds first


def test_a_reused_round_is_counted_under_its_own_round() -> None:
    import pandas as pd

    from curation_app.runs import rates_by_group, reused_rollouts

    versions = pd.DataFrame({
        "name": ["lift/sime/q/seed1/round0/eval", "lift/sime/q/seed1/baseline/round1/eval",
                 "lift/sime/q/seed1/sime/round1/eval"],
        "rule": ['{"pipeline_kind": "eval", "round": 0}',
                 '{"pipeline_kind": "eval", "round": 0, "carried_over_from": "lift/sime/q/seed1/round0/eval"}',
                 '{"pipeline_kind": "eval", "round": 1, "branch": "sime"}'],
    })
    members = {versions["name"][0]: {"e1": [], "e2": []}, versions["name"][1]: {"e1": [], "e2": []},
               versions["name"][2]: {"s1": [], "s2": []}}
    reused = reused_rollouts(versions, members.__getitem__)
    assert reused == [(1, "baseline eval", ["e1", "e2"])]
    episodes = pd.DataFrame({"episode_id": ["e1", "e2", "s1", "s2"], "round": [0, 0, 1, 1],
                             "branch": [None, None, "sime", "sime"], "source": ["rollout"] * 4,
                             "success": [True, False, True, True]})
    groups = {"e1": "eval", "e2": "eval", "s1": "sime eval", "s2": "sime eval"}
    rates = rates_by_group(episodes, groups, reused)
    got = {(r, g): (n, sr, u) for r, g, n, sr, u in
           rates[["round", "group", "episodes", "success_rate", "reused"]].itertuples(index=False)}
    assert got == {("0", "eval"): (2, 0.5, False), ("1", "baseline eval"): (2, 0.5, True),
                   ("1", "sime eval"): (2, 1.0, False)}
    assert rates_by_group(episodes, groups).shape[0] == 2  # without the reuse: no baseline bar in round 1
