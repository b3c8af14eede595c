"""Import of the reference's real-world recording folders: round trip, clear errors, nothing partial."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import sime_data
from hardware import geometry as geo
from hardware.cli import main
from hardware.errors import RecordingFormatError
from hardware.import_real import import_recordings

SERIALS = ("135122079702", "242322072982")


def make_recording(root: Path, start_ms: int, n: int = 4, finished: bool = True) -> tuple[Path, dict]:
    """A synthetic recording folder laid out like the reference recorder's, plus what it holds."""
    path = root / str(start_ms)
    stamps = [start_ms + 100 * i for i in range(n)]
    rng = np.random.default_rng(start_ms)
    truth = {"stamps": stamps, "tcp": [], "width": [], "color": [], "depth": []}
    for serial in SERIALS:
        (path / f"cam_{serial}" / "color").mkdir(parents=True)
        (path / f"cam_{serial}" / "depth").mkdir(parents=True)
    for sub in ("tcp", "joint", "gripper_command"):
        (path / sub).mkdir(parents=True)
    for i, ms in enumerate(stamps):
        tcp = np.array([0.5 + 0.01 * i, 0.0, 0.2, 0.0, 0.0, 1.0, 0.0])
        np.save(path / "tcp" / f"{ms}.npy", tcp)
        np.save(path / "joint" / f"{ms}.npy", np.arange(7.0) + i)
        np.save(path / "gripper_command" / f"{ms}.npy", [0.085 - 0.02 * i])
        truth["tcp"].append(tcp)
        truth["width"].append(0.085 - 0.02 * i)
        for serial in SERIALS:
            color = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
            depth = rng.integers(0, 4000, (12, 16), dtype=np.uint16)
            Image.fromarray(color).save(path / f"cam_{serial}" / "color" / f"{ms}.png")
            Image.fromarray(depth).save(path / f"cam_{serial}" / "depth" / f"{ms}.png")
            truth["color"].append(color)
            truth["depth"].append(depth)
    if finished:
        (path / "metadata.json").write_text(json.dumps({"finish_time": stamps[-1] + 50}))
    return path, truth


def test_round_trip(tmp_path: Path) -> None:
    _, truth_a = make_recording(tmp_path / "rec", 1700000000000)
    make_recording(tmp_path / "rec", 1700000100000, n=3)
    store = sime_data.init_store(tmp_path / "store")
    ids = import_recordings(store, [tmp_path / "rec"], task="mug", camera_names={SERIALS[0]: "wrist"},
                            version="real/demos")
    assert len(ids) == 2 and store.version("real/demos").episode_ids == ids
    row = store.episode(ids[0])
    assert row["source"] == "import" and row["task"] == "mug" and row["length"] == 4 and row["success"]
    assert json.loads(row["meta"])["finish_time"] == truth_a["stamps"][-1] + 50
    data = store.read_episode(ids[0])
    np.testing.assert_allclose(data["timestamps"], np.array(truth_a["stamps"]) / 1000.0)
    np.testing.assert_allclose(data["obs/tcp_pose"], truth_a["tcp"])
    np.testing.assert_allclose(data["obs/gripper_width"][:, 0], truth_a["width"])
    np.testing.assert_array_equal(data["obs/wrist_color"][1], truth_a["color"][2])  # frame 1, first camera
    np.testing.assert_array_equal(data[f"obs/cam_{SERIALS[1]}_depth"][0], truth_a["depth"][1])
    assert data["obs/wrist_depth"].dtype == np.uint16 and data["obs/joints"].shape == (4, 7)
    expected = geo.pose_to_action(truth_a["tcp"][3], geo.width_to_command(truth_a["width"][3], 0.085))
    np.testing.assert_allclose(data["actions"][3], expected)
    assert store.episode(ids[1])["length"] == 3


@pytest.mark.parametrize("breakage, message", [
    (lambda p: (p / "metadata.json").unlink(), "never finished"),
    (lambda p: (p / "metadata.json").write_text("{}"), "integer finish_time"),
    (lambda p: shutil.rmtree(p / "gripper_command"), "missing the gripper_command/ folder"),
    (lambda p: next((p / f"cam_{SERIALS[1]}" / "depth").iterdir()).unlink(), "frame(s) missing that tcp/ has"),
    (lambda p: (p / "tcp" / "oops.npy").write_bytes(b""), "millisecond timestamps"),
    (lambda p: [shutil.rmtree(c) for c in p.glob("cam_*")], "no cam_<serial>/ folders"),
])
def test_malformed_folders_fail_clearly_and_write_nothing(tmp_path: Path, breakage, message) -> None:
    make_recording(tmp_path / "rec", 1700000000000)
    bad, _ = make_recording(tmp_path / "rec", 1700000200000)
    breakage(bad)
    store = sime_data.init_store(tmp_path / "store")
    with pytest.raises(RecordingFormatError) as info:
        import_recordings(store, [tmp_path / "rec"])
    assert message in str(info.value)
    assert store.episodes().empty


def test_bad_file_content_mid_import_leaves_nothing(tmp_path: Path, capsys) -> None:
    make_recording(tmp_path / "rec", 1700000000000)
    bad, truth = make_recording(tmp_path / "rec", 1700000300000)
    (bad / "tcp" / f"{truth['stamps'][-1]}.npy").write_bytes(b"not numpy")  # found only while importing
    store = sime_data.init_store(tmp_path / "store")
    assert main(["import-real", "--store", str(tmp_path / "store"), str(tmp_path / "rec")]) == 2
    assert "not a readable .npy" in capsys.readouterr().err
    assert store.episodes().empty and not list((tmp_path / "store" / "data").glob("*/*"))
    assert main(["import-real", "--store", str(tmp_path / "store"), str(tmp_path / "nowhere")]) == 2
    assert "is not a directory" in capsys.readouterr().err
