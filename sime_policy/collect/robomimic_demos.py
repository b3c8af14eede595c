"""Import real robomimic demos (delta OSC_POSE actions) as SIME demos with absolute 10-D actions.

robomimic's datasets hold *relative* actions, per arm ``[dpos (3), drot (3, axis-angle), gripper]`` in
[-1, 1], which robosuite's OSC_POSE controller scales by its output limits (by default 0.05 m and
0.5 rad per unit) and applies to the pose of the gripper's grip site at the moment the action is
given. Because every demo also records the simulator state before each step, the goal pose each
action commanded can be recomputed exactly: restore ``states[t]``, read the grip-site pose, apply the
scaled delta the way the controller does (``goal_pos = pos + R_f dpos``,
``goal_rot = R_f exp(drot) R_f^T R``, with ``R_f`` the controller's reference frame: the world for
robosuite < 1.5 files, the robot base for robosuite 1.5 ``input_ref_frame='base'``). The goal is written
as SIME's absolute action ``[goal_pos, rot6d(goal_rot), gripper]``, the form `SimEnv.step` takes.

The converted demos go into the store through one atomic writer per array layout (nothing becomes
visible unless every demo converted), with the file's observations, states, rewards and dones, and the
original actions under ``actions_delta``; then the demo version and its evenly spaced core subsets are
created like `record_demos` does.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sime_data.errors import ImportFormatError
from sime_data.robomimic_reader import inspect_file as _inspect_file, open_h5 as _open_h5, read_demo as _read_demo
from sime_data.versions import check_names_free

from .demos import CORE_SIZES, core_indices, demo_version_names
from ..envs import SimEnv, get_task, init_state_id, rotations

if TYPE_CHECKING:  # pragma: no cover
    from sime_data import EpisodeWriter, Store

log = logging.getLogger(__name__)

#: Array key the original (relative) robomimic actions are kept under.
DELTA_KEY = "actions_delta"
#: Width of one arm's robomimic delta action: dpos (3) + axis-angle drot (3) + gripper (1).
DELTA_WIDTH = 7
#: robomimic's default OSC_POSE limits: input range and output range per unit action (position, rotation).
DEFAULT_INPUT_RANGE = (-1.0, 1.0)
DEFAULT_OUTPUT_MAX = (0.05, 0.05, 0.05, 0.5, 0.5, 0.5)
#: Rule `kind` of the version an import creates.
RULE_KIND = "robomimic_delta_to_abs"


# ============================================================================ controller settings
@dataclass(frozen=True)
class DeltaScaling:
    """How robosuite's OSC_POSE turns a [-1, 1] delta action into metres / radians, and in which frame."""

    input_min: np.ndarray
    input_max: np.ndarray
    output_min: np.ndarray
    output_max: np.ndarray
    ref_frame: str = "world"

    def scale(self, delta: np.ndarray) -> np.ndarray:
        """(..., 6) raw delta actions -> metres and radians, clipped and mapped exactly like `Controller.scale_action`."""
        scale = np.abs(self.output_max - self.output_min) / np.abs(self.input_max - self.input_min)
        out_mid = (self.output_max + self.output_min) / 2.0
        in_mid = (self.input_max + self.input_min) / 2.0
        return (np.clip(delta, self.input_min, self.input_max) - in_mid) * scale + out_mid

    def describe(self) -> dict[str, Any]:
        """JSON form, recorded in the version's rule."""
        return {"input_min": self.input_min.tolist(), "input_max": self.input_max.tolist(),
                "output_min": self.output_min.tolist(), "output_max": self.output_max.tolist(),
                "ref_frame": self.ref_frame}


def _vec6(value: Any, default: Any, what: str) -> np.ndarray:
    """A scalar or 6-vector controller limit as a float64 6-vector."""
    arr = np.asarray(default if value is None else value, dtype=np.float64).ravel()
    if arr.size == 1:
        arr = np.repeat(arr, 6)
    if arr.size != 6:
        raise ImportFormatError(f"controller {what} must be a number or 6 numbers, got {value!r}")
    return arr


def _arm_controller_config(controller: Any) -> tuple[dict[str, Any] | None, bool]:
    """The arm part of env_args' controller_configs, and whether it is a robosuite >= 1.5 composite config."""
    if not isinstance(controller, Mapping):
        return None, False
    parts = controller.get("body_parts")
    if isinstance(parts, Mapping):
        arms = parts.get("arms") if isinstance(parts.get("arms"), Mapping) else parts
        for name in ("right", "left"):
            if isinstance(arms.get(name), Mapping):
                return dict(arms[name]), True
        return None, True
    return dict(controller), False


def delta_scaling(env_args: Any) -> DeltaScaling:
    """Controller scaling of a robomimic file from its env_args (robomimic's OSC_POSE defaults where absent).

    Raises ImportFormatError when the file says its actions are not delta OSC_POSE actions.
    """
    env_kwargs = env_args.get("env_kwargs", {}) if isinstance(env_args, Mapping) else {}
    controller = env_kwargs.get("controller_configs") if isinstance(env_kwargs, Mapping) else None
    cfg, composite = _arm_controller_config(controller)
    if cfg is None:
        if controller is not None:
            log.warning("env_args' controller_configs has no arm controller; assuming robomimic's OSC_POSE defaults")
        cfg = {}
    kind = cfg.get("type", "OSC_POSE")
    if kind != "OSC_POSE":
        raise ImportFormatError(f"the file's actions drive a {kind!r} controller; only OSC_POSE delta actions convert "
                                "to absolute end-effector poses (import it as it is with sime_data.import_robomimic)")
    absolute = cfg.get("control_delta") is False or cfg.get("input_type") == "absolute"
    if absolute:
        raise ImportFormatError("the file's controller config says its actions are already absolute "
                                "(control_delta=False / input_type='absolute'); there is nothing to convert")
    ref_frame = str(cfg.get("input_ref_frame", "base" if composite else "world"))
    if ref_frame not in ("world", "base"):
        raise ImportFormatError(f"unsupported controller input_ref_frame {ref_frame!r} (expected 'world' or 'base')")
    out_max = _vec6(cfg.get("output_max"), DEFAULT_OUTPUT_MAX, "output_max")
    return DeltaScaling(
        input_min=_vec6(cfg.get("input_min"), DEFAULT_INPUT_RANGE[0], "input_min"),
        input_max=_vec6(cfg.get("input_max"), DEFAULT_INPUT_RANGE[1], "input_max"),
        output_min=_vec6(cfg.get("output_min"), -out_max, "output_min"),
        output_max=out_max,
        ref_frame=ref_frame,
    )


# ============================================================================ conversion
def delta_to_absolute(delta: np.ndarray, eef_pos: np.ndarray, eef_rot: np.ndarray, scaling: DeltaScaling,
                      frame_rot: np.ndarray | None = None) -> np.ndarray:
    """One arm's 7-D delta action -> the 10-D absolute action OSC_POSE would target from pose (eef_pos, eef_rot).

    `frame_rot` is the controller reference frame's world rotation (robot base for 'base'; None = world).
    """
    delta = np.asarray(delta, dtype=np.float64)
    scaled = scaling.scale(delta[:6])
    dpos, drot = scaled[:3], rotations.rotvec_to_matrix(scaled[3:6])
    if frame_rot is not None:
        dpos = frame_rot @ dpos
        drot = frame_rot @ drot @ frame_rot.T
    goal_pos = np.asarray(eef_pos, dtype=np.float64) + dpos
    goal_rot = drot @ np.asarray(eef_rot, dtype=np.float64)
    return np.concatenate([goal_pos, rotations.matrix_to_rot6d(goal_rot), delta[6:7]])


class _Converter:
    """Restores recorded states in a SimEnv and converts delta actions to absolute ones, demo by demo."""

    def __init__(self, env: SimEnv, scaling: DeltaScaling) -> None:
        self.env = env
        self.scaling = scaling
        self._default_xml = env.model_xml()

    def load_model(self, model_xml: str | None, state: np.ndarray, where: str) -> str:
        """Make the env's model the demo's (or keep the task's own when the demo has none); returns the XML used."""
        env = self.env
        xml = self._default_xml
        if model_xml:
            try:
                xml = env.env.edit_model_xml(model_xml)  # re-point asset paths at this robosuite install
            except Exception as exc:
                raise ImportFormatError(f"{where}: model_file is not a MuJoCo XML robosuite can edit: {exc}") from exc
        if xml != env.model_xml():
            try:
                self._load(xml)
            except Exception as exc:
                self._load(self._default_xml)
                raise ImportFormatError(
                    f"{where}: its model_file cannot be loaded into the {env.task!r} environment of this robosuite "
                    f"install (recorded with another robosuite version or robot?): {type(exc).__name__}: {exc}"
                ) from exc
        size = env.get_state().size
        if state.size != size:
            raise ImportFormatError(
                f"{where}: states have {state.size} numbers per step but the {env.task!r} model"
                f"{' from its model_file' if model_xml else ''} has {size} (time + qpos + qvel); "
                "the file does not belong to this task"
            )
        return xml

    def _load(self, xml: str) -> None:
        """Rebuild the env's model from `xml` (SimEnv.reset_to does the same when given a state too)."""
        self.env.env.reset_from_xml_string(xml)
        self.env._xml = xml

    def convert(self, actions: np.ndarray, states: np.ndarray) -> np.ndarray:
        """(T, 7 * arms) delta actions + (T, S) states before each step -> (T, 10 * arms) absolute actions."""
        env = self.env
        sim = env.env.sim
        arms = env.num_arms
        out = np.empty((len(actions), 10 * arms), dtype=np.float64)
        env.reset_to(states[0])  # robots, controllers and references consistent with this model
        for t, (action, state) in enumerate(zip(actions, states)):
            sim.set_state_from_flattened(np.asarray(state, dtype=np.float64))
            sim.forward()
            for i in range(arms):
                pos, rot = env.eef_pose(i)
                frame = self._frame_rot(i) if self.scaling.ref_frame == "base" else None
                out[t, 10 * i:10 * (i + 1)] = delta_to_absolute(action[DELTA_WIDTH * i:DELTA_WIDTH * (i + 1)], pos, rot,
                                                                 self.scaling, frame)
        return out

    def _frame_rot(self, arm: int) -> np.ndarray:
        """World rotation of arm `arm`'s controller base frame (robosuite 1.5 'base' input_ref_frame)."""
        robot = self.env.env.robots[arm]
        _, base_rot = robot.composite_controller.get_controller_base_pose(controller_name=robot.arms[0])
        return np.asarray(base_rot, dtype=np.float64).reshape(3, 3)


# ============================================================================ import
def _version_names(task: str, version: str | None, n: int) -> tuple[str, dict[int, str]]:
    """Full and core-subset version names: record_demos' names, or '<version>' and '<version>/core_<N>'."""
    if version is None:
        return demo_version_names(task, n)
    return version, {size: f"{version}/core_{size}" for size in CORE_SIZES if size <= n}


def _check_env_name(env_args: Any, task: str, file_label: str) -> None:
    """Refuse a file whose env_args name another robosuite environment than the task's."""
    spec = get_task(task)
    name = env_args.get("env_name") if isinstance(env_args, Mapping) else None
    if isinstance(name, str) and name != spec.env_name:
        raise ImportFormatError(
            f"{file_label} was recorded in robosuite environment {name!r}, but task {task!r} is {spec.env_name!r}"
        )


def import_robomimic_demos(store: Store, path: str | os.PathLike, *, task: str, version: str | None = None,
                           progress: bool = True) -> list[str]:
    """Import a robomimic file of delta-action demos with absolute 10-D actions; creates demo + core versions."""
    from tqdm.auto import tqdm

    path = Path(path)
    file_label = str(path)
    spec = get_task(task)
    width = DELTA_WIDTH * spec.num_arms
    with _open_h5(path) as f:
        try:
            plan = _inspect_file(f, file_label)
        except (OSError, RuntimeError, KeyError, ValueError) as exc:
            if isinstance(exc, ImportFormatError):
                raise
            raise ImportFormatError(f"{file_label}: cannot read the file's layout (corrupt file?): {exc}") from exc
        _check_env_name(plan.env_args, task, file_label)
        for demo in plan.demos:
            where = f"{file_label}: data/{demo.name}"
            shape = demo.datasets["actions"][0]
            if len(shape) != 2 or shape[1] != width:
                raise ImportFormatError(
                    f"{where}/actions has shape {shape}, expected (N, {width}): robomimic delta OSC_POSE actions "
                    f"are [dpos(3), drot(3), gripper(1)] per arm ({spec.num_arms} arm(s) in {task!r})"
                    + (" - this looks like absolute 10-D actions already" if len(shape) == 2
                       and shape[1] == 10 * spec.num_arms else "")
                )
            if "states" not in demo.datasets or len(demo.datasets["states"][0]) != 2:
                raise ImportFormatError(f"{where} has no 2-D 'states' dataset; converting actions needs the "
                                        "simulator state before every step")
            if DELTA_KEY in demo.datasets:
                raise ImportFormatError(f"{where} already has an {DELTA_KEY!r} dataset; it would be overwritten")
        scaling = delta_scaling(plan.env_args)
        full_name, core_names = _version_names(task, version, len(plan.demos))
        check_names_free(store, [full_name, *core_names.values()], "import with another version= name")

        ids: list[str] = []
        with SimEnv(task) as env, ExitStack() as stack:
            converter = _Converter(env, scaling)
            writers: dict[tuple[Any, ...], EpisodeWriter] = {}
            for demo in tqdm(plan.demos, desc=f"convert {path.name}", unit="demo", disable=not progress):
                where = f"{file_label}: data/{demo.name}"
                arrays = _read_demo(f["data"][demo.name], demo, file_label)
                arrays = {k: v for k, v in arrays.items() if not k.startswith("next_obs/")}
                delta = np.asarray(arrays.pop("actions"), dtype=np.float64)
                states = np.asarray(arrays["states"], dtype=np.float64)
                if not (np.isfinite(delta).all() and np.isfinite(states).all()):
                    raise ImportFormatError(f"{where}: actions or states contain NaN/inf")
                xml = converter.load_model(demo.model_xml, states[0], where)
                arrays["actions"] = converter.convert(delta, states)
                arrays[DELTA_KEY] = delta
                signature = tuple(sorted((k, v.shape[1:], v.dtype.str) for k, v in arrays.items()))
                writer = writers.get(signature)
                if writer is None:
                    writer = stack.enter_context(store.writer(source="demo", task=task, atomic=True,
                                                              expert="robomimic", file=path.name))
                    writers[signature] = writer
                success = _demo_success(arrays)
                ids.append(writer.add_episode(arrays, model_xml=xml, source_name=demo.name, init_state=states[0],
                                              init_state_id=init_state_id(states[0]), trial=0,
                                              **({"success": success} if success is not None else {})))
    # every episode is committed now; versions refer to them
    rule = {"kind": RULE_KIND, "task": task, "file": path.name, "n": len(ids), "scaling": scaling.describe(),
            "delta_key": DELTA_KEY}
    store.create_version(full_name, ids, message=f"{len(ids)} robomimic {task} demos from {path.name}, "
                         "actions converted to absolute poses", rule=rule)
    for size, name in core_names.items():
        picked = [ids[i] for i in core_indices(len(ids), size)]
        store.create_version(name, picked, parents=[full_name], message=f"{size} evenly spaced demos of {full_name}",
                             rule={"kind": "core_subset", "size": size, "of": full_name, "spacing": "linspace"})
    log.info("imported %d robomimic demos of %s from %s as version %s", len(ids), task, path, full_name)
    return ids


def _demo_success(arrays: Mapping[str, np.ndarray]) -> bool | None:
    """Whether a demo ends in success per its rewards or dones (None when it has neither)."""
    for key in ("rewards", "dones"):
        if key in arrays and len(arrays[key]):
            return bool(np.asarray(arrays[key]).ravel()[-1] > 0)
    return None
