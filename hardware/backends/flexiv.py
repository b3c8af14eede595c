"""Flexiv Rizon arm (and a gripper attached to it, e.g. Robotiq 2F-85) through the Flexiv RDK (`flexivrdk`).

Uses the RDK >= 1.4 Python API: ``Robot(serial)``, ``fault()/ClearFault()``, ``Enable()``,
``operational()``, ``SwitchMode(Mode.NRT_CARTESIAN_MOTION_FORCE)``, ``SendCartesianMotionForce``
(pose ``[x, y, z, qw, qx, qy, qz]``), ``states().tcp_pose / .q``, ``Stop()``; the gripper through
``Gripper(robot)``, ``Enable(name)``, ``Move(width, velocity, force)``, ``states().width``, ``Stop()``.
flexivrdk has wheels for Python 3.10 and 3.12+ only (`pip install -e '.[flexiv]'`).
"""

from __future__ import annotations

import logging
import time

import numpy as np

from ..arm import ArmState, RobotArm, Workspace
from ..errors import DeviceNotFoundError, DeviceStateError
from ._lazy import require

log = logging.getLogger(__name__)

INSTALL = "pip install -e '.[flexiv]' (wheels exist for Python 3.10 and 3.12+, not 3.11)"


class FlexivArm(RobotArm):
    """A Flexiv arm streamed non-real-time Cartesian targets, with its gripper commanded by width."""

    def __init__(self, serial: str, name: str = "arm", workspace: Workspace | None = None,
                 max_gripper_width: float = 0.085, gripper_name: str | None = "Robotiq-2F-85",
                 max_linear_vel: float = 0.3, max_angular_vel: float = 1.0, gripper_velocity: float = 0.1,
                 gripper_force: float = 20.0, enable_timeout_s: float = 10.0) -> None:
        super().__init__(name, workspace, max_gripper_width)
        if not serial:
            raise ValueError("the Flexiv arm needs its serial number (arm.serial in the rig config, e.g. 'Rizon4-062468')")
        self.serial = serial
        self.gripper_name = gripper_name
        self.max_linear_vel = max_linear_vel
        self.max_angular_vel = max_angular_vel
        self.gripper_velocity = gripper_velocity
        self.gripper_force = gripper_force
        self.enable_timeout_s = enable_timeout_s
        self._robot = None
        self._gripper = None
        self._limits_by_name = True

    def _connect(self) -> None:
        rdk = require("flexivrdk", INSTALL)
        try:
            robot = rdk.Robot(self.serial)
        except Exception as exc:  # noqa: BLE001 - the RDK raises plain RuntimeErrors
            raise DeviceNotFoundError(f"no Flexiv robot {self.serial!r} reachable: {exc} (check the serial, the network "
                                      "and that the robot is in Remote mode)") from None
        if robot.fault() and not robot.ClearFault():
            raise DeviceStateError(f"Flexiv robot {self.serial} has a fault that cannot be cleared")
        robot.Enable()
        deadline = time.monotonic() + self.enable_timeout_s
        while not robot.operational():
            if time.monotonic() > deadline:
                raise DeviceStateError(f"Flexiv robot {self.serial} did not become operational within "
                                       f"{self.enable_timeout_s} s (E-stop released? Remote mode?)")
            time.sleep(0.1)
        robot.SwitchMode(rdk.Mode.NRT_CARTESIAN_MOTION_FORCE)
        self._robot = robot
        if self.gripper_name:
            gripper = rdk.Gripper(robot)
            if hasattr(gripper, "Enable"):  # RDK >= 1.5 selects the gripper by name; 1.4 drives the configured one
                gripper.Enable(self.gripper_name)
            self._gripper = gripper

    def _read_state(self) -> ArmState:
        states = self._robot.states()
        width = float(self._gripper.states().width) if self._gripper is not None else float("nan")
        return ArmState(np.asarray(states.tcp_pose, dtype=np.float64)[:7], np.asarray(states.q, dtype=np.float64),
                        width, time.time())

    def _send_pose(self, pose: np.ndarray) -> None:
        # positional order after the wrench changed across RDK releases (1.5 inserted a velocity argument):
        # pass the speed limits by name, and fall back to the controller's limits if this RDK names them otherwise
        if self._limits_by_name:
            try:
                self._robot.SendCartesianMotionForce(pose.tolist(), [0.0] * 6, max_linear_vel=self.max_linear_vel,
                                                     max_angular_vel=self.max_angular_vel)
                return
            except TypeError:
                log.warning("this flexivrdk does not take max_linear_vel/max_angular_vel by name; "
                            "using the controller's default speed limits")
                self._limits_by_name = False
        self._robot.SendCartesianMotionForce(pose.tolist(), [0.0] * 6)

    def _send_gripper(self, width: float) -> None:
        if self._gripper is not None:
            self._gripper.Move(width, self.gripper_velocity, self.gripper_force)

    def _go_home(self, pose: np.ndarray | None, tolerance: float = 0.005, timeout_s: float = 15.0) -> None:
        if pose is None:
            raise ValueError("the Flexiv arm needs home_pose in the rig config to go home")
        self._send_gripper(self.max_gripper_width)
        deadline = time.monotonic() + timeout_s
        while np.linalg.norm(self._read_state().tcp_pose[:3] - pose[:3]) > tolerance:
            if time.monotonic() > deadline:
                raise DeviceStateError(f"Flexiv robot did not reach the home pose within {timeout_s} s")
            self.send_tcp_pose(pose)
            time.sleep(0.05)

    def _stop(self) -> None:
        if self._gripper is not None:
            self._gripper.Stop()
        if self._robot is not None:
            self._robot.Stop()

    def _disconnect(self) -> None:
        self._robot = None
        self._gripper = None
