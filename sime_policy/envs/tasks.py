"""Task registry: SIME task name -> robosuite environment configuration (data, not code branches)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class TaskSpec:
    """How one SIME task maps onto a robosuite environment."""

    name: str
    env_name: str
    robots: tuple[str, ...]
    horizon: int
    camera_names: tuple[str, ...]
    object_key: str = "object"
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    model_seed: int = 0  # seeds robosuite's model randomisation (e.g. Lift's cube size): one model per task

    @property
    def num_arms(self) -> int:
        """Number of controlled arms (one per robot here)."""
        return len(self.robots)

    @property
    def lowdim_keys(self) -> tuple[str, ...]:
        """Low-dimensional observation keys, named as in robomimic datasets."""
        keys: list[str] = []
        for i in range(self.num_arms):
            keys += [f"robot{i}_eef_pos", f"robot{i}_eef_quat", f"robot{i}_gripper_qpos"]
        return (*keys, self.object_key)

    @property
    def image_keys(self) -> tuple[str, ...]:
        """Camera observation keys (robomimic names: '<camera>_image')."""
        return tuple(f"{cam}_image" for cam in self.camera_names)

    @property
    def action_dim(self) -> int:
        """Absolute action size: per arm xyz + 6-D rotation + gripper."""
        return 10 * self.num_arms


#: Horizons follow robomimic's evaluation settings for the proficient-human datasets.
_TASKS = (
    TaskSpec("lift", "Lift", ("Panda",), 400, ("agentview", "robot0_eye_in_hand")),
    TaskSpec("can", "PickPlaceCan", ("Panda",), 400, ("agentview", "robot0_eye_in_hand")),
    TaskSpec("square", "NutAssemblySquare", ("Panda",), 400, ("agentview", "robot0_eye_in_hand")),
    TaskSpec(
        "transport",
        "TwoArmTransport",
        ("Panda", "Panda"),
        700,
        ("shouldercamera0", "shouldercamera1", "robot0_eye_in_hand", "robot1_eye_in_hand"),
        env_kwargs={"env_configuration": "opposed"},
    ),
    TaskSpec("toolhang", "ToolHang", ("Panda",), 700, ("sideview", "robot0_eye_in_hand")),
)

TASKS: Mapping[str, TaskSpec] = MappingProxyType({spec.name: spec for spec in _TASKS})


def get_task(name: str) -> TaskSpec:
    """The spec of a task by SIME name; ValueError naming the known tasks otherwise."""
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}") from None


def task_names() -> list[str]:
    """Names of all registered tasks."""
    return list(TASKS)
