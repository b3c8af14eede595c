"""robomimic import and export killed (-9) in real processes: an import spanning two array layouts (two writers)
is all-or-nothing, re-importing the same file never duplicates, and a killed export's temp file is cleaned."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import sime_data
from sime_data.gc import gc
from sime_data.verify import verify
from sime_data.robomimic_io import export_robomimic, import_robomimic
from test_robomimic import assert_same_file, make_robomimic_file

WORKER = Path(__file__).with_name("_fault_worker.py")
REPO = str(Path(__file__).resolve().parents[2])
ENV = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _two_layout_file(path: Path) -> Path:
    """A robomimic file whose demos 3..5 have one more obs key than demos 0..2 (so two writers are needed)."""
    make_robomimic_file(path)
    with h5py.File(path, "r+") as f:
        for i in (3, 4, 5):
            n = f[f"data/demo_{i}/actions"].shape[0]
            f.create_dataset(f"data/demo_{i}/obs/extra", data=np.arange(n * 2, dtype=np.float64).reshape(n, 2))
    return path


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(WORKER), *args], capture_output=True, text=True, env=ENV, timeout=120)


def test_import_spanning_two_writers_is_all_or_nothing(store, tmp_path):
    source = _two_layout_file(tmp_path / "lift_ph.hdf5")
    killed = _run("import-demo", store.location, str(source), "5")  # both writers hold episodes when killed
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    store = sime_data.open_store(store.location)
    assert store.episodes().empty and store.versions().empty
    assert verify(store).ok
    report = gc(store)
    assert len(report.segments_removed) == 2, report.summary()  # both writers' frames reclaimed

    result = import_robomimic(store, source, progress=False)
    segments = set(store.episodes()["segment"])
    assert len(segments) == 2 and len(result.episode_ids) == 6
    assert verify(store, deep=True).ok


@pytest.mark.parametrize("point", ["import-commit", "import-version"])
def test_import_killed_after_its_commit_is_completed_not_duplicated(store, tmp_path, point):
    source = _two_layout_file(tmp_path / "lift_ph.hdf5")
    killed = _run(point, store.location, str(source))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    store = sime_data.open_store(store.location)
    committed = sorted(store.episodes()["episode_id"])
    assert len(committed) == 6 and store.versions().empty  # all rows visible together, never a part of them

    completed = import_robomimic(store, source, progress=False)
    assert not completed.already_imported and sorted(completed.episode_ids) == committed
    assert completed.versions == ["lift_ph", "lift_ph/mask/train", "lift_ph/mask/valid"]
    again = import_robomimic(store, source, progress=False)
    assert again.already_imported and again.episode_ids == completed.episode_ids
    assert len(store.episodes()) == 6 and len(store.versions()) == 3
    out = tmp_path / "round_trip.hdf5"
    export_robomimic(store, "lift_ph", out, progress=False)
    assert_same_file(source, out)

    cli = subprocess.run([sys.executable, "-m", "sime_data.cli", "import-robomimic", "--store", store.location,
                          str(source), "-q"], capture_output=True, text=True, env=ENV)
    assert cli.returncode == 0 and "imported before" in cli.stdout and "nothing was written" in cli.stdout
    assert len(sime_data.open_store(store.location).episodes()) == 6


def _temps(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_killed_export_leaves_no_temp_file_behind(store, tmp_path):
    source = make_robomimic_file(tmp_path / "lift_ph.hdf5")
    import_robomimic(store, source, progress=False)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "lift.hdf5"
    killed = _run("export-demo", store.location, "lift_ph", str(out))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not out.exists() and len(_temps(out_dir)) == 1  # the hidden temp file of the killed export

    # an export running now keeps its temp file while another export cleans up around it
    gate = tmp_path / "gate"
    paused = subprocess.Popen([sys.executable, str(WORKER), "export-pause", store.location, "lift_ph",
                               str(out_dir / "other.hdf5"), str(gate)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=ENV)
    try:
        assert paused.stdout.readline().strip() == "PAUSED", paused.stderr.read()
        live = [t for t in _temps(out_dir) if t.startswith(".other.hdf5")]
        assert len(live) == 1
        export_robomimic(store, "lift_ph", out, progress=False)
        assert _temps(out_dir) == live  # the dead export's temp file is gone, the live one's kept
        assert_same_file(source, out)
        gate.write_text("go")
        assert paused.wait(60) == 0, paused.stderr.read()
    finally:
        if paused.poll() is None:
            paused.kill()
    assert _temps(out_dir) == []
    assert_same_file(source, out_dir / "other.hdf5")

