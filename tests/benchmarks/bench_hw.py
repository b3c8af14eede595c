"""Hardware-rig benchmark: control-loop rate with simulated devices and the per-step latency budget.

Run: python tests/benchmarks/bench_hw.py [--quick] [--out DIR]
Figures: achieved loop rate of teleoperation recording (no cameras, and two simulated RGB-D cameras)
and of policy evaluation, each against its configured rate (target: >= 95 % of it); per-step latency
split into device read (arm state + camera frames), device write (pose + gripper command = one
simulator step here), store write, and policy inference per chunk and amortised per step, against the
control period (target: the whole step fits in the period), and the loop rate when inference runs in a
background thread (`--async-inference`). The policy is a randomly initialised
lift_lowdim_cpu UNet (64-128-256, DDIM-10) on the rig's observations (tcp_pose, gripper_width), 1 thread.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_util import Row, bench_arg_parser, new_figure, output_dir, plot_ratios, report, save_figure  # noqa: E402

import sime_data  # noqa: E402
from hardware import geometry as geo  # noqa: E402
from hardware.config import rig_config_from_dict  # noqa: E402
from hardware.evaluation import EvalSettings, evaluate_policy  # noqa: E402
from hardware.recorder import record_teleop  # noqa: E402
from hardware.rig import Rig  # noqa: E402

WORKSPACE = {"low": [-0.4, -0.4, 0.8], "high": [0.4, 0.4, 1.3]}


def rig_dict(rate: float, steps: int, cameras: int, size: int) -> dict:
    """A fully simulated rig recording/evaluating `steps` steps per episode at `rate` Hz."""
    cams = [{"name": n, "backend": "sim", "sim_camera": c, "width": size, "height": size}
            for n, c in (("side", "agentview"), ("wrist", "robot0_eye_in_hand"))[:cameras]]
    return {"name": "bench", "task": "lift_rig", "rate_hz": rate, "max_steps": steps, "workspace": WORKSPACE,
            "arm": {"backend": "sim", "max_gripper_width": 0.08}, "cameras": cams, "teleop": {"backend": "scripted"},
            "keyboard": {"backend": "scripted", "episodes": [[{"at": 0, "key": "start"}]]}, "sim": {"task": "lift"}}


def achieved_rate(store: sime_data.Store, episode_ids: list[str]) -> float:
    """Steps per second over each episode's recorded wall-clock timestamps (overruns included)."""
    steps, seconds = 0, 0.0
    for episode_id in episode_ids:
        stamps = store.read_episode(episode_id, keys=["timestamps"])["timestamps"]
        steps += len(stamps) - 1
        seconds += float(stamps[-1] - stamps[0])
    return steps / seconds


def make_policy(rig: Rig, preset: str = "lift_lowdim_cpu", **overrides):
    """A random policy over the rig's tcp_pose and gripper_width whose actions stay near the start pose."""
    import torch

    from sime_policy.policy.config import get_preset
    from sime_policy.policy.normalizer import Normalizer
    from sime_policy.policy.diffusion import DiffusionPolicy, ObsSpec

    config = get_preset(preset).with_overrides(obs_keys=("obs/tcp_pose", "obs/gripper_width"), **overrides).policy
    obs = rig.observe().obs
    specs, stats = {}, {}
    for key in config.obs_keys:
        value = obs[key[4:]]
        specs[key] = ObsSpec(tuple(value.shape), value.dtype.str)
        stats[key] = {"min": value - 0.5, "max": value + 0.5}
    hold = geo.pose_to_action(obs["tcp_pose"], -1.0)
    low, high = hold - 0.03, hold + 0.03
    low[9], high[9] = -1.0, 1.0
    stats["actions"] = {"min": low, "max": high}
    torch.manual_seed(0)
    return DiffusionPolicy(config, 10, specs, Normalizer(stats)).eval()


def teleop_rows(scratch: Path, label: str, rate: float, steps: int, episodes: int, cameras: int, size: int) -> list[Row]:
    """Record teleop episodes; rows: achieved rate and the per-step latency split."""
    store = sime_data.init_store(scratch / f"teleop-{cameras}")
    config = rig_config_from_dict(rig_dict(rate, steps, cameras, size))
    with Rig(config) as rig:
        result = record_teleop(rig, store, episodes=episodes)
    got = achieved_rate(store, result.episode_ids)
    ms = result.times.median_ms()
    period_ms = 1000.0 / rate
    step_ms = sum(ms.values())
    return [
        Row(f"teleop {label}: loop rate", got, "Hz", target=0.95 * rate, higher_is_better=True,
            note=f"configured {rate:g} Hz, {episodes} x {steps} steps"),
        Row(f"teleop {label}: device read / step", ms["device_read"], "ms", baseline=period_ms, baseline_label="period"),
        Row(f"teleop {label}: device write (sim step) / step", ms["device_write"], "ms", baseline=period_ms,
            baseline_label="period"),
        Row(f"teleop {label}: store write / step", ms["store_write"], "ms", baseline=ms["device_read"],
            baseline_label="device read"),
        Row(f"teleop {label}: busy time / step", step_ms, "ms", target=period_ms, note="read + write + store"),
    ]


def eval_rows(scratch: Path, rate: float, steps: int, episodes: int, replan: int | None, asynchronous: bool = False,
              **policy_overrides) -> list[Row]:
    """Evaluate a random policy on the simulated rig; rows: achieved rate, inference vs device I/O."""
    store = sime_data.init_store(scratch / f"eval-{asynchronous}")
    config = rig_config_from_dict(rig_dict(rate, steps, 0, 0))
    with Rig(config, teleop=False) as rig:
        policy = make_policy(rig, **policy_overrides)
        settings = EvalSettings(ensemble="hato", replan_every=replan, max_steps=steps, async_inference=asynchronous)
        result = evaluate_policy(rig, store, policy, episodes=episodes, settings=settings)
    got = achieved_rate(store, result.episode_ids)
    ms = result.times.median_ms()
    period_ms = 1000.0 / rate
    replan = json.loads(store.episode(result.episode_ids[0])["meta"])["replan_every"]
    per_step_inference = ms["inference"] / replan
    io_ms = ms["device_read"] + ms["device_write"]
    if asynchronous:
        held = sum(json.loads(store.episode(e)["meta"])["held_steps"] for e in result.episode_ids)
        return [Row(f"eval, background inference: loop rate (replan every {replan})", got, "Hz", target=0.95 * rate,
                    higher_is_better=True, note=f"{held} of {episodes * steps} steps held the last pose "
                                                "(no chunk covered them yet)"),
                Row("eval, background inference: inference / chunk", ms["inference"], "ms", baseline=period_ms,
                    baseline_label="period")]
    return [
        Row(f"eval: loop rate (replan every {replan} steps)", got, "Hz", target=0.95 * rate, higher_is_better=True,
            note=f"configured {rate:g} Hz, {episodes} x {steps} steps, hato ensembling"),
        Row("eval: policy inference / chunk (DDIM-10, 1 thread)", ms["inference"], "ms", target=period_ms,
            note="a chunk is predicted inside one control period"),
        Row("eval: policy inference amortised / step", per_step_inference, "ms", baseline=io_ms,
            baseline_label="device I/O"),
        Row("eval: device I/O / step (read + write)", io_ms, "ms", baseline=period_ms, baseline_label="period"),
        Row("eval: store write / step", ms["store_write"], "ms", baseline=io_ms, baseline_label="device I/O"),
    ]


def run(quick: bool, scratch: Path, tiny: bool = False) -> list[Row]:
    """Measure every figure; returns the table rows."""
    if tiny:
        tiny_policy = {"down_dims": (16, 32), "diffusion_step_embed_dim": 16}
        return (teleop_rows(scratch, "lowdim", 50.0, 6, 1, 0, 0)
                + eval_rows(scratch, 50.0, 6, 1, 2, **tiny_policy)
                + eval_rows(scratch, 50.0, 6, 1, 2, asynchronous=True, **tiny_policy))
    steps, episodes = (40, 1) if quick else (100, 2)
    rows = teleop_rows(scratch, "lowdim 20 Hz", 20.0, steps, episodes, 0, 0)
    rows += teleop_rows(scratch, "2 RGB-D cams 64x64 at 5 Hz", 5.0, steps // 4, 1, 2, 64)
    rows += eval_rows(scratch, 10.0, steps, episodes, None)
    rows += eval_rows(scratch, 10.0, steps, episodes, None, asynchronous=True)
    return rows


def test_hw_benchmark_smoke(tmp_path: Path) -> None:
    """Tiny sizes: every figure is produced and finite (no timing asserted)."""
    import pytest

    pytest.importorskip("robosuite")
    pytest.importorskip("diffusers")
    rows = run(quick=True, scratch=tmp_path, tiny=True)
    assert len(rows) == 12 and all(np.isfinite(r.measured) and r.measured > 0 for r in rows)


def main() -> None:
    """Command-line entry: run, print the table, write the CSV and PNG."""
    args = bench_arg_parser(__doc__.splitlines()[0]).parse_args()
    out = output_dir(args.out, prefix="sime-bench-hw-")
    scratch = out / "scratch"
    start = time.perf_counter()
    try:
        rows = run(args.quick, scratch)
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    paths = report(rows, out, "hw_bench", "SIME hardware rig benchmark (simulated devices, lift scene)")
    figure = new_figure(1, width_per_panel=9.0)
    if figure is not None:
        fig, (ax,) = figure
        plot_ratios(ax, rows)
        paths["png"] = save_figure(fig, out / "hw_bench.png")
    for name, path in paths.items():
        print(f"  {name}: {path}")
    print(f"  total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
