"""A process's share of a rollout collection: its episodes, envs and policy, run through one store writer."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from ..envs import SimEnv
from ..policy.diffusion import DiffusionPolicy
from ..policy.exploration import Exploration
from .batched import DEFAULT_LANES, Item, _Slot, run_batched

if TYPE_CHECKING:  # pragma: no cover
    from sime_data import Store


@dataclass
class Job:
    """Everything a process needs to run its share of a collection (picklable for spawn)."""

    task: str
    horizon: int
    cameras: bool
    image_size: int
    store_location: str
    writer_defaults: dict[str, Any]
    exploration: Exploration
    items: list[Item]
    threads: int | None = None
    policy: DiffusionPolicy | None = None  # the parent's loaded policy (on the cpu), sent to each worker
    envs: int = 1
    lanes: int | None = DEFAULT_LANES
    device: str = "cpu"

    def make_env(self) -> SimEnv:
        """A fresh SimEnv for this job's task, cameras and horizon."""
        return SimEnv(self.task, cameras=self.cameras, image_size=self.image_size, horizon=self.horizon)

    @contextlib.contextmanager
    def open_envs(self, first: SimEnv | None = None) -> Iterator[list[SimEnv]]:
        """min(envs, items) SimEnvs for this job (`first` reused when given), closed on exit (except `first`)."""
        wanted = max(1, min(self.envs, len(self.items)))
        with contextlib.ExitStack() as stack:
            envs = [first] if first is not None else []
            envs += [stack.enter_context(self.make_env()) for _ in range(wanted - len(envs))]
            yield envs


EpisodeCallback = Callable[[str, str, int, bool], None]


def run_items(store: "Store", envs: Sequence[SimEnv], policy: DiffusionPolicy, job: Job,
              on_episode: EpisodeCallback) -> None:
    """Run a job's episodes on its envs through one writer (one segment); each is committed as soon as it ends."""
    with store.writer("rollout", job.task, model_xml=envs[0].model_xml(), **job.writer_defaults) as writer:
        def commit(item: Item, success: bool, steps: int, slot: _Slot) -> None:
            episode_id = writer.add_episode(slot.episode_arrays(), success=success, init_state_id=item.state_id,
                                            init_state=item.state, trial=item.trial, seed=item.seed)
            on_episode(episode_id, item.state_id, item.trial, success)

        run_batched(envs, policy, job.items, job.exploration, commit, lanes=job.lanes)
