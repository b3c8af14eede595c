"""The sigma.7 backend through ctypes against a stand-in libdhd built from C here (skipped without a C compiler)."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from hardware.backends.sigma7 import Sigma7
from hardware.errors import DeviceNotFoundError

# Same C signatures as the Force Dimension SDK's dhd functions the backend calls; `fake_set` moves the handle.
FAKE_DHD = r"""
#include <math.h>
static double px, py, pz, yaw, grip = 0.45;
static int present = 1;
void fake_set(double x, double y, double z, double a, double g, int p) { px = x; py = y; pz = z; yaw = a; grip = g; present = p; }
int dhdOpen(void) { return present ? 0 : -1; }
int dhdClose(char id) { return 0; }
const char *dhdErrorGetLastStr(void) { return present ? "no error" : "no device found"; }
int dhdGetPosition(double *x, double *y, double *z, char id) { *x = px; *y = py; *z = pz; return 0; }
int dhdGetOrientationFrame(double m[3][3], char id) {
    double c = cos(yaw), s = sin(yaw);
    m[0][0] = c; m[0][1] = -s; m[0][2] = 0; m[1][0] = s; m[1][1] = c; m[1][2] = 0; m[2][0] = 0; m[2][1] = 0; m[2][2] = 1;
    return 0;
}
int dhdGetGripperAngleRad(double *a, char id) { *a = grip; return 0; }
"""


@pytest.fixture(scope="module")
def fake_dhd(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, ctypes.CDLL]:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build the stand-in libdhd")
    root = tmp_path_factory.mktemp("dhd")
    (root / "fake_dhd.c").write_text(FAKE_DHD)
    lib = root / "libdhd.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(lib), str(root / "fake_dhd.c"), "-lm"], check=True)
    handle = ctypes.CDLL(str(lib))
    handle.fake_set.argtypes = [ctypes.c_double] * 5 + [ctypes.c_int]
    return str(lib), handle


def _rotz(a: float) -> np.ndarray:
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])


def test_offsets_gripper_and_axes(fake_dhd) -> None:
    path, handle = fake_dhd
    handle.fake_set(0.01, 0.02, 0.03, 0.1, 0.45, 1)
    swap = np.array([[0, 1, 0], [-1, 0, 0], [0, 0, 1]], dtype=float)  # device x -> robot -y, device y -> robot x
    with Sigma7(library=path, scale=2.0) as plain, Sigma7(library=path, axes=swap) as turned:
        plain.reset_base()
        turned.reset_base()
        handle.fake_set(0.02, 0.02, 0.03, 0.4, 0.05, 1)  # +1 cm along device x, turned 0.3 rad about z, gripper shut
        cmd = plain.read()
        np.testing.assert_allclose(cmd.delta_pos, [0.02, 0, 0], atol=1e-12)  # scaled x2
        np.testing.assert_allclose(cmd.delta_rot, _rotz(0.3), atol=1e-12)
        assert cmd.gripper == pytest.approx(1.0)
        cmd = turned.read()
        np.testing.assert_allclose(cmd.delta_pos, [0, -0.01, 0], atol=1e-12)
        np.testing.assert_allclose(cmd.delta_rot, _rotz(0.3), atol=1e-12)  # a turn about z stays one about z
        handle.fake_set(0.02, 0.02, 0.03, 0.4, 0.25, 1)
        assert plain.read().gripper == pytest.approx(0.0)  # half way between open (0.45) and closed (0.05)
        pos, _ = cmd.apply(np.array([0.5, 0.0, 0.2]), np.eye(3))
        np.testing.assert_allclose(pos, [0.5, -0.01, 0.2], atol=1e-12)


def test_no_device_is_a_clear_error(fake_dhd) -> None:
    path, handle = fake_dhd
    handle.fake_set(0, 0, 0, 0, 0.45, 0)
    try:
        with pytest.raises(DeviceNotFoundError, match="no Force Dimension device could be opened: no device found"):
            Sigma7(library=path).connect()
    finally:
        handle.fake_set(0, 0, 0, 0, 0.45, 1)
    assert Path(path).is_file()
