"""Concurrent saves from two sessions: distinct names both land; one name gives one winner and a clear message."""

from __future__ import annotations

import threading
from pathlib import Path

import sime_data
from curation_app.saving import save_version

from app_testlib import _template_store, app_store  # noqa: F401 (fixtures)


def _race(path: Path, names: list[str], rounds: int = 5) -> list[list]:
    """Each of len(names) threads (own Store object, like another app process) saves a trim at the same moment."""
    outcomes: list[list] = []
    for r in range(rounds):
        barrier = threading.Barrier(len(names))
        results: list = [None] * len(names)

        def worker(i: int) -> None:
            store = sime_data.open_store(path)
            eid = store.version("demos").episode_ids[i]
            store.versions()  # warm the catalog, then start together
            barrier.wait()
            results[i] = save_version(store, f"{names[i]}-r{r}", lambda n: store.create_version_from_trims(
                n, "demos", {eid: [(i + 1, 10)]}, message=f"session {i}"))

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(names))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        outcomes.append(results)
    return outcomes


def test_distinct_names_both_saved(app_store: Path) -> None:
    for a, b in _race(app_store, ["alice/trim", "bob/trim"]):
        assert a.ok and b.ok, (a.message, b.message)
    store = sime_data.open_store(app_store)
    assert sum(name.startswith(("alice/", "bob/")) for name in store.versions()["name"]) == 10


def test_same_name_one_winner_clear_message(app_store: Path) -> None:
    store = sime_data.open_store(app_store)
    ids = store.version("demos").episode_ids
    for r, (a, b) in enumerate(_race(app_store, ["shared", "shared"])):
        winners = [x for x in (a, b) if x.ok]
        losers = [x for x in (a, b) if not x.ok]
        assert len(winners) == 1 and len(losers) == 1
        assert "is taken" in losers[0].message and f"shared-r{r}-2" in losers[0].message
        # the stored version is exactly the winner's: nothing mixed, nothing lost
        saved = store.version(f"shared-r{r}")
        i = int(saved.message.split()[-1])
        assert saved.ranges()[ids[i]] == [(i + 1, 10)] and winners[0].version.message == saved.message
