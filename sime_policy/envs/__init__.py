"""Simulation environments: task registry, SimEnv wrapper (absolute 10-D actions) and rotation helpers."""

from .tasks import TASKS, TaskSpec, get_task, task_names
from .wrapper import SimEnv, absolute_controller_config, init_state_id

__all__ = ["TASKS", "SimEnv", "TaskSpec", "absolute_controller_config", "get_task", "init_state_id", "task_names"]
