"""A Rig: the configured arm, cameras, teleoperator and keyboard, opened together, read as one observation."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .arm import RobotArm
from .camera import Camera
from .config import CameraConfig, RigConfig
from .images import resize_color, resize_depth
from .keyboard import Keyboard
from .teleoperator import Teleoperator


@dataclass
class Observation:
    """One reading of the rig: store-ready observation arrays plus timing."""

    obs: dict[str, np.ndarray]
    timestamp: float
    camera_timestamps: dict[str, float]
    io_s: float


def make_arm(config: RigConfig, world: Any) -> RobotArm:
    """The arm backend the config names (real backends import their library on connect)."""
    arm = config.arm
    if arm.backend == "flexiv":
        from .backends.flexiv import FlexivArm

        return FlexivArm(arm.serial, workspace=config.workspace, max_gripper_width=arm.max_gripper_width,
                         gripper_name=arm.gripper, max_linear_vel=arm.max_linear_vel, max_angular_vel=arm.max_angular_vel)
    from .backends.sim_devices import SimArm

    return SimArm(world, workspace=config.workspace, max_gripper_width=arm.max_gripper_width)


def make_camera(cam: CameraConfig, world: Any) -> Camera:
    """The camera backend the config names."""
    if cam.backend == "realsense":
        from .backends.realsense import RealSenseCamera

        return RealSenseCamera(cam.serial, cam.name, cam.width, cam.height, cam.fps, cam.depth)
    from .backends.sim_devices import SimCamera

    return SimCamera(world, cam.name, cam.sim_camera, cam.width, cam.height, cam.depth)


def make_teleoperator(config: RigConfig, world: Any) -> Teleoperator:
    """The teleoperator backend the config names."""
    if config.teleop.backend == "sigma7":
        from .backends.sigma7 import Sigma7

        t = config.teleop
        return Sigma7(library=t.library, scale=t.scale, open_angle=t.open_angle, closed_angle=t.closed_angle,
                      axes=None if t.axes is None else np.array(t.axes))
    from .backends.sim_devices import ScriptedTeleoperator

    return ScriptedTeleoperator(world, noise_std=config.teleop.noise_std, seed=config.sim.seed)


def make_keyboard(config: RigConfig, world: Any) -> Keyboard:
    """The keyboard backend the config names."""
    kb = config.keyboard
    if kb.backend == "pynput":
        from .backends.pynput_keyboard import PynputKeyboard

        return PynputKeyboard(keys=kb.keys)
    from .backends.sim_devices import ScriptedKeyboard

    return ScriptedKeyboard(kb.episodes, world=world, on_success=kb.on_success)


class Rig:
    """All devices of a rig config; a context manager that connects them (and closes what it opened on error).

    The teleoperator is only built when `teleop=True` (evaluation needs none).
    """

    def __init__(self, config: RigConfig, *, teleop: bool = True) -> None:
        self.config = config
        self.world = None
        if config.uses_sim:
            from .backends.sim_world import SimWorld

            self.world = SimWorld(config.sim.task, config.sim.seed)
        self.arm = make_arm(config, self.world)
        self.cameras = [make_camera(c, self.world) for c in config.cameras]
        self.teleoperator = make_teleoperator(config, self.world) if teleop else None
        self.keyboard = make_keyboard(config, self.world)
        self._stack: contextlib.ExitStack | None = None

    @property
    def devices(self) -> list[Any]:
        """Every device, in connection order."""
        return [self.arm, *self.cameras, *([self.teleoperator] if self.teleoperator else []), self.keyboard]

    def __enter__(self) -> Rig:
        stack = contextlib.ExitStack()
        try:
            if self.world is not None:
                self.world.acquire()
                stack.callback(self.world.release)
            for device in self.devices:
                stack.enter_context(device)
        except BaseException:
            stack.close()
            raise
        self._stack = stack
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None

    def observe(self) -> Observation:
        """Read the arm and every camera: 'tcp_pose', 'joints', 'gripper_width', '<cam>_color', '<cam>_depth' (resized)."""
        start = time.perf_counter()
        stamp = time.time()
        state = self.arm.state()
        obs: dict[str, np.ndarray] = {
            "tcp_pose": np.asarray(state.tcp_pose, dtype=np.float64),
            "joints": np.asarray(state.joints, dtype=np.float64),
            "gripper_width": np.array([state.gripper_width], dtype=np.float64),
        }
        stamps = {}
        for camera, cam_config in zip(self.cameras, self.config.cameras):
            frame = camera.read()
            color, depth = frame.color, frame.depth
            if cam_config.resize is not None:
                width, height = cam_config.resize
                color = resize_color(color, width, height)
                depth = None if depth is None else resize_depth(depth, width, height)
            obs[f"{camera.name}_color"] = color
            if depth is not None:
                obs[f"{camera.name}_depth"] = depth
            stamps[camera.name] = frame.timestamp
        return Observation(obs, stamp, stamps, time.perf_counter() - start)

    def home(self) -> None:
        """Send the arm home (the simulated arm draws a fresh scene instead)."""
        self.arm.go_home(None if self.config.home_pose is None else np.asarray(self.config.home_pose))

    def model_xml(self) -> str | None:
        """Model XML of the simulated scene (None on a real rig)."""
        return None if self.world is None or self.world.env is None else self.world.env.model_xml()
