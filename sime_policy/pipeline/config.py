"""Settings of a SIME self-improvement run and the named presets (`quick`, `lift`, ...)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from sime_data.selection import RULES, check_rule, check_threshold

BRANCHES = ("baseline", "sime")
DEFAULT_STATES_SEED = 100_000  # initial states are the same for every seed, round and branch


@dataclass(frozen=True)
class PipelineConfig:
    """Everything that defines a run: task, data, rounds, seeds, exploration, selection and rollout counts."""

    name: str = "run"
    task: str = "lift"
    demos: int = 10
    rounds: int = 1
    seeds: tuple[int, ...] = (233,)
    policy_preset: str | None = None            # default '<task>_lowdim_cpu'
    train_steps: int | None = None              # default: the policy preset's
    noise_scale: float = 0.01
    image_noise_scale: float | None = None
    tau1: float = 0.0
    tau2: float = 1.0
    rule: str = "sr_lss"
    threshold: float = 0.5
    init_states: int = 50
    trials: int = 5
    states_seed: int = DEFAULT_STATES_SEED
    max_steps: int | None = None                # default: the task horizon
    workers: int = 1
    # torch threads while training: 1 is several times faster than 2 whenever anything else uses a core
    train_threads: int | None = 1
    record_demos: bool = False                  # record scripted demos when the store has none
    curate: bool = False                        # stop after each selection until a person saves the trimmed version
    # no validation split by default: with a handful of demos every episode is worth training on
    policy_overrides: dict[str, Any] = field(default_factory=lambda: {"val_ratio": 0.0})

    @property
    def preset(self) -> str:
        """Name of the policy preset each round trains with."""
        return self.policy_preset or f"{self.task}_lowdim_cpu"

    @property
    def base_version(self) -> str:
        """The round-0 training version: the task's core demos."""
        return f"{self.task}/core_{self.demos}"

    def validate(self) -> "PipelineConfig":
        """Self, or ValueError naming the first bad setting and the fix."""
        from sime_data.schema import check_version_name

        from ..config import get_preset
        from ..envs.tasks import get_task

        if "/" in self.name:
            raise ValueError(f"run name {self.name!r} must not contain '/'")
        check_version_name(self.name)
        get_task(self.task)
        if isinstance(self.rounds, bool) or not isinstance(self.rounds, int) or self.rounds < 1:
            raise ValueError(f"rounds must be an integer >= 1 (round 0 is the policy trained on the demos), "
                             f"got {self.rounds!r}")
        if not self.seeds:
            raise ValueError("give at least one seed (e.g. --seeds 233 2333)")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, got {list(self.seeds)}")
        check_rule(self.rule)
        check_threshold(self.threshold)
        for label, value in (("demos", self.demos), ("init_states", self.init_states), ("trials", self.trials),
                             ("workers", self.workers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{label} must be a positive integer, got {value!r}")
        if self.train_steps is not None and self.train_steps < 1:
            raise ValueError(f"train_steps must be positive, got {self.train_steps}")
        if self.train_threads is not None and self.train_threads < 1:
            raise ValueError(f"train_threads must be positive (or None for torch's default), got {self.train_threads}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be positive, got {self.max_steps}")
        if self.noise_scale < 0 or not 0.0 <= self.tau1 <= self.tau2 <= 1.0:
            raise ValueError("need noise_scale >= 0 and 0 <= tau1 <= tau2 <= 1")
        experiment = get_preset(self.preset)
        if experiment.task != self.task:
            raise ValueError(f"policy preset {self.preset!r} is for task {experiment.task!r}, not {self.task!r}")
        return self

    def experiment(self, seed: int) -> Any:
        """The ExperimentConfig of one training run (preset + steps + overrides, training seed = run seed)."""
        from ..config import get_preset

        return get_preset(self.preset).with_overrides(seed=seed, steps=self.train_steps, **{
            "num_threads": self.train_threads, **self.policy_overrides})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (stored with every version the run creates)."""
        data = dataclasses.asdict(self)
        data["seeds"] = list(self.seeds)
        return data

    def identity(self) -> dict[str, Any]:
        """The settings that decide results (seeds and parallelism excluded): a rerun must match them."""
        data = self.to_dict()
        for key in ("seeds", "workers", "train_threads", "record_demos", "curate"):
            data.pop(key)
        return json.loads(json.dumps(data))

    def with_updates(self, **updates: Any) -> "PipelineConfig":
        """Copy with the given (non-None) fields replaced."""
        updates = {k: (tuple(v) if k == "seeds" else v) for k, v in updates.items() if v is not None}
        unknown = set(updates) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown pipeline setting(s): {sorted(unknown)}")
        return replace(self, **updates)


def _quick() -> PipelineConfig:
    """End-to-end on a 2-core CPU in under 30 minutes, with room to improve after round 0 (lift, 5 demos)."""
    return PipelineConfig(name="quick", task="lift", demos=5, rounds=1, seeds=(233,), train_steps=800,
                          noise_scale=0.1, threshold=0.5, init_states=16, trials=3, max_steps=160, workers=2,
                          record_demos=True)


def _lift() -> PipelineConfig:
    """A fuller lift experiment: 2 seeds, longer training, 30 initial states x 4 trials per rollout set."""
    return PipelineConfig(name="lift", task="lift", demos=5, rounds=1, seeds=(233, 2333), train_steps=1500,
                          noise_scale=0.1, threshold=0.5, init_states=30, trials=4, max_steps=160, workers=2,
                          record_demos=True)


PIPELINE_PRESETS: dict[str, Callable[[], PipelineConfig]] = {"quick": _quick, "lift": _lift}


def get_pipeline_preset(name: str) -> PipelineConfig:
    """A named pipeline preset, or ValueError listing the known ones."""
    if name not in PIPELINE_PRESETS:
        raise ValueError(f"unknown pipeline preset {name!r}; presets: {sorted(PIPELINE_PRESETS)}")
    return PIPELINE_PRESETS[name]()


__all__ = ["BRANCHES", "RULES", "PipelineConfig", "PIPELINE_PRESETS", "get_pipeline_preset"]
