"""gc never deletes frames a version or commit record still needs: with an episode's row file gone it refuses
(verify says DAMAGED), `gc --force` lists before removing and keeps the frames, and putting the row file back
makes the episode readable again."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import sime_data
from conftest import step_values, write_episodes
from sime_data.errors import StoreDamagedError
from sime_data.layout import CHECKSUMS_DIR, DATA_DIR, EPISODES_DIR
from sime_data.gc import gc
from sime_data.verify import verify

REPO = str(Path(__file__).resolve().parents[2])


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "sime_data.cli", *args], capture_output=True, text=True, env=env,
                          stdin=subprocess.DEVNULL)


def _lose_row_files(store: sime_data.Store, segment: str, tmp_path: Path, *, records_too: bool) -> Path:
    """Move a segment's row files (and optionally its checksum records) aside, as a careless sync would."""
    aside = tmp_path / "aside"
    shutil.move(store.sfs.path(f"{EPISODES_DIR}/{segment}"), aside / "rows")
    if records_too:
        shutil.move(store.sfs.path(f"{CHECKSUMS_DIR}/{segment}"), aside / "records")
    return aside


def _crashed_writer(store: sime_data.Store) -> str:
    """A writer whose process 'died': frames on disk, no row, lock released (as after kill -9)."""
    writer = store.writer(source="rollout", task="lift")
    for t in range(30):
        writer.add_step(**step_values(99, t))
    writer._flush(final=True)
    writer._lock.release(remove=False)
    return writer.segment


@pytest.mark.parametrize("records_too", [False, True], ids=["row-file-lost", "row-file-and-records-lost"])
def test_gc_with_a_missing_row_file_refuses_then_keeps_referenced_frames(store, tmp_path, records_too):
    ids = write_episodes(store, 3, length=30)
    segment = store.episode(ids[0])["segment"]
    store.create_version("train", ids)
    want = {eid: store.read_episode(eid) for eid in ids}
    orphan = _crashed_writer(store)
    (tmp_path / "aside").mkdir()
    aside = _lose_row_files(store, segment, tmp_path, records_too=records_too)

    store = sime_data.open_store(store.location)
    report = verify(store)
    assert not report.ok and any(ids[0] in p for p in report.problems)
    with pytest.raises(StoreDamagedError, match="gc refuses to run"):
        gc(store)
    refused = _cli("gc", "--store", store.location)
    assert refused.returncode == 2 and "refuses" in refused.stderr
    assert (Path(store.location) / DATA_DIR / segment).is_dir()

    # forced: a dry-run listing first (and no removal without --yes when not interactive)
    listed = _cli("gc", "--store", store.location, "--force")
    assert listed.returncode == 1 and "--yes" in listed.stderr, listed.stdout + listed.stderr
    assert f"would remove {DATA_DIR}/{orphan}/" in listed.stdout and f"{DATA_DIR}/{segment}" not in listed.stdout
    assert (Path(store.location) / DATA_DIR / orphan).is_dir()
    forced = _cli("gc", "--store", store.location, "--force", "--yes")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert "1 uncommitted segment" in forced.stdout
    assert not (Path(store.location) / DATA_DIR / orphan).exists()  # the crashed writer's frames went
    assert (Path(store.location) / DATA_DIR / segment).is_dir()  # the versioned episodes' frames stayed

    shutil.move(aside / "rows", store.sfs.path(f"{EPISODES_DIR}/{segment}"))
    if records_too:
        shutil.move(aside / "records", store.sfs.path(f"{CHECKSUMS_DIR}/{segment}"))
    store = sime_data.open_store(store.location)
    assert verify(store, deep=True).ok
    for eid in ids:
        got = store.read_episode(eid)
        for key, value in want[eid].items():
            np.testing.assert_array_equal(got[key], value)
    assert gc(store).bytes_freed == 0


def test_commit_record_protects_an_unversioned_episode_whose_row_is_lost(store, tmp_path):
    """No version names it, but its checksum record says it was committed: gc --force keeps its frames."""
    ids = write_episodes(store, 2, length=30)
    segment = store.episode(ids[0])["segment"]
    (tmp_path / "aside").mkdir()
    aside = _lose_row_files(store, segment, tmp_path, records_too=False)
    store = sime_data.open_store(store.location)
    text = "\n".join(verify(store).problems)
    assert "was committed" in text and "no metadata row" in text
    dry = gc(store, dry_run=True, force=True)
    assert dry.problems_ignored and not any(segment in line for line in dry.listing)
    gc(store, force=True)
    shutil.move(aside / "rows", store.sfs.path(f"{EPISODES_DIR}/{segment}"))
    store = sime_data.open_store(store.location)
    assert verify(store, deep=True).ok and sorted(store.episodes()["episode_id"]) == sorted(ids)
