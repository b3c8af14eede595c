"""Real robot rig: device interfaces with real and simulated backends, teleop recording, real-world evaluation.

Modules: `arm`, `camera`, `teleoperator`, `keyboard` (interfaces); `backends` (flexiv, realsense,
sigma7, pynput_keyboard: imported lazily; sim_world/sim_devices: robosuite); `config` (rig YAML);
`rig` (devices together); `recorder` (teleoperation -> store); `evaluation`, `ensemble`, `safety`
(policy on the rig); `cleaning` (static frames -> new version); `import_real` (reference folders);
`cli` (`sime-hw`). Importing this package loads neither torch, robosuite nor any vendor library.
"""

from .errors import (
                     BackendUnavailableError,
                     DeviceNotFoundError,
                     DeviceStateError,
                     HardwareError,
                     RecordingFormatError,
                     RigConfigError,
)

__all__ = ["BackendUnavailableError", "DeviceNotFoundError", "DeviceStateError", "HardwareError",
           "RecordingFormatError", "RigConfigError"]
