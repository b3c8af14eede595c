"""Scripted pick (and place) expert producing absolute 10-D end-effector actions.

Phases: approach above the grasp point, descend, close the gripper, lift; with a place target
also carry the object above it, (optionally) align it there with closed-loop correction on the
object's measured position, lower, release and retreat. The commanded pose moves toward
each phase's goal at capped linear and angular speeds, so actions are smooth. Placing uses the
object-in-gripper transform measured after the grasp, so it is the *object* that is put at the
target (optionally turned to the nearest of `place_symmetry` equivalent yaws, for the square nut).
The expert reads object and target poses from the simulator (privileged state).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..envs import rotations
from ..envs.wrapper import SimEnv

OPEN, CLOSED = -1.0, 1.0

PosFn = Callable[[SimEnv], np.ndarray]
PoseFn = Callable[[SimEnv], tuple[np.ndarray, np.ndarray]]
YawFn = Callable[[SimEnv], float]


@dataclass(frozen=True)
class PickPlaceConfig:
    """Geometry of one pick(-and-place) task for the scripted expert."""

    grasp_pos: PosFn  # world point the grip site closes on (before `grasp_offset`)
    object_pose: PoseFn  # world (position, rotation matrix) of the object's body
    grasp_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    grasp_yaw: YawFn | None = None  # world yaw of the finger closing direction; None keeps the start orientation
    hover_height: float = 0.10  # above the grasp point while approaching
    lift_height: float = 0.15  # how far to lift after grasping
    place_pos: PosFn | None = None  # where the object's body origin should end up (None: pick and lift only)
    place_symmetry: int | None = None  # turn the object to the nearest of this many yaws (k * 2pi / n); None: no turn
    carry_height: float = 0.0  # minimum grip-site height while carrying
    release_height: float = 0.06  # object above its place point when the gripper opens
    retreat_height: float = 0.12  # rise after releasing
    place_tol: float = 0.04  # how close the grip site must get before lowering / releasing
    servo_gain: float = 0.0  # per-step correction of the object's horizontal error while aligning and lowering
    align_height: float = 0.15  # with servoing: object height above its release point while aligning
    lower_speed: float | None = None  # metres per step while lowering (None: the expert's max_speed)


def _body_pose(env: SimEnv, body_id: int) -> tuple[np.ndarray, np.ndarray]:
    data = env.env.sim.data
    return np.array(data.body_xpos[body_id]), np.array(data.body_xmat[body_id]).reshape(3, 3)


def _cube_pose(env: SimEnv) -> tuple[np.ndarray, np.ndarray]:
    return _body_pose(env, env.env.cube_body_id)


def _can_pose(env: SimEnv) -> tuple[np.ndarray, np.ndarray]:
    return _body_pose(env, env.env.obj_body_id["Can"])


def _can_target(env: SimEnv) -> np.ndarray:
    e = env.env
    resting = -e.objects[e.object_id].bottom_offset[2]  # can origin above the bin floor when standing
    return np.array(e.target_bin_placements[e.object_id]) + [0.0, 0.0, resting]


def _nut_pose(env: SimEnv) -> tuple[np.ndarray, np.ndarray]:
    return _body_pose(env, env.env.obj_body_id["SquareNut"])


def _nut_handle(env: SimEnv) -> np.ndarray:
    e = env.env
    site = e.sim.model.site_name2id(e.nuts[0].important_sites["handle"])
    return np.array(e.sim.data.site_xpos[site])


def _nut_grasp_point(env: SimEnv) -> np.ndarray:
    """A point on the handle 1 cm outward of its centre, so the fingers stay clear of the nut's ring."""
    handle = _nut_handle(env)
    radial = handle - _nut_pose(env)[0]
    radial[2] = 0.0
    return handle + 0.01 * radial / max(np.linalg.norm(radial), 1e-9)


def _nut_grasp_yaw(env: SimEnv) -> float:
    """Close the fingers across the handle: perpendicular to the nut-centre -> handle direction."""
    radial = _nut_handle(env) - _nut_pose(env)[0]
    return float(np.arctan2(radial[1], radial[0]) + np.pi / 2)


def _square_peg(env: SimEnv) -> np.ndarray:
    e = env.env
    peg = np.array(e.sim.data.body_xpos[e.peg1_body_id])
    return np.array([peg[0], peg[1], e.table_offset[2] + 0.01])  # nut origin when it rests on the table


#: Expert configurations by task name (transport and toolhang have no scripted expert).
EXPERT_CONFIGS: dict[str, PickPlaceConfig] = {
    "lift": PickPlaceConfig(grasp_pos=lambda env: _cube_pose(env)[0], object_pose=_cube_pose,
                            grasp_offset=(0.0, 0.0, -0.005)),
    "can": PickPlaceConfig(grasp_pos=lambda env: _can_pose(env)[0], object_pose=_can_pose,
                           grasp_offset=(0.0, 0.0, 0.01), lift_height=0.12, place_pos=_can_target,
                           carry_height=1.05, release_height=0.04),
    "square": PickPlaceConfig(grasp_pos=_nut_grasp_point, object_pose=_nut_pose, grasp_yaw=_nut_grasp_yaw,
                              lift_height=0.2, place_pos=_square_peg, place_symmetry=4, carry_height=1.08,
                              release_height=0.03, retreat_height=0.1, place_tol=0.004, servo_gain=0.05,
                              lower_speed=0.01),
}


def _yaw_matrix(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _pointing_down(closing_yaw: float, reference: np.ndarray) -> np.ndarray:
    """Grip-site rotation pointing straight down, fingers closing along `closing_yaw` (or yaw + pi,
    whichever is nearer `reference`'s closing direction: the gripper is symmetric)."""
    ref = np.arctan2(reference[1, 0], reference[0, 0])
    yaw = ref + (closing_yaw - ref + np.pi / 2) % np.pi - np.pi / 2
    x = np.array([np.cos(yaw), np.sin(yaw), 0.0])
    z = np.array([0.0, 0.0, -1.0])
    return np.stack([x, np.cross(z, x), z], axis=1)


def _yaw_of(rot: np.ndarray) -> float:
    return float(np.arctan2(rot[1, 0], rot[0, 0]))


@dataclass
class _Phase:
    name: str
    goal: Callable[[], tuple[np.ndarray, np.ndarray]]  # grip-site (position, rotation) to move toward
    gripper: float
    tol: float = 0.01  # done when the grip site is within tol of the goal (and the command has arrived)...
    ori_tol: float = np.inf  # ...turned to within this angle (radians) of the goal orientation...
    min_steps: int = 0  # ...and at least this many steps were spent here
    max_steps: int = 60  # or after this many steps
    track: bool = False  # re-evaluate the goal every step (moving objects), else once on entry
    ready: Callable[[], bool] | None = None  # an extra condition for leaving the phase early
    speed: float | None = None  # overrides the expert's max_speed in this phase


@dataclass
class PickPlaceExpert:
    """Scripted expert for one SimEnv episode: call `reset()` after the env reset, then `act()` each step.

    `noise_std` adds Gaussian noise to each executed action: metres on the position and radians
    (as a random rotation vector) on the orientation; the gripper command stays clean.
    """

    env: SimEnv
    noise_std: float = 0.0
    seed: int | Sequence[int] | None = None
    max_speed: float = 0.02  # metres the commanded position may move per step
    max_turn: float = 0.08  # radians the commanded orientation may turn per step
    config: PickPlaceConfig = field(init=False)

    def __post_init__(self) -> None:
        if self.env.task not in EXPERT_CONFIGS:
            raise ValueError(f"no scripted expert for task {self.env.task!r}; available: {sorted(EXPERT_CONFIGS)}")
        self.config = EXPERT_CONFIGS[self.env.task]
        self.rng = np.random.default_rng(self.seed)
        self._phases: list[_Phase] = []

    # ------------------------------------------------------------------ planning
    def reset(self) -> None:
        """Plan the episode from the environment's current state."""
        cfg, env = self.config, self.env
        self._cmd_pos, self._cmd_rot = env.eef_pose(0)
        start_rot = self._cmd_rot.copy()
        self._grasp_rot = start_rot
        self._grasp_pos = np.zeros(3)
        self._object_in_grip: tuple[np.ndarray, np.ndarray] | None = None
        self._servo = np.zeros(3)
        robot = env.env.robots[0]
        self._finger_qpos = robot._ref_gripper_joint_pos_indexes[robot.arms[0]]
        self._last_fingers: np.ndarray | None = None

        def grasp_rot() -> np.ndarray:
            if cfg.grasp_yaw is None:
                return start_rot
            return _pointing_down(cfg.grasp_yaw(env), start_rot)

        def grasp_point() -> np.ndarray:
            return cfg.grasp_pos(env) + np.asarray(cfg.grasp_offset)

        def hover() -> tuple[np.ndarray, np.ndarray]:
            return grasp_point() + [0.0, 0.0, cfg.hover_height], grasp_rot()

        def descend() -> tuple[np.ndarray, np.ndarray]:
            self._grasp_pos, self._grasp_rot = grasp_point(), grasp_rot()
            return self._grasp_pos, self._grasp_rot

        def hold() -> tuple[np.ndarray, np.ndarray]:
            return self._grasp_pos, self._grasp_rot

        def lift() -> tuple[np.ndarray, np.ndarray]:
            z = self._grasp_pos[2] + cfg.lift_height
            if cfg.place_pos is not None:
                z = max(z, cfg.carry_height)
            return np.array([self._grasp_pos[0], self._grasp_pos[1], z]), self._grasp_rot

        phases = [
            _Phase("approach", hover, OPEN, tol=0.01, ori_tol=0.05, track=True),
            _Phase("descend", descend, OPEN, tol=0.005, ori_tol=0.05, max_steps=40, track=True),
            _Phase("close", hold, CLOSED, tol=np.inf, min_steps=10, max_steps=30, ready=self._fingers_still),
            _Phase("lift", lift, CLOSED, tol=0.03),
        ]
        if cfg.place_pos is not None:
            phases += self._place_phases()
        last = phases[-1]
        phases.append(_Phase("hold", last.goal, last.gripper, tol=-1.0, max_steps=10**9))
        self._phases = phases
        self._index = 0
        self._steps_in_phase = 0
        self._goal = phases[0].goal()

    def _place_phases(self) -> list[_Phase]:
        cfg, env = self.config, self.env

        def grip_goal(object_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            """Grip-site pose that puts the grasped object's origin at object_pos (turned to the target yaw)."""
            if self._object_in_grip is None:  # measured once, when the object has been lifted
                grip_pos, grip_rot = env.eef_pose(0)
                obj_pos, obj_rot = cfg.object_pose(env)
                self._object_in_grip = (grip_rot.T @ (obj_pos - grip_pos), grip_rot.T @ obj_rot)
                turn = 0.0
                if cfg.place_symmetry:
                    step = 2 * np.pi / cfg.place_symmetry
                    yaw = _yaw_of(obj_rot)
                    turn = (np.round(yaw / step) * step) - yaw
                self._place_rot = _yaw_matrix(turn) @ self._cmd_rot
            offset, _ = self._object_in_grip
            return object_pos - self._place_rot @ offset, self._place_rot

        def carry() -> tuple[np.ndarray, np.ndarray]:
            pos, rot = grip_goal(cfg.place_pos(env) + [0.0, 0.0, cfg.release_height])
            return np.array([pos[0], pos[1], max(cfg.carry_height, pos[2])]), rot

        def above() -> tuple[np.ndarray, np.ndarray]:
            return self._servoed(grip_goal(cfg.place_pos(env) + [0.0, 0.0, cfg.release_height + cfg.align_height]))

        def lower() -> tuple[np.ndarray, np.ndarray]:
            return self._servoed(grip_goal(cfg.place_pos(env) + [0.0, 0.0, cfg.release_height]))

        def release() -> tuple[np.ndarray, np.ndarray]:
            self._release_pos = self._cmd_pos.copy()  # open where the gripper is, then rise from there
            return self._release_pos, self._cmd_rot

        def retreat() -> tuple[np.ndarray, np.ndarray]:
            return self._release_pos + [0.0, 0.0, cfg.retreat_height], self._cmd_rot

        steady = {"count": 0, "last": None}

        def aligned() -> bool:
            """The object hangs still right above its place point (for a few steps in a row)."""
            pos = cfg.object_pose(env)[0]
            error = np.linalg.norm((cfg.place_pos(env) - pos)[:2])
            still = steady["last"] is not None and np.linalg.norm(pos - steady["last"]) < 1e-3
            steady["last"] = pos
            steady["count"] = steady["count"] + 1 if error < cfg.place_tol and still else 0
            return steady["count"] >= 3

        phases = [_Phase("carry", carry, CLOSED, tol=0.04, max_steps=80)]
        if cfg.servo_gain > 0:
            phases.append(_Phase("align", above, CLOSED, tol=np.inf, max_steps=80, track=True, ready=aligned))
        phases += [
            _Phase("lower", lower, CLOSED, tol=0.04, min_steps=2, max_steps=40, track=cfg.servo_gain > 0,
                   speed=cfg.lower_speed),
            _Phase("release", release, OPEN, tol=np.inf, min_steps=8),
            _Phase("retreat", retreat, OPEN, tol=0.03),
        ]
        return phases

    def _servoed(self, goal: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Shift a goal horizontally by the integrated error of the object's position (closed-loop placing)."""
        cfg = self.config
        if cfg.servo_gain <= 0 or cfg.place_pos is None:
            return goal
        error = cfg.place_pos(self.env) - cfg.object_pose(self.env)[0]
        error[2] = 0.0
        self._servo = np.clip(self._servo + cfg.servo_gain * error, -0.03, 0.03)
        return goal[0] + self._servo, goal[1]

    def _fingers_still(self) -> bool:
        """The gripper has stopped closing (it holds the object or is shut)."""
        fingers = self.env.env.sim.data.qpos[self._finger_qpos].copy()
        still = self._last_fingers is not None and np.abs(fingers - self._last_fingers).max() < 2e-4
        self._last_fingers = fingers
        return still

    # ------------------------------------------------------------------ acting
    @property
    def phase(self) -> str:
        """Name of the current phase."""
        return self._phases[self._index].name

    def _advance(self) -> None:
        phase = self._phases[self._index]
        eef, eef_rot = self.env.eef_pose(0)
        arrived = np.linalg.norm(self._cmd_pos - self._goal[0]) < 1e-9
        reached = arrived and np.linalg.norm(eef - self._goal[0]) <= phase.tol
        if reached and np.isfinite(phase.ori_tol):
            reached = np.linalg.norm(rotations.matrix_to_rotvec(self._goal[1] @ eef_rot.T)) <= phase.ori_tol
        if phase.ready is not None:
            reached = phase.ready() and (reached or not np.isfinite(phase.tol))
        if (reached and self._steps_in_phase >= phase.min_steps) or self._steps_in_phase >= phase.max_steps:
            self._index = min(self._index + 1, len(self._phases) - 1)
            self._steps_in_phase = 0
            self._goal = self._phases[self._index].goal()
        elif phase.track:
            self._goal = phase.goal()

    def act(self, obs: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Next absolute 10-D action (position, 6-D rotation, gripper), with optional Gaussian noise."""
        if not self._phases:
            self.reset()
        self._advance()
        phase = self._phases[self._index]
        goal_pos, goal_rot = self._goal
        delta = goal_pos - self._cmd_pos
        dist = np.linalg.norm(delta)
        speed = phase.speed or self.max_speed
        if dist > speed:
            delta *= speed / dist
        self._cmd_pos = self._cmd_pos + delta
        turn = rotations.matrix_to_rotvec(goal_rot @ self._cmd_rot.T)
        angle = np.linalg.norm(turn)
        if angle > self.max_turn:
            turn *= self.max_turn / angle
        if angle > 0:
            self._cmd_rot = rotations.rotvec_to_matrix(turn) @ self._cmd_rot
        self._steps_in_phase += 1
        pos, rot = self._cmd_pos.copy(), self._cmd_rot
        if self.noise_std > 0:
            pos = pos + self.rng.normal(0.0, self.noise_std, 3)
            rot = rotations.rotvec_to_matrix(self.rng.normal(0.0, self.noise_std, 3)) @ rot
        return np.concatenate([pos, rotations.matrix_to_rot6d(rot), [phase.gripper]])


def make_expert(env: SimEnv, *, noise_std: float = 0.0, seed: int | Sequence[int] | None = None) -> PickPlaceExpert:
    """The scripted expert for `env`'s task (ValueError if there is none)."""
    return PickPlaceExpert(env, noise_std=noise_std, seed=seed)
