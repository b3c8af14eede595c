"""Rig config validation and the real backends' errors without their libraries or devices (no hardware needed)."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest
import yaml

from hardware.arm import Workspace
from hardware.config import load_rig_config, rig_config_from_dict
from hardware.errors import (
    BackendUnavailableError,
    DeviceNotFoundError,
    DeviceStateError,
    HardwareError,
    RigConfigError,
)

CONFIGS = Path(__file__).resolve().parents[2] / "hardware" / "configs"


def _example() -> dict:
    return yaml.safe_load((CONFIGS / "rig_example.yaml").read_text())


def test_shipped_configs_load() -> None:
    real = load_rig_config(CONFIGS / "rig_example.yaml")
    assert real.arm.backend == "flexiv" and real.arm.serial == "Rizon4-062468"
    assert [c.serial for c in real.cameras] == ["135122079702", "242322072982"]
    assert real.workspace == Workspace((0.35, -0.35, 0.02), (0.85, 0.35, 0.45)) and real.period_s == 0.1
    sim = load_rig_config(CONFIGS / "rig_sim.yaml")
    assert sim.uses_sim and sim.keyboard.on_success.value == "finish"


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.pop("rate_hz"), "missing required field 'rate_hz'"),
    (lambda c: c.update(rate_hz=0), "rate_hz: must be > 0"),
    (lambda c: c.update(rate_hz="fast"), "rate_hz: expected a number"),
    (lambda c: c.update(colour="red"), "unknown field(s) ['colour']"),
    (lambda c: c["arm"].update(backend="ur5"), "arm.backend: 'ur5' is not one of"),
    (lambda c: c["arm"].pop("serial"), "arm.serial: the flexiv backend needs"),
    (lambda c: c["cameras"][0].pop("serial"), "cameras[0].serial: a realsense camera needs"),
    (lambda c: c["cameras"][1].update(name="wrist"), "camera name 'wrist' is used twice"),
    (lambda c: c["cameras"][0].update(width=-1), "cameras[0].width: expected a positive integer"),
    (lambda c: c["cameras"][0].update(resize=[84]), "cameras[0].resize: expected [width, height]"),
    (lambda c: c["workspace"].update(low=[1, 0, 0]), "workspace: workspace low must be below high"),
    (lambda c: c["workspace"].update(high=[1, 1]), "workspace bounds need 3 values"),
    (lambda c: c.update(home_pose=[5, 0, 0.2, 1, 0, 0, 0]), "lies outside the workspace"),
    (lambda c: c.pop("home_pose"), "a real arm needs a home pose"),
    (lambda c: c["keyboard"].update(keys={"s": "jump"}), "unknown key event 'jump'"),
    (lambda c: c["keyboard"].update(keys={"space": "start"}), "bind single characters"),
    (lambda c: c.update(keyboard={"backend": "scripted"}), "a scripted keyboard needs at least one episode"),
    (lambda c: c.update(teleop={"backend": "spacemouse"}), "teleop.backend: 'spacemouse'"),
    (lambda c: c.update(sim={"task": "juggle"}, teleop={"backend": "scripted"}), "sim.task: unknown task 'juggle'"),
    (lambda c: c.pop("arm"), "rig config: missing required field 'arm'"),
    (lambda c: c.update(arm="flexiv"), "arm: expected a mapping, got str"),
    (lambda c: c["cameras"][0].update(name=5), "cameras[0].name: expected text, got 5"),
    (lambda c: c["cameras"][0].update(fps=29.97), "cameras[0].fps: expected a positive integer, got 29.97"),
    (lambda c: c.update(home_pose=[0.5, 0, 0.2]), "home_pose: expected [x, y, z, qw, qx, qy, qz]"),
    (lambda c: c.update(max_steps=0), "max_steps: expected a positive integer, got 0"),
    (lambda c: c.update(sim={"seed": "zero"}), "sim.seed: expected an integer, got 'zero'"),
    (lambda c: c["teleop"].update(axes=[[1, 0], [0, 1]]), "teleop.axes: expected a 3x3 rotation matrix"),
    (lambda c: c["keyboard"].update(episodes=[[{"at": "x", "key": "start"}]]), "keyboard.episodes: episode 0: each"),
])
def test_config_errors_name_the_field(edit, message) -> None:
    raw = copy.deepcopy(_example())
    edit(raw)
    with pytest.raises(RigConfigError) as info:
        rig_config_from_dict(raw)
    assert message in str(info.value)


def test_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(RigConfigError, match="does not exist"):
        load_rig_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("rate_hz: [1,\n")
    with pytest.raises(RigConfigError, match="not valid YAML"):
        load_rig_config(bad)
    bad.write_text("- just a list\n")
    with pytest.raises(RigConfigError, match=r"bad.yaml: rig config: expected a mapping"):
        load_rig_config(bad)


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):
        return True


@pytest.mark.skipif(not _missing("flexivrdk"), reason="flexivrdk is installed here")
def test_flexiv_without_rdk_says_not_installed() -> None:
    from hardware.backends.flexiv import FlexivArm

    arm = FlexivArm("Rizon4-000000")
    with pytest.raises(BackendUnavailableError, match=r"flexivrdk.*no wheel|flexivrdk.*3.11|not installed"):
        arm.connect()
    assert not arm.connected
    with pytest.raises(DeviceStateError, match="not connected"):
        arm.state()
    arm.stop()  # harmless when not connected


@pytest.mark.skipif(not _missing("pyrealsense2"), reason="pyrealsense2 is installed here")
def test_realsense_without_library_says_not_installed() -> None:
    from hardware.backends.realsense import RealSenseCamera, connected_serials

    with pytest.raises(BackendUnavailableError, match="pyrealsense2"):
        connected_serials()
    with pytest.raises(BackendUnavailableError, match=r"pip install -e '.\[hardware\]'"):
        with RealSenseCamera("135122079702", "wrist"):
            pass


def test_sigma7_library_path_is_configurable_and_errors_clearly(tmp_path: Path) -> None:
    from hardware.backends.sigma7 import Sigma7

    device = Sigma7(library=str(tmp_path / "libdhd.so"))
    with pytest.raises(BackendUnavailableError, match=r"libdhd.so.*teleop.library"):
        device.connect()
    assert isinstance(BackendUnavailableError("x"), HardwareError)


def test_pynput_without_display_or_package_is_unavailable(monkeypatch) -> None:
    from hardware.backends.pynput_keyboard import PynputKeyboard

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("PYNPUT_BACKEND", raising=False)
    with pytest.raises(BackendUnavailableError, match="pynput"):
        PynputKeyboard().connect()


def test_realsense_with_library_but_no_camera_says_no_device() -> None:
    pytest.importorskip("pyrealsense2")
    from hardware.backends.realsense import RealSenseCamera

    with pytest.raises(DeviceNotFoundError, match="no RealSense with serial 000000000000"):
        RealSenseCamera("000000000000", "wrist").connect()


def test_cli_reports_one_line_errors(tmp_path: Path, capsys) -> None:
    from hardware.cli import main

    assert main(["teleop", "--config", str(tmp_path / "missing.yaml"), "--store", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sime-hw: ") and "does not exist" in err and "Traceback" not in err
    if _missing("flexivrdk"):
        assert main(["teleop", "--config", str(CONFIGS / "rig_example.yaml"), "--store", str(tmp_path / "s")]) == 2
        err = capsys.readouterr().err
        assert "not installed" in err and err.count("\n") == 1


def test_importing_the_package_loads_no_heavy_or_vendor_library() -> None:
    import subprocess
    import sys

    code = ("import sys, hardware, hardware.cli, hardware.rig, hardware.recorder, hardware.evaluation, "
            "hardware.cleaning, hardware.import_real, hardware.backends.flexiv, hardware.backends.realsense, "
            "hardware.backends.sigma7, hardware.backends.pynput_keyboard, hardware.backends.sim_devices; "
            "print(sorted(m for m in ('torch', 'robosuite', 'mujoco', 'flexivrdk', 'pyrealsense2', 'pynput') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "[]"


def test_pynput_key_mapping_without_a_listener() -> None:
    from types import SimpleNamespace

    from hardware.backends.pynput_keyboard import PynputKeyboard
    from hardware.keyboard import KeyEvent

    keyboard = PynputKeyboard(keys={"b": KeyEvent.START, "x": KeyEvent.QUIT})
    for key in (SimpleNamespace(char="b"), SimpleNamespace(char="X"), SimpleNamespace(char="z"), object()):
        keyboard._on_press(key)  # what the listener thread calls; special keys have no .char
    keyboard._connected = True  # no listener thread needed to read the queue
    assert keyboard.poll() == [KeyEvent.START, KeyEvent.QUIT] and keyboard.poll() == []


def test_check_command_reports_every_device(capsys) -> None:
    from hardware.cli import main

    code = main(["check", "--config", str(CONFIGS / "rig_example.yaml")])
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert len(lines) == 6 and lines[-1].endswith("device(s) ok")
    if _missing("flexivrdk") and _missing("pyrealsense2"):
        assert code == 1 and "FlexivArm" in lines[0] and "FAILED" in lines[0] and "not installed" in lines[0]
        assert "RealSenseCamera" in lines[1] and "libdhd.so" in lines[3]


def _paths(raw, prefix=""):
    """Dotted paths of every leaf field set in a parsed rig file (list items of mappings as name[])."""
    for key, value in raw.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and key not in ("keys", "workspace"):  # those two are one field each
            yield from _paths(value, path + ".")
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                yield from _paths(item, path + "[].")
        else:
            yield path


def test_fields_lists_every_field_the_shipped_configs_set(capsys) -> None:
    from hardware.cli import main

    assert main(["fields"]) == 0
    listed = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "cameras[].serial" in listed and "(required)" in listed["task"] and "[flexiv, sim]" in listed["arm.backend"]
    for name in ("rig_example.yaml", "rig_sim.yaml"):
        raw = yaml.safe_load((CONFIGS / name).read_text())
        missing = sorted(set(_paths(raw)) - set(listed))
        assert not missing, (name, missing)
