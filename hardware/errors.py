"""Exceptions of the hardware rig: one family, each with a message that says what to do."""

from __future__ import annotations


class HardwareError(Exception):
    """Base class of every rig error (catch this to handle any device problem)."""


class BackendUnavailableError(HardwareError):
    """A real backend's library (pyrealsense2, flexivrdk, pynput, the Force Dimension SDK) is not installed."""


class DeviceNotFoundError(HardwareError):
    """The library is there but the device is not (unplugged, wrong serial or address, no permission)."""


class DeviceStateError(HardwareError):
    """A device was used before connect(), after close(), or reported a fault."""


class RigConfigError(HardwareError, ValueError):
    """The rig configuration file is missing, malformed or inconsistent."""


class RecordingFormatError(HardwareError, ValueError):
    """A real-world recording folder does not have the expected layout."""
