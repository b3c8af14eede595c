"""Rig configuration: one YAML file (devices and their backends, serials, workspace, rates) -> dataclasses."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .arm import Workspace
from .errors import RigConfigError
from .keyboard import DEFAULT_KEYS, KeyEvent, parse_event

ARM_BACKENDS = ("flexiv", "sim")
CAMERA_BACKENDS = ("realsense", "sim")
TELEOP_BACKENDS = ("sigma7", "scripted")
KEYBOARD_BACKENDS = ("pynput", "scripted")


@dataclass(frozen=True)
class ArmConfig:
    """The arm: backend, serial (Flexiv), gripper name and width, speed limits."""

    backend: str = "sim"
    serial: str | None = None
    gripper: str | None = "Robotiq-2F-85"
    max_gripper_width: float = 0.085
    max_linear_vel: float = 0.3
    max_angular_vel: float = 1.0


@dataclass(frozen=True)
class CameraConfig:
    """One camera: its name in the store ('<name>_color', '<name>_depth'), backend, serial, image size."""

    name: str
    backend: str = "sim"
    serial: str | None = None
    sim_camera: str | None = None
    width: int = 84
    height: int = 84
    fps: int = 30
    depth: bool = True
    resize: tuple[int, int] | None = None  # (width, height) stored instead of the streamed size


@dataclass(frozen=True)
class TeleopConfig:
    """The teleoperator: sigma7 (library path, scale) or scripted (the sim task's expert)."""

    backend: str = "scripted"
    library: str | None = None
    scale: float = 1.0
    noise_std: float = 0.0
    open_angle: float = 0.45  # sigma.7 gripper angle (rad) read as fully open
    closed_angle: float = 0.05  # ... and as fully closed
    axes: tuple[tuple[float, ...], ...] | None = None  # 3x3 rotation: device frame -> robot base frame


@dataclass(frozen=True)
class KeyboardConfig:
    """The operator keyboard: pynput with key bindings, or a script of events per episode."""

    backend: str = "scripted"
    keys: Mapping[str, KeyEvent] = field(default_factory=lambda: dict(DEFAULT_KEYS))
    episodes: tuple[tuple[tuple[int, KeyEvent], ...], ...] = ()
    on_success: KeyEvent | None = None


@dataclass(frozen=True)
class SimConfig:
    """The simulated scene behind sim backends."""

    task: str = "lift"
    seed: int | None = 0


@dataclass(frozen=True)
class RigConfig:
    """Everything about one rig; `task` names the episodes it records."""

    name: str
    task: str
    rate_hz: float
    max_steps: int
    workspace: Workspace
    arm: ArmConfig
    cameras: tuple[CameraConfig, ...]
    teleop: TeleopConfig
    keyboard: KeyboardConfig
    home_pose: tuple[float, ...] | None = None
    sim: SimConfig = SimConfig()
    source: str | None = None

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


_TOP = {"name", "task", "rate_hz", "max_steps", "workspace", "arm", "cameras", "teleop", "keyboard", "home_pose", "sim"}


def _section(raw: Any, where: str, allowed: set[str]) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise RigConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise RigConfigError(f"{where}: unknown field(s) {unknown}; allowed: {sorted(allowed)}")
    return dict(raw)


def _number(value: Any, where: str, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RigConfigError(f"{where}: expected a number, got {value!r}")
    if positive and value <= 0:
        raise RigConfigError(f"{where}: must be > 0, got {value}")
    return float(value)


def _backend(raw: dict[str, Any], where: str, allowed: tuple[str, ...], default: str) -> str:
    backend = raw.get("backend", default)
    if backend not in allowed:
        raise RigConfigError(f"{where}.backend: {backend!r} is not one of {list(allowed)}")
    return backend


def _fields(cls: type) -> set[str]:
    return set(cls.__dataclass_fields__)


def _arm(raw: Any) -> ArmConfig:
    data = _section(raw, "arm", _fields(ArmConfig))
    backend = _backend(data, "arm", ARM_BACKENDS, "sim")
    if backend == "flexiv" and not data.get("serial"):
        raise RigConfigError("arm.serial: the flexiv backend needs the robot's serial number (e.g. 'Rizon4-062468')")
    for key in ("max_gripper_width", "max_linear_vel", "max_angular_vel"):
        if key in data:
            data[key] = _number(data[key], f"arm.{key}")
    if "serial" in data and data["serial"] is not None:
        data["serial"] = str(data["serial"])
    return ArmConfig(**{**data, "backend": backend})


def _cameras(raw: Any) -> tuple[CameraConfig, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise RigConfigError(f"cameras: expected a list of cameras, got {type(raw).__name__}")
    out, names = [], set()
    for i, item in enumerate(raw):
        where = f"cameras[{i}]"
        data = _section(item, where, _fields(CameraConfig))
        name = data.get("name")
        if not isinstance(name, str) or not name.replace("_", "").isalnum():
            raise RigConfigError(f"{where}.name: give each camera a name of letters, digits and '_', got {name!r}")
        if name in names:
            raise RigConfigError(f"{where}.name: camera name {name!r} is used twice")
        names.add(name)
        backend = _backend(data, where, CAMERA_BACKENDS, "sim")
        if backend == "realsense" and not data.get("serial"):
            raise RigConfigError(f"{where}.serial: a realsense camera needs its serial number (quote it: \"135122079702\")")
        if backend == "sim" and not data.get("sim_camera"):
            raise RigConfigError(f"{where}.sim_camera: a sim camera needs the scene camera to render (e.g. agentview)")
        for key in ("width", "height", "fps"):
            if key in data:
                value = data[key]
                if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                    raise RigConfigError(f"{where}.{key}: expected a positive integer, got {value!r}")
        if data.get("resize") is not None:
            size = data["resize"]
            if (not isinstance(size, list) or len(size) != 2
                    or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
                raise RigConfigError(f"{where}.resize: expected [width, height] in pixels, got {size!r}")
            data["resize"] = tuple(size)
        if "serial" in data and data["serial"] is not None:
            data["serial"] = str(data["serial"])
        out.append(CameraConfig(**{**data, "backend": backend}))
    return tuple(out)


def _teleop(raw: Any) -> TeleopConfig:
    data = _section(raw, "teleop", _fields(TeleopConfig))
    backend = _backend(data, "teleop", TELEOP_BACKENDS, "scripted")
    if "scale" in data:
        data["scale"] = _number(data["scale"], "teleop.scale")
    for key in ("open_angle", "closed_angle"):
        if key in data:
            data[key] = _number(data[key], f"teleop.{key}", positive=False)
    if data.get("open_angle", 0.45) == data.get("closed_angle", 0.05):
        raise RigConfigError("teleop: open_angle and closed_angle must differ")
    if data.get("axes") is not None:
        import numpy as np

        try:
            axes = np.array(data["axes"], dtype=np.float64)
        except (TypeError, ValueError):
            axes = np.zeros(0)
        if axes.shape != (3, 3) or not np.allclose(axes @ axes.T, np.eye(3), atol=1e-6) or np.linalg.det(axes) < 0:
            raise RigConfigError(f"teleop.axes: expected a 3x3 rotation matrix (rows of the robot axes in device "
                                 f"coordinates), got {data['axes']!r}")
        data["axes"] = tuple(tuple(float(v) for v in row) for row in axes)
    return TeleopConfig(**{**data, "backend": backend})


def _keyboard(raw: Any) -> KeyboardConfig:
    data = _section(raw, "keyboard", _fields(KeyboardConfig))
    backend = _backend(data, "keyboard", KEYBOARD_BACKENDS, "scripted")
    try:
        keys = {str(k).lower(): parse_event(v) for k, v in (data.get("keys") or {}).items()} or dict(DEFAULT_KEYS)
        long = [k for k in keys if len(k) != 1]
        if long:
            raise ValueError(f"keyboard.keys: bind single characters, got {long}")
        episodes = []
        for i, script in enumerate(data.get("episodes") or []):
            if not isinstance(script, list):
                raise ValueError(f"keyboard.episodes[{i}] must be a list of {{at: N, key: EVENT}}")
            events = []
            for item in script:
                if not isinstance(item, Mapping) or set(item) != {"at", "key"} or not isinstance(item["at"], int):
                    raise ValueError(f"keyboard.episodes[{i}]: each event is {{at: <poll count>, key: <event>}}, "
                                     f"got {item!r}")
                events.append((int(item["at"]), parse_event(item["key"])))
            episodes.append(tuple(events))
        on_success = parse_event(data["on_success"]) if data.get("on_success") else None
    except ValueError as exc:
        raise RigConfigError(str(exc)) from None
    if backend == "scripted" and not episodes:
        raise RigConfigError("keyboard.episodes: a scripted keyboard needs at least one episode script")
    return KeyboardConfig(backend=backend, keys=keys, episodes=tuple(episodes), on_success=on_success)


def rig_config_from_dict(raw: Any, source: str | None = None) -> RigConfig:
    """Validate a parsed YAML mapping into a RigConfig (RigConfigError naming the bad field)."""
    data = _section(raw, "rig config", _TOP)
    for key in ("task", "rate_hz", "workspace", "arm"):
        if key not in data:
            raise RigConfigError(f"rig config: missing required field {key!r}")
    if not isinstance(data["task"], str) or not data["task"]:
        raise RigConfigError(f"task: expected a task name, got {data['task']!r}")
    rate = _number(data["rate_hz"], "rate_hz")
    max_steps = data.get("max_steps", 1000)
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise RigConfigError(f"max_steps: expected a positive integer, got {max_steps!r}")
    ws = _section(data["workspace"], "workspace", {"low", "high"})
    try:
        workspace = Workspace(tuple(_number(v, "workspace.low", False) for v in ws.get("low", ())),
                              tuple(_number(v, "workspace.high", False) for v in ws.get("high", ())))
    except (ValueError, TypeError) as exc:
        raise RigConfigError(f"workspace: {exc}") from None
    home = data.get("home_pose")
    if home is not None:
        if not isinstance(home, list) or len(home) != 7:
            raise RigConfigError(f"home_pose: expected [x, y, z, qw, qx, qy, qz], got {home!r}")
        home = tuple(_number(v, "home_pose", False) for v in home)
        if not workspace.contains(home[:3]):
            raise RigConfigError(f"home_pose {home[:3]} lies outside the workspace {workspace}")
    sim = _section(data.get("sim"), "sim", {"task", "seed"})
    arm = _arm(data["arm"])
    if arm.backend == "flexiv" and home is None:
        raise RigConfigError("home_pose: a real arm needs a home pose to start each episode from")
    config = RigConfig(
        name=str(data.get("name") or "rig"), task=data["task"], rate_hz=rate, max_steps=max_steps,
        workspace=workspace, arm=arm, cameras=_cameras(data.get("cameras")), teleop=_teleop(data.get("teleop")),
        keyboard=_keyboard(data.get("keyboard")), home_pose=home, sim=SimConfig(**sim), source=source)
    if config.uses_sim:
        try:
            from sime_policy.envs.tasks import get_task

            get_task(config.sim.task)
        except ImportError:  # pragma: no cover - sime_policy missing entirely
            pass
        except ValueError as exc:
            raise RigConfigError(f"sim.task: {exc}") from None
    return config


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
