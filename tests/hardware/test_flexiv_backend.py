"""The Flexiv backend against a stand-in `flexivrdk` module (a simulated controller with the RDK's Python names)."""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import numpy as np
import pytest

from hardware.arm import Workspace
from hardware.backends.flexiv import FlexivArm
from hardware.errors import DeviceNotFoundError, DeviceStateError


def make_rdk(serials=("Rizon4-000001",), fault=False, clearable=True, keyword_limits=True) -> types.ModuleType:
    """A module with Robot/Gripper/Mode like flexivrdk >= 1.4; the robot reaches every target at once."""
    rdk = types.ModuleType("flexivrdk")
    rdk.Mode = SimpleNamespace(IDLE="IDLE", NRT_CARTESIAN_MOTION_FORCE="NRT_CARTESIAN_MOTION_FORCE")
    rdk.log: list = []

    class Robot:
        def __init__(self, serial: str) -> None:
            if serial not in serials:
                raise RuntimeError(f"[flexivrdk] no robot with serial {serial} found on the network")
            self._fault, self._enabled, self._polls = fault, False, 0
            self.tcp = np.array([0.5, 0.0, 0.3, 0.0, 0.0, 1.0, 0.0])
            rdk.robot = self

        def fault(self) -> bool:
            return self._fault

        def ClearFault(self) -> bool:  # noqa: N802
            self._fault = self._fault and not clearable
            return not self._fault

        def Enable(self) -> None:  # noqa: N802
            self._enabled = True

        def operational(self) -> bool:
            self._polls += 1
            return self._enabled and self._polls > 2

        def SwitchMode(self, mode: str) -> None:  # noqa: N802
            rdk.log.append(("mode", mode))

        if keyword_limits:
            def SendCartesianMotionForce(self, pose, wrench, velocity=(), max_linear_vel=0.5,  # noqa: N802
                                         max_angular_vel=1.0):
                rdk.log.append(("pose", list(pose), max_linear_vel))
                self.tcp = np.array(pose)
        else:
            def SendCartesianMotionForce(self, pose, wrench):  # noqa: N802
                rdk.log.append(("pose", list(pose), None))
                self.tcp = np.array(pose)

        def states(self):
            return SimpleNamespace(tcp_pose=list(self.tcp), q=[0.1] * 7)

        def Stop(self) -> None:  # noqa: N802
            rdk.log.append(("stop",))

    class Gripper:
        def __init__(self, robot: Robot) -> None:
            self.width = 0.0

        def Enable(self, name: str) -> None:  # noqa: N802
            rdk.log.append(("gripper", name))

        def Move(self, width: float, velocity: float, force: float) -> None:  # noqa: N802
            self.width = width

        def states(self):
            return SimpleNamespace(width=self.width)

        def Stop(self) -> None:  # noqa: N802
            rdk.log.append(("gripper_stop",))

    rdk.Robot, rdk.Gripper = Robot, Gripper
    return rdk


@pytest.fixture
def install(monkeypatch):
    def _install(**kwargs) -> types.ModuleType:
        rdk = make_rdk(**kwargs)
        monkeypatch.setitem(sys.modules, "flexivrdk", rdk)
        return rdk
    return _install


def test_connect_command_and_home(install) -> None:
    rdk = install()
    ws = Workspace((0.3, -0.3, 0.05), (0.8, 0.3, 0.5))
    with FlexivArm("Rizon4-000001", workspace=ws, max_linear_vel=0.2) as arm:
        assert ("mode", "NRT_CARTESIAN_MOTION_FORCE") in rdk.log and ("gripper", "Robotiq-2F-85") in rdk.log
        state = arm.state()
        np.testing.assert_allclose(state.tcp_pose, [0.5, 0.0, 0.3, 0.0, 0.0, 1.0, 0.0])
        assert state.joints.shape == (7,)
        sent = arm.send_tcp_pose([1.5, 0.0, 0.0, 0.0, 0.0, 2.0, 0.0])  # outside the box, unnormalised quaternion
        np.testing.assert_allclose(sent, [0.8, 0.0, 0.05, 0.0, 0.0, 1.0, 0.0])
        assert rdk.log[-1] == ("pose", sent.tolist(), 0.2)
        assert arm.send_gripper_width(0.5) == 0.085 and arm.state().gripper_width == 0.085
        arm.go_home(np.array([0.6, 0.0, 0.2, 0.0, 0.0, 1.0, 0.0]))
        np.testing.assert_allclose(arm.state().tcp_pose[:3], [0.6, 0.0, 0.2])
        with pytest.raises(ValueError, match="needs home_pose"):
            arm.go_home(None)
    assert rdk.log[-2:] == [("gripper_stop",), ("stop",)]  # closing stops the gripper and the arm


def test_older_rdk_signature_falls_back(install) -> None:
    rdk = install(keyword_limits=False)
    with FlexivArm("Rizon4-000001") as arm:
        arm.send_tcp_pose([0.5, 0.0, 0.3, 1.0, 0.0, 0.0, 0.0])
        arm.send_tcp_pose([0.5, 0.0, 0.3, 1.0, 0.0, 0.0, 0.0])
    assert [entry[2] for entry in rdk.log if entry[0] == "pose"] == [None, None]


def test_connection_errors_are_clear(install) -> None:
    install()
    with pytest.raises(DeviceNotFoundError, match="no Flexiv robot 'Rizon4-999999' reachable.*Remote mode"):
        FlexivArm("Rizon4-999999").connect()
    install(fault=True, clearable=False)
    with pytest.raises(DeviceStateError, match="fault that cannot be cleared"):
        FlexivArm("Rizon4-000001").connect()
    with pytest.raises(ValueError, match="serial number"):
        FlexivArm("")
