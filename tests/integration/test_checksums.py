"""Per-chunk checksums recorded at commit: `verify --deep` finds one flipped bit, verify finds a row's length
edited after commit, and migration 0002 adds the checksums of a format-1 store without rewriting a chunk."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import sime_data
from conftest import write_episodes
from migrations import migrate
from sime_data.layout import CHECKSUMS_DIR, DATA_DIR, EPISODES_DIR
from sime_data.gc import gc
from sime_data.verify import verify

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "store_v1"
REPO = str(Path(__file__).resolve().parents[2])


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "sime_data.cli", *args], capture_output=True, text=True, env=env)


def _flip_one_bit(path: Path, byte: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if byte is None else byte] ^= 0x10
    path.write_bytes(bytes(data))


def _chunk_of(store: sime_data.Store, eid: str, key: str) -> Path:
    row = store.episode(eid)
    return Path(store.sfs.path(f"{DATA_DIR}/{row['segment']}/{key}/c/{row['seg_start'] // 512}/0"))


def _images(store: sime_data.Store, n: int = 2, length: int = 70) -> list[str]:
    ids = []
    with store.writer(source="teleop", task="lift") as w:
        for e in range(n):
            for t in range(length):
                w.add_step(obs={"cam": np.full((32, 32, 3), (t + e) % 251, np.uint8)}, action=np.full(2, t, np.float32))
            ids.append(w.finish(success=True))
    return ids


def test_single_flipped_bit_is_found_by_deep_verify(store):
    ids = write_episodes(store, 3, length=30) + _images(store)
    assert verify(store, deep=True).ok
    chunk = _chunk_of(store, ids[1], "actions")
    _flip_one_bit(chunk)
    report = verify(sime_data.open_store(store.location), deep=True)
    assert not report.ok
    assert any(f"episode {ids[1]} key actions" in p and "does not match its checksum" in p for p in report.problems)
    shard = Path(store.sfs.path(f"{DATA_DIR}/{store.episode(ids[3])['segment']}/obs/cam/c/0/0/0/0"))
    _flip_one_bit(shard, byte=10)
    cli = _cli("verify", "--store", store.location, "--deep", "-q")
    assert cli.returncode == 1
    assert str(chunk.relative_to(store.location)) in cli.stderr and "obs/cam/c/0/0/0/0" in cli.stderr
    assert "against their crc32c" in cli.stdout


def test_row_length_edited_after_commit_is_found(store):
    ids = write_episodes(store, 3, length=30)
    store.create_version("all", ids)
    rows = next(Path(store.sfs.path(EPISODES_DIR)).rglob("*.parquet"))
    table = pq.read_table(rows)
    edited = pc.if_else(pc.equal(table["episode_id"], ids[0]), 40, table["length"])
    pq.write_table(table.set_column(table.column_names.index("length"), "length", edited), rows)
    store = sime_data.open_store(store.location)
    assert store.episode(ids[0])["length"] == 40  # the edit took effect: 10 frames of padding would be read
    for report in (verify(store, check_chunks=False), verify(store)):
        assert not report.ok
        assert any(f"episode {ids[0]}: its row says length=40 but it was committed with length=30" in p
                   for p in report.problems), report.problems
    with pytest.raises(sime_data.StoreError, match="gc refuses"):
        gc(store)


def test_truncated_chunk_is_found_by_plain_verify(store):
    ids = write_episodes(store, 2, length=30)
    chunk = _chunk_of(store, ids[0], "obs/eef_pos")
    chunk.write_bytes(chunk.read_bytes()[:-3])
    text = "\n".join(verify(sime_data.open_store(store.location)).problems)
    assert "bytes" in text and "when committed" in text


def test_format_1_store_upgrade_adds_checksums_without_rewriting_chunks(tmp_path):
    root = tmp_path / "store"
    shutil.copytree(FIXTURE, root)
    with pytest.raises(sime_data.OutdatedStoreError, match=r"sime-data migrate --store"):
        sime_data.open_store(root)
    old = sime_data.Store.open(root, schema_version=1)
    before = {eid: old.read_episode(eid) for eid in old.episodes()["episode_id"]}
    chunks = sorted(p for p in (root / DATA_DIR).rglob("*") if p.is_file() and p.name != "zarr.json")
    inodes = {p.relative_to(root): (p.stat().st_ino, p.read_bytes()) for p in chunks}

    assert migrate(root) == ["0002_checksums"]
    store = sime_data.open_store(root)
    assert store.root_meta.schema_version == 2
    for rel, (inode, data) in inodes.items():  # the same files (hard links), byte for byte: nothing rewritten
        assert (root / rel).stat().st_ino == inode and (root / rel).read_bytes() == data
    records = list((root / CHECKSUMS_DIR).rglob("*.json"))
    assert len(records) == 1 and len(json.loads(records[0].read_text())["episodes"]) == 3
    report = verify(store, deep=True)
    # every chunk file on disk is checked (format 1 skipped writing all-zero chunks: nothing to check there)
    assert report.ok and report.n_checksums_checked == len(chunks) > 0, report.summary()
    for eid, arrays in before.items():
        got = store.read_episode(eid)
        for key, value in arrays.items():
            np.testing.assert_array_equal(got[key], value)
    backup = next(tmp_path.glob("store.pre-migrate-v1-*"))
    assert sime_data.Store.open(backup, schema_version=1).episodes().shape[0] == 3

    # the migrated checksums guard the old chunks like new ones: a flipped bit is found
    first = sorted(before)[0]
    target = _chunk_of(store, first, "actions")
    os.unlink(target)  # break the hard link first, so the backup keeps its good copy
    target.write_bytes(inodes[target.relative_to(root)][1])
    _flip_one_bit(target)
    assert any("does not match its checksum" in p for p in verify(sime_data.open_store(root), deep=True).problems)


def test_object_store_commits_checksums_too():
    store = sime_data.init_store(f"memory://checksums-{os.getpid()}")
    ids = write_episodes(store, 2, length=30) + _images(store, 1)
    report = verify(store, deep=True)
    assert report.ok and report.n_checksums_checked == report.n_chunks_checked > 0, report.summary()
    assert len(store.sfs.list_files(CHECKSUMS_DIR, ".json")) == len(ids)
