"""Teleoperation recorder: operator drives the arm, each demonstration goes straight into the store.

One atomic writer per episode: an episode becomes visible only when the operator finishes it; a
discarded episode (or one interrupted by an error or Ctrl-C) leaves nothing in the store.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from . import geometry as geo
from .keyboard import KeyEvent
from .rig import Observation, Rig
from .timing import RateLimiter, StepTimes

if TYPE_CHECKING:  # pragma: no cover
    from sime_data import EpisodeWriter, Store

log = logging.getLogger(__name__)


class EpisodeDiscarded(Exception):
    """Raised into an episode's writer so it deletes the frames it wrote."""


@dataclass
class SessionResult:
    """What a recording or evaluation session produced."""

    episode_ids: list[str] = field(default_factory=list)
    discarded: int = 0
    quit: bool = False
    successes: list[bool | None] = field(default_factory=list)
    times: StepTimes = field(default_factory=StepTimes)
    overruns: int = 0


def step_extras(ob: Observation) -> dict[str, Any]:
    """Per-step extra arrays: each camera's own frame timestamp."""
    return {"camera_timestamps": {name: np.float64(t) for name, t in ob.camera_timestamps.items()}}


def drop_writer(writer: EpisodeWriter) -> None:
    """Discard the writer's current episode and delete its frames."""
    writer.discard()
    writer.close(EpisodeDiscarded())


def record_teleop(rig: Rig, store: Store, *, episodes: int = 1, task: str | None = None,
                  max_steps: int | None = None, operator: str | None = None,
                  on_event: Callable[[str], None] | None = None) -> SessionResult:
    """Record up to `episodes` demonstrations at the rig's rate (start/finish/discard/quit by key)."""
    config = rig.config
    task = task or config.task
    max_steps = max_steps or config.max_steps
    say = on_event or (lambda msg: log.info(msg))
    result = SessionResult()
    limiter = RateLimiter(config.rate_hz)
    arm, teleop, keyboard = rig.arm, rig.teleoperator, rig.keyboard
    if teleop is None:
        raise ValueError("record_teleop needs a rig built with teleop=True")
    while len(result.episode_ids) < episodes and not result.quit:
        keyboard.new_episode()
        rig.home()
        teleop.reset_base()
        base = arm.state().tcp_pose
        base_pos, base_rot = geo.pose_to_matrix(base)
        say(f"episode {len(result.episode_ids) + 1}/{episodes}: press start")
        writer = None
        steps = 0
        limiter.reset()
        try:
            while True:
                limiter.wait()
                events = keyboard.poll()
                if KeyEvent.QUIT in events:
                    result.quit = True
                if KeyEvent.DISCARD in events or result.quit:
                    if writer is not None:
                        drop_writer(writer)
                        writer = None
                        result.discarded += 1
                        say("discarded")
                    break
                if writer is not None and (ended := _end_event(events)) is not None:
                    result.episode_ids.append(_finish(writer, ended, steps, config, operator, limiter))
                    result.successes.append(ended)
                    writer = None
                    say(f"saved episode {result.episode_ids[-1]} ({steps} steps)")
                    break
                if writer is None and KeyEvent.START in events:
                    writer = store.writer("teleop", task, atomic=True, model_xml=rig.model_xml(), rig=config.name)
                    limiter.overruns = 0
                    say("recording")
                ob = rig.observe()
                result.times.add("device_read", ob.io_s)
                cmd = teleop.read()
                pos, rot = cmd.apply(base_pos, base_rot)
                t_send = time.perf_counter()
                arm.send_gripper_width(geo.command_to_width(cmd.gripper, arm.max_gripper_width))
                sent = arm.send_tcp_pose(geo.matrix_to_pose(pos, rot))
                result.times.add("device_write", time.perf_counter() - t_send)
                if writer is None:
                    continue
                action = geo.pose_to_action(sent, cmd.gripper)
                t_write = time.perf_counter()
                writer.add_step(obs=ob.obs, action=action, timestamp=np.float64(ob.timestamp), extras=step_extras(ob))
                result.times.add("store_write", time.perf_counter() - t_write)
                steps += 1
                if steps >= max_steps:
                    result.episode_ids.append(_finish(writer, None, steps, config, operator, limiter, timeout=True))
                    result.successes.append(None)
                    writer = None
                    say(f"saved episode {result.episode_ids[-1]} at the step limit ({steps} steps)")
                    break
        except BaseException as exc:
            if writer is not None:
                writer.close(exc)  # atomic: nothing of this episode stays
            arm.stop()
            raise
        result.overruns += limiter.overruns
    return result


def _end_event(events: list[KeyEvent]) -> bool | None:
    """True/False when the events end the episode as a success/failure, None when they do not end it."""
    if KeyEvent.FAILURE in events:
        return False
    if KeyEvent.FINISH in events or KeyEvent.SUCCESS in events:
        return True
    return None


def _finish(writer: EpisodeWriter, success: bool | None, steps: int, config: Any, operator: str | None,
            limiter: RateLimiter, timeout: bool = False) -> str:
    episode_id = writer.finish(success=success, rate_hz=config.rate_hz, rig_config=config.source, operator=operator,
                               overruns=limiter.overruns, timeout=timeout)
    writer.close()
    return episode_id
