"""Rig configuration: one YAML file (devices and their backends, serials, workspace, rates) -> dataclasses.

Every field's type, bounds, choices and help are declared on the dataclasses below with
`sime_policy.settings.setting`; `rig_config_from_dict` builds them with `settings.from_mapping`, which names the
bad field, and each class's `cross_checks` adds the rules that involve several fields.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sime_policy.settings import SettingError, from_mapping, setting

from .arm import Workspace
from .errors import RigConfigError
from .keyboard import DEFAULT_KEYS, KeyEvent, parse_event

ARM_BACKENDS = ("flexiv", "sim")
CAMERA_BACKENDS = ("realsense", "sim")
TELEOP_BACKENDS = ("sigma7", "scripted")
KEYBOARD_BACKENDS = ("pynput", "scripted")


# ---------------------------------------------------------------------- values no annotation describes
def _serial(value: Any) -> str | None:
    """A serial number as text (YAML reads an unquoted one as a number)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"expected a serial number, got {value!r}")


def _workspace(raw: Any) -> Workspace:
    """{low: [x, y, z], high: [x, y, z]} in metres as a Workspace."""
    if not isinstance(raw, Mapping) or not set(raw) <= {"low", "high"}:
        raise ValueError(f"expected {{low: [x, y, z], high: [x, y, z]}}, got {raw!r}")
    bounds = {}
    for key in ("low", "high"):
        values = raw.get(key) or ()
        if not isinstance(values, (list, tuple)) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise ValueError(f"workspace.{key}: expected a list of numbers, got {values!r}")
        bounds[key] = tuple(float(v) for v in values)
    return Workspace(bounds["low"], bounds["high"])


def _rotation(raw: Any) -> tuple[tuple[float, ...], ...] | None:
    """A 3x3 rotation matrix (rows of the robot axes in device coordinates)."""
    if raw is None:
        return None
    import numpy as np

    try:
        axes = np.array(raw, dtype=np.float64)
    except (TypeError, ValueError):
        axes = np.zeros(0)
    if axes.shape != (3, 3) or not np.allclose(axes @ axes.T, np.eye(3), atol=1e-6) or np.linalg.det(axes) < 0:
        raise ValueError(f"expected a 3x3 rotation matrix (rows of the robot axes in device coordinates), got {raw!r}")
    return tuple(tuple(float(v) for v in row) for row in axes)


def _key_bindings(raw: Any) -> dict[str, KeyEvent]:
    """{character: event} with lower-case single characters; empty or absent: the default bindings."""
    if raw is not None and not isinstance(raw, Mapping):
        raise ValueError(f"expected a mapping of key to event, got {raw!r}")
    keys = {str(k).lower(): parse_event(v) for k, v in (raw or {}).items()} or dict(DEFAULT_KEYS)
    long = [k for k in keys if len(k) != 1]
    if long:
        raise ValueError(f"bind single characters, got {long}")
    return keys


def _episode_scripts(raw: Any) -> tuple[tuple[tuple[int, KeyEvent], ...], ...]:
    """One list of {at: <poll count>, key: <event>} per episode."""
    if raw is not None and not isinstance(raw, list):
        raise ValueError(f"expected one list of events per episode, got {raw!r}")
    episodes = []
    for i, script in enumerate(raw or []):
        if not isinstance(script, list):
            raise ValueError(f"episode {i} must be a list of {{at: N, key: EVENT}}")
        events = []
        for item in script:
            if not isinstance(item, Mapping) or set(item) != {"at", "key"} or not isinstance(item["at"], int):
                raise ValueError(f"episode {i}: each event is {{at: <poll count>, key: <event>}}, got {item!r}")
            events.append((int(item["at"]), parse_event(item["key"])))
        episodes.append(tuple(events))
    return tuple(episodes)


def _event(raw: Any) -> KeyEvent | None:
    """An event name, or nothing."""
    return parse_event(raw) if raw else None


# ---------------------------------------------------------------------- the configuration
@dataclass(frozen=True)
class ArmConfig:
    """The arm: backend, serial (Flexiv), gripper name and width, speed limits."""

    backend: str = setting("sim", "arm backend: flexiv (a Rizon through flexivrdk) or sim", choices=ARM_BACKENDS)
    serial: str | None = setting(None, "robot serial number, e.g. Rizon4-062468 (flexiv)", parse=_serial)
    gripper: str | None = setting("Robotiq-2F-85", "gripper name as the Flexiv controller knows it")
    max_gripper_width: float = setting(0.085, "gripper opening (m) that actions of 1.0 map to", positive=True)
    max_linear_vel: float = setting(0.3, "TCP speed limit (m/s)", positive=True)
    max_angular_vel: float = setting(1.0, "TCP angular speed limit (rad/s)", positive=True)

    def cross_checks(self) -> Iterator[tuple[str, str]]:
        """Rules involving several fields: (field, problem) pairs."""
        if self.backend == "flexiv" and not self.serial:
            yield "serial", "the flexiv backend needs the robot's serial number (e.g. 'Rizon4-062468')"


@dataclass(frozen=True)
class CameraConfig:
    """One camera: its name in the store ('<name>_color', '<name>_depth'), backend, serial, image size."""

    name: str = setting(help="camera name in the store: <name>_color, <name>_depth")
    backend: str = setting("sim", "camera backend: realsense or sim", choices=CAMERA_BACKENDS)
    serial: str | None = setting(None, "RealSense serial number (quote it in YAML)", parse=_serial)
    sim_camera: str | None = setting(None, "scene camera a sim camera renders (e.g. agentview)")
    width: int = setting(84, "streamed image width (pixels)", positive=True)
    height: int = setting(84, "streamed image height (pixels)", positive=True)
    fps: int = setting(30, "stream rate (frames per second)", positive=True)
    depth: bool = setting(True, "also record the depth stream")
    resize: tuple[int, int] | None = setting(None, "(width, height) stored instead of the streamed size",
                                             positive=True, expect="[width, height] in pixels")

    def cross_checks(self) -> Iterator[tuple[str, str]]:
        """Rules involving several fields: (field, problem) pairs."""
        if not self.name.replace("_", "").isalnum():
            yield "name", f"give each camera a name of letters, digits and '_', got {self.name!r}"
        if self.backend == "realsense" and not self.serial:
            yield "serial", "a realsense camera needs its serial number (quote it: \"135122079702\")"
        if self.backend == "sim" and not self.sim_camera:
            yield "sim_camera", "a sim camera needs the scene camera to render (e.g. agentview)"


@dataclass(frozen=True)
class TeleopConfig:
    """The teleoperator: sigma7 (library path, scale) or scripted (the sim task's expert)."""

    backend: str = setting("scripted", "teleoperator: sigma7 (Force Dimension) or scripted (the sim task's expert)",
                           choices=TELEOP_BACKENDS)
    library: str | None = setting(None, "path of the Force Dimension SDK's libdhd.so (sigma7)")
    scale: float = setting(1.0, "device motion -> robot motion scale", positive=True)
    noise_std: float = setting(0.0, "action noise of the scripted expert")
    open_angle: float = setting(0.45, "sigma.7 gripper angle (rad) read as fully open")
    closed_angle: float = setting(0.05, "sigma.7 gripper angle (rad) read as fully closed")
    axes: tuple[tuple[float, ...], ...] | None = setting(None, "rotation from the device frame to the robot base frame",
                                                         parse=_rotation, expect="3x3 rotation matrix")

    def cross_checks(self) -> Iterator[tuple[str, str]]:
        """Rules involving several fields: (field, problem) pairs."""
        if self.open_angle == self.closed_angle:
            yield "", "open_angle and closed_angle must differ"


@dataclass(frozen=True)
class KeyboardConfig:
    """The operator keyboard: pynput with key bindings, or a script of events per episode."""

    backend: str = setting("scripted", "operator keyboard: pynput or scripted", choices=KEYBOARD_BACKENDS)
    keys: Mapping[str, KeyEvent] = setting(help="single character -> event; default s=start f=finish d=discard q=quit "
                                                "y=success n=failure",
                                           factory=lambda: dict(DEFAULT_KEYS), parse=_key_bindings,
                                           expect="{character: event}")
    episodes: tuple[tuple[tuple[int, KeyEvent], ...], ...] = setting(
        (), "scripted keyboard: the events of each episode", parse=_episode_scripts,
        expect="[[{at: <poll count>, key: <event>}, ...], ...]")
    on_success: KeyEvent | None = setting(None, "event the simulated operator sends when the task succeeds",
                                          parse=_event, expect="event name")

    def cross_checks(self) -> Iterator[tuple[str, str]]:
        """Rules involving several fields: (field, problem) pairs."""
        if self.backend == "scripted" and not self.episodes:
            yield "episodes", "a scripted keyboard needs at least one episode script"


@dataclass(frozen=True)
class SimConfig:
    """The simulated scene behind sim backends."""

    task: str = setting("lift", "simulation task of the sim backends")
    seed: int | None = setting(0, "seed of the simulated scene's initial states")


@dataclass(frozen=True, kw_only=True)
class RigConfig:
    """Everything about one rig; `task` names the episodes it records."""

    name: str = setting("rig", "rig name")
    task: str = setting(help="task name the recorded episodes carry")
    rate_hz: float = setting(help="control rate (Hz)", positive=True)
    max_steps: int = setting(1000, "step limit of one episode", positive=True)
    workspace: Workspace = setting(help="box (m, robot base frame) the commanded TCP position is clipped to",
                                   parse=_workspace, expect="{low: [x, y, z], high: [x, y, z]}")
    arm: ArmConfig = setting(help="the arm")
    cameras: tuple[CameraConfig, ...] = setting((), "the cameras", expect="a list of cameras")
    teleop: TeleopConfig = setting(help="the teleoperator", factory=TeleopConfig)
    keyboard: KeyboardConfig = setting(help="the operator keyboard", factory=KeyboardConfig)
    home_pose: tuple[float, ...] | None = setting(None, "TCP pose each episode starts from", length=7,
                                                  expect="[x, y, z, qw, qx, qy, qz]")
    sim: SimConfig = setting(help="the simulated scene", factory=SimConfig)
    source: str | None = setting(None, "the file the config was read from", in_file=False)

    @property
    def uses_sim(self) -> bool:
        """True when any device is simulated (the rig then owns a SimWorld)."""
        return (self.arm.backend == "sim" or any(c.backend == "sim" for c in self.cameras)
                or self.teleop.backend == "scripted"
                or (self.keyboard.backend == "scripted" and self.keyboard.on_success is not None))

    @property
    def period_s(self) -> float:
        """Control period in seconds."""
        return 1.0 / self.rate_hz

    def cross_checks(self) -> Iterator[tuple[str, str]]:
        """Rules involving several fields: (field, problem) pairs."""
        if not self.task:
            yield "task", f"expected a task name, got {self.task!r}"
        names = [c.name for c in self.cameras]
        for i, name in enumerate(names):
            if name in names[:i]:
                yield f"cameras[{i}].name", f"camera name {name!r} is used twice"
        if self.home_pose is not None and not self.workspace.contains(self.home_pose[:3]):
            yield "home_pose", f"{self.home_pose[:3]} lies outside the workspace {self.workspace}"
        if self.arm.backend == "flexiv" and self.home_pose is None:
            yield "home_pose", "a real arm needs a home pose to start each episode from"
        if self.uses_sim:
            problem = _unknown_sim_task(self.sim.task)
            if problem:
                yield "sim.task", problem


def _unknown_sim_task(task: str) -> str | None:
    """Why the simulation task does not exist, or None."""
    try:
        from sime_policy.envs.tasks import get_task

        get_task(task)
    except ImportError:  # pragma: no cover - the simulation extra is missing
        return None
    except ValueError as exc:
        return str(exc)
    return None


def rig_config_from_dict(raw: Any, source: str | None = None) -> RigConfig:
    """Validate a parsed YAML mapping into a RigConfig (RigConfigError naming the bad field)."""
    try:
        config = from_mapping(RigConfig, raw, label="rig config")
    except SettingError as exc:
        raise RigConfigError(str(exc)) from None
    return dataclasses.replace(config, source=source)


def load_rig_config(path: str | os.PathLike) -> RigConfig:
    """Read and validate a rig YAML file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise RigConfigError(f"rig config {path} does not exist (see hardware/configs/rig_example.yaml)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise RigConfigError(f"rig config {path} is not valid YAML: {exc}") from None
    try:
        return rig_config_from_dict(raw, source=str(path))
    except RigConfigError as exc:
        raise RigConfigError(f"{path}: {exc}") from None
