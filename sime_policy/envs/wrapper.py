"""SimEnv: one small interface over the robosuite tasks, with absolute 10-D end-effector actions.

Actions, per arm: ``[x, y, z, r6 (first two columns of the rotation matrix), gripper]`` in the
world frame, gripper -1 = open, +1 = closed. They drive robosuite's OSC_POSE controller in
absolute mode (``input_type='absolute'``, ``input_ref_frame='world'``), whose reference is the
gripper's grip site; ``eef_action()`` returns the action that holds the current pose.
"""

from __future__ import annotations

import hashlib
import logging
import os
from typing import Any

import numpy as np

from . import rotations
from .tasks import TaskSpec, get_task

Obs = dict[str, np.ndarray]

#: SIME/robomimic observation key -> robosuite observation key, where they differ.
_SOURCE_KEYS = {"object": "object-state"}


def init_state_id(state: np.ndarray) -> str:
    """Stable id of a simulator state: first 16 hex chars of sha1 over its exact float64 bytes."""
    data = np.ascontiguousarray(np.asarray(state, dtype=np.float64).ravel()).tobytes()
    return hashlib.sha1(data).hexdigest()[:16]


def absolute_controller_config(arms: tuple[str, ...] = ("right",)) -> dict[str, Any]:
    """robosuite 1.5 BASIC composite controller, only the given arms, OSC_POSE in absolute world-frame mode."""
    _quiet_robosuite()
    from robosuite.controllers import load_composite_controller_config

    config = load_composite_controller_config(controller="BASIC")
    config["body_parts"] = {name: part for name, part in config["body_parts"].items() if name in arms}
    for part in config["body_parts"].values():
        part["input_type"] = "absolute"
        part["input_ref_frame"] = "world"
    return config


_NOISE = ("No private macro file", "It is recommended to use a private macro", "To setup, run",
          "Could not import robosuite_models", "Could not load the mink-based", "Loading controller configuration")


def _drop_noise(record: logging.LogRecord) -> bool:
    """Logging filter: keep robosuite warnings, drop its info chatter and optional-extra notices."""
    return record.levelno >= logging.WARNING and not str(record.msg).startswith(_NOISE)


def _quiet_robosuite() -> None:
    """Silence robosuite's import-time notices about optional extras we do not use (real warnings stay)."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    logger = logging.getLogger("robosuite_logs")
    if _drop_noise not in logger.filters:
        logger.addFilter(_drop_noise)


class SimEnv:
    """A robosuite task with robomimic observation keys, absolute 10-D actions and exact state replay.

    `task` is a registry name ('lift', 'can', 'square', 'transport', 'toolhang'); `cameras` adds
    '<camera>_image' observations (image_size x image_size uint8 HWC, upright); `seed` seeds the
    RNG that reset() draws initial states from (None: fresh entropy); `horizon` overrides the task's.
    The model itself is built from the task's fixed `model_seed`, so every SimEnv of a task in any
    process has the same model XML and `sample_init_states(k, seed)` gives the same states.
    Episodes end (done) on success or when `horizon` steps have been taken.
    """

    def __init__(self, task: str, *, cameras: bool = False, image_size: int = 84, seed: int | None = None,
                 horizon: int | None = None) -> None:
        self.spec: TaskSpec = get_task(task)
        self.task = self.spec.name
        self.cameras = cameras
        self.image_size = image_size
        self.horizon = int(horizon if horizon is not None else self.spec.horizon)
        _quiet_robosuite()
        import robosuite
        from robosuite import macros

        kwargs: dict[str, Any] = {
            "robots": list(self.spec.robots),
            "controller_configs": absolute_controller_config(),
            "has_renderer": False,
            "has_offscreen_renderer": cameras,
            "use_camera_obs": cameras,
            "use_object_obs": True,
            "reward_shaping": False,
            "control_freq": 20,
            "ignore_done": True,
            "hard_reset": False,
            "horizon": 10**9,
            "seed": self.spec.model_seed,
        }
        if cameras:
            kwargs.update(camera_names=list(self.spec.camera_names), camera_heights=image_size,
                          camera_widths=image_size, camera_depths=False)
        kwargs.update(self.spec.env_kwargs)
        self.env = robosuite.make(self.spec.env_name, **kwargs)
        self._flip_images = macros.IMAGE_CONVENTION == "opengl"
        # Rebuild the model from its own XML: the XML rounds numbers, so only a model compiled from the
        # XML string is reproduced exactly by another process that loads the same string.
        self._xml: str = self.env.sim.model.get_xml()
        self.env.reset_from_xml_string(self._xml)
        self.reseed(seed)
        self._t = 0

    def reseed(self, seed: int | None) -> None:
        """Reseed the RNG that reset() and sample_init_states() draw from (in place: samplers share it)."""
        self.env.rng.bit_generator.state = np.random.default_rng(seed).bit_generator.state

    # ------------------------------------------------------------------ properties
    @property
    def action_dim(self) -> int:
        """Size of one absolute action (10 per arm)."""
        return self.spec.action_dim

    @property
    def obs_keys(self) -> tuple[str, ...]:
        """Keys of the observation dicts this env returns."""
        return self.spec.lowdim_keys + (self.spec.image_keys if self.cameras else ())

    @property
    def num_arms(self) -> int:
        """Number of controlled arms."""
        return self.spec.num_arms

    @property
    def t(self) -> int:
        """Steps taken since the last reset."""
        return self._t

    # ------------------------------------------------------------------ state
    def get_state(self) -> np.ndarray:
        """Flattened simulator state [time, qpos, qvel] (float64 copy)."""
        return np.array(self.env.sim.get_state().flatten(), dtype=np.float64)

    def model_xml(self) -> str:
        """The MJCF XML the current model was compiled from (kept with episodes so states replay exactly)."""
        return self._xml

    @staticmethod
    def init_state_id(state: np.ndarray) -> str:
        """Stable id of a state (see `init_state_id`)."""
        return init_state_id(state)

    def check_success(self) -> bool:
        """Task success as the environment defines it."""
        return bool(self.env._check_success())

    # ------------------------------------------------------------------ reset
    def reset(self) -> Obs:
        """Reset to a fresh random initial state (drawn from the env's seeded RNG)."""
        self.env.reset()
        return self._settle()

    def reset_to(self, state: np.ndarray, model_xml: str | None = None) -> Obs:
        """Restore a recorded state exactly (and its model, when given and different); returns its observation."""
        if model_xml is not None and model_xml != self._xml:
            self.env.reset_from_xml_string(model_xml)
            self._xml = model_xml
        self.env.reset()  # resets sim data (incl. solver warm start), robots, grippers and controllers
        self.env.sim.set_state_from_flattened(np.asarray(state, dtype=np.float64))
        return self._settle()

    def _settle(self) -> Obs:
        """Common end of reset and reset_to, so both leave the same simulator, controller and sensor state."""
        self.env.sim.forward()
        self._sync_controllers()
        self._t = 0
        return self._observe_fresh()

    def _observe_fresh(self) -> Obs:
        """Observation of the current state alone, independent of what was observed before.

        Some robosuite sensors read other sensors' values from a cache filled in evaluation order
        (e.g. PickPlace's object-to-gripper pose reads the object pose), so one pass may mix in
        values from the previous state; clearing the cache and evaluating twice removes that.
        """
        self.env._obs_cache = {}
        self.env._get_observations(force_update=True)
        return self._obs(self.env._get_observations(force_update=True))

    def _sync_controllers(self) -> None:
        """Re-anchor every part controller on the current (possibly restored) state.

        OSC keeps the joint configuration seen at reset as its nullspace target; without this it would
        keep the random configuration `env.reset()` drew before a state was restored. robosuite also
        builds controllers before its post-reset forward pass, so their first step would use a stale
        mass matrix; a forced update fixes both paths the same way.
        """
        for robot in self.env.robots:
            for part in robot.part_controllers.values():
                part.update(force=True)
                part.update_initial_joints(part.joint_pos)
                part.reset_goal()

    def sample_init_states(self, k: int, seed: int) -> list[np.ndarray]:
        """K fresh initial states, the same for the same (task, seed) in any process.

        Reseeds the env's RNG; leaves the simulator in the last state drawn, so call reset() or
        reset_to() before stepping.
        """
        self.reseed(seed)
        states = []
        for _ in range(k):
            self.env.reset()
            states.append(self.get_state())
        self._t = 0
        return states

    # ------------------------------------------------------------------ stepping
    def step(self, action: np.ndarray) -> tuple[Obs, float, bool, dict[str, Any]]:
        """Apply one absolute 10-D (per arm) action; done on success or at the horizon."""
        raw, reward, _, info = self.env.step(self.to_robosuite_action(action))
        self._t += 1
        success = self.check_success()
        info = dict(info)
        info["success"] = success
        info["timeout"] = self._t >= self.horizon
        done = success or info["timeout"]
        return self._obs(raw), float(reward), done, info

    def to_robosuite_action(self, action: np.ndarray) -> np.ndarray:
        """10-D-per-arm absolute action -> robosuite's [pos, rotvec, gripper] per arm."""
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (self.action_dim,):
            raise ValueError(f"{self.task} takes actions of shape ({self.action_dim},), got {a.shape}")
        arms = a.reshape(self.num_arms, 10)
        rotvec = rotations.rot6d_to_rotvec(arms[:, 3:9])
        return np.concatenate([arms[:, 0:3], rotvec, np.clip(arms[:, 9:10], -1.0, 1.0)], axis=1).ravel()

    def eef_pose(self, arm: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """World position and rotation matrix of arm `arm`'s controlled frame (the grip site)."""
        robot = self.env.robots[arm]
        site = robot.eef_site_id[robot.arms[0]]
        data = self.env.sim.data
        return np.array(data.site_xpos[site]), np.array(data.site_xmat[site]).reshape(3, 3)

    def eef_action(self, gripper: float | np.ndarray = -1.0) -> np.ndarray:
        """The absolute action that holds every arm at its current pose (gripper value per arm)."""
        grip = np.broadcast_to(np.asarray(gripper, dtype=np.float64), (self.num_arms,))
        parts = []
        for i in range(self.num_arms):
            pos, mat = self.eef_pose(i)
            parts.append(np.concatenate([pos, rotations.matrix_to_rot6d(mat), grip[i:i + 1]]))
        return np.concatenate(parts)

    # ------------------------------------------------------------------ observations
    def _obs(self, raw: dict[str, Any]) -> Obs:
        out: Obs = {}
        for key in self.spec.lowdim_keys:
            out[key] = np.array(raw[_SOURCE_KEYS.get(key, key)], dtype=np.float64)
        if self.cameras:
            for key in self.spec.image_keys:
                image = np.asarray(raw[key])
                out[key] = np.ascontiguousarray(image[::-1] if self._flip_images else image, dtype=np.uint8)
        return out

    def close(self) -> None:
        """Release the simulator and renderer."""
        self.env.close()

    def __enter__(self) -> SimEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SimEnv({self.task!r}, cameras={self.cameras}, horizon={self.horizon})"
