"""One robosuite scene shared by the simulated arm, cameras, teleoperator and keyboard of a rig."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import BackendUnavailableError, DeviceNotFoundError

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering unless the user chose otherwise (read at mujoco import)


class SimWorld:
    """A SimEnv (no camera observations) plus an offscreen MuJoCo renderer for colour and depth.

    Physics advances only when the simulated arm is commanded (`step`): one simulator step of
    1/20 s per command, whatever the rig's wall-clock rate. `reset()` draws a fresh initial state
    from the seeded RNG.
    """

    def __init__(self, task: str = "lift", seed: int | None = 0) -> None:
        self.task = task
        self.seed = seed
        self.env: Any = None
        self._renderers: dict[tuple[int, int], Any] = {}
        self._users = 0
        self.steps = 0

    def acquire(self) -> SimWorld:
        """Start the simulator on first use (reference counted by the devices that share it)."""
        if self.env is None:
            try:
                from sime_policy.envs import SimEnv
            except ImportError as exc:
                raise BackendUnavailableError(f"simulated devices need the sim extra (robosuite, mujoco): {exc}; "
                                              "pip install -e '.[sim,policy]'") from None
            try:
                self.env = SimEnv(self.task, seed=self.seed, horizon=10**9)
            except ValueError as exc:
                raise DeviceNotFoundError(f"cannot build the simulated scene: {exc}") from None
            self.reset()
        self._users += 1
        return self

    def release(self) -> None:
        """Drop one user; the last one closes the renderer and simulator."""
        self._users = max(0, self._users - 1)
        if self._users == 0 and self.env is not None:
            for renderer in self._renderers.values():
                renderer.close()
            self._renderers.clear()
            self.env.close()
            self.env = None

    def reset(self) -> None:
        """A fresh random initial state; the gripper's command goes back to open."""
        self.env.reset()
        self.gripper_command = -1.0
        self.steps = 0

    def step(self, action: np.ndarray) -> None:
        """One simulator step toward an absolute 10-D action."""
        self.env.step(np.asarray(action, dtype=np.float64))
        self.steps += 1

    def check_success(self) -> bool:
        """Whether the simulated task is solved now."""
        return self.env is not None and self.env.check_success()

    def render(self, camera: str, width: int, height: int, depth: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Colour (H, W, 3) uint8 and depth (H, W) float32 metres (or None) of a model camera."""
        key = (height, width)
        renderer = self._renderers.get(key)
        model = self.env.env.sim.model._model
        data = self.env.env.sim.data._data
        if renderer is None:
            os.environ.setdefault("MUJOCO_GL", "egl")
            import mujoco

            try:
                renderer = mujoco.Renderer(model, height, width)
            except Exception as exc:  # noqa: BLE001 - GL stack problems surface here
                raise DeviceNotFoundError(f"simulated camera: offscreen rendering does not work here "
                                          f"(MUJOCO_GL={os.environ.get('MUJOCO_GL')}): {exc}") from None
            self._renderers[key] = renderer
        names = [model.camera(i).name for i in range(model.ncam)]
        if camera not in names:
            raise DeviceNotFoundError(f"simulated camera {camera!r} is not in the {self.task} scene; it has {names}")
        renderer.update_scene(data, camera=camera)
        color = renderer.render().copy()
        depth_m = None
        if depth:
            renderer.enable_depth_rendering()
            try:
                renderer.update_scene(data, camera=camera)
                depth_m = renderer.render().copy()
            finally:
                renderer.disable_depth_rendering()
        return color, depth_m

    def camera_fovy(self, camera: str) -> float:
        """Vertical field of view (degrees) of a model camera."""
        model = self.env.env.sim.model._model
        return float(model.cam_fovy[model.camera(camera).id])


