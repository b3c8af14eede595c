"""Simulated backends over a shared SimWorld: arm, RGB-D cameras, scripted teleoperator, scripted keyboard."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import geometry as geo
from ..arm import ArmState, RobotArm, Workspace
from ..camera import Camera, CameraFrame, Intrinsics
from ..keyboard import Keyboard, KeyEvent, parse_event
from ..teleoperator import TeleopCommand, Teleoperator
from .sim_world import SimWorld


class SimArm(RobotArm):
    """The robosuite Panda as a rig arm: each pose command is one simulator step toward that pose.

    A gripper command takes effect with the next pose command. `go_home()` resets the scene to a
    fresh initial state (the simulated operator "resets the table").
    """

    def __init__(self, world: SimWorld, name: str = "arm", workspace: Workspace | None = None,
                 max_gripper_width: float = 0.08) -> None:
        super().__init__(name, workspace, max_gripper_width)
        self.world = world

    def _connect(self) -> None:
        self.world.acquire()

    def _disconnect(self) -> None:
        self.world.release()

    def _read_state(self) -> ArmState:
        env = self.world.env
        pos, mat = env.eef_pose(0)
        robot = env.env.robots[0]
        qpos = env.env.sim.data.qpos
        joints = np.array(qpos[robot._ref_joint_pos_indexes], dtype=np.float64)
        fingers = qpos[robot._ref_gripper_joint_pos_indexes[robot.arms[0]]]
        width = float(abs(fingers[0] - fingers[1]))
        return ArmState(geo.matrix_to_pose(pos, mat), joints, width, time.time())

    def _send_pose(self, pose: np.ndarray) -> None:
        action = geo.pose_to_action(pose, self.world.gripper_command)
        self.world.step(action)

    def _send_gripper(self, width: float) -> None:
        self.world.gripper_command = geo.width_to_command(width, self.max_gripper_width)

    def _go_home(self, pose: np.ndarray | None) -> None:
        self.world.reset()

    def _stop(self) -> None:
        pass


class SimCamera(Camera):
    """A camera of the simulated scene, rendered offscreen; depth in millimetres like a RealSense (z16)."""

    def __init__(self, world: SimWorld, name: str, sim_camera: str, width: int = 84, height: int = 84,
                 depth: bool = True) -> None:
        super().__init__(name, width, height, depth)
        self.world = world
        self.sim_camera = sim_camera

    def _connect(self) -> None:
        self.world.acquire()
        try:
            self.world.render(self.sim_camera, self.width, self.height, False)  # fail now, not mid-episode
        except Exception:
            self.world.release()
            raise

    def _close(self) -> None:
        self.world.release()

    def _read(self) -> CameraFrame:
        color, depth_m = self.world.render(self.sim_camera, self.width, self.height, self.depth)
        depth = None
        if depth_m is not None:
            depth = np.clip(np.round(depth_m * 1000.0), 0, 65535).astype(np.uint16)
        return CameraFrame(color, depth, time.time(), 0.001)

    def _intrinsics(self) -> Intrinsics:
        fovy = math.radians(self.world.camera_fovy(self.sim_camera))
        f = 0.5 * self.height / math.tan(fovy / 2)
        return Intrinsics(self.width, self.height, f, f, self.width / 2, self.height / 2)


class ScriptedTeleoperator(Teleoperator):
    """Drives the simulated arm like an operator would, from the task's scripted expert.

    The expert's absolute targets are turned into offsets from the arm pose at `reset_base()`,
    so the recorder composes them back exactly as it does a haptic device's offsets.
    """

    def __init__(self, world: SimWorld, name: str = "teleop", noise_std: float = 0.0, seed: int | None = 0) -> None:
        super().__init__(name)
        self.world = world
        self.noise_std = noise_std
        self.seed = seed
        self._expert: Any = None
        self._episodes = 0

    def _connect(self) -> None:
        self.world.acquire()

    def _close(self) -> None:
        self.world.release()

    def _reset_base(self) -> None:
        from sime_policy.experts.pick_place import make_expert

        env = self.world.env
        seed = None if self.seed is None else self.seed + self._episodes
        self._episodes += 1
        self._expert = make_expert(env, noise_std=self.noise_std, seed=seed)
        self._expert.reset()
        self._base_pos, self._base_rot = env.eef_pose(0)

    def _read(self) -> TeleopCommand:
        if self._expert is None:
            self._reset_base()
        action = np.asarray(self._expert.act(), dtype=np.float64)
        target_rot = geo.rot6d_to_matrix(action[3:9])
        return TeleopCommand(action[:3] - self._base_pos, target_rot @ self._base_rot.T, float(action[9]), time.time())


class ScriptedKeyboard(Keyboard):
    """Operator key presses from a script: per episode, a list of (poll count, event).

    Episode i uses `episodes[i]` (the last script repeats); `at` counts polls since the episode
    started. With `on_success` set and a SimWorld given, that event is also emitted the first time
    the simulated task succeeds in an episode (an operator who sees the success and presses a key).
    """

    def __init__(self, episodes: Sequence[Sequence[tuple[int, KeyEvent | str]]], name: str = "keyboard",
                 world: SimWorld | None = None, on_success: KeyEvent | str | None = None) -> None:
        super().__init__(name)
        if not episodes:
            raise ValueError("a scripted keyboard needs at least one episode script")
        self.scripts = [sorted((int(at), parse_event(ev) if isinstance(ev, str) else ev) for at, ev in ep)
                        for ep in episodes]
        self.world = world
        self.on_success = parse_event(on_success) if isinstance(on_success, str) else on_success
        self._episode = -1
        self._polls = 0
        self._succeeded = False

    def new_episode(self) -> None:
        """Switch to the next episode's script."""
        super().new_episode()
        self._episode += 1
        self._polls = 0
        self._succeeded = False

    def _tick(self) -> None:
        if self._episode < 0:
            self.new_episode()
        script = self.scripts[min(self._episode, len(self.scripts) - 1)]
        for at, event in script:
            if at == self._polls:
                self.push(event)
        if self.on_success is not None and self.world is not None and not self._succeeded:
            if self.world.check_success():
                self._succeeded = True
                self.push(self.on_success)
        self._polls += 1
