"""Policy benchmark: training steps/s and DDIM latency per action chunk, with and without exploration.

Run: python tests/benchmarks/bench_policy.py [--quick] [--out DIR]
Targets (issue 3): state-based UNet CPU preset <= 50 ms per chunk with 10 DDIM steps; exploration adds
< 5 % latency. One torch thread by default (`--threads N` to compare): on this shared 2-core machine two
threads ran about 10x slower than one whenever another process used a core.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_util import Row, bench_arg_parser, median, new_figure, output_dir, plot_ratios, report, save_figure, time_calls  # noqa: E402

from sime_policy.policy.config import get_preset  # noqa: E402
from sime_policy.policy.exploration import Exploration  # noqa: E402
from sime_policy.policy.normalizer import Normalizer  # noqa: E402
from sime_policy.policy.diffusion import DiffusionPolicy, ObsSpec  # noqa: E402

LOWDIM_SIZES = {"obs/object": 10, "obs/robot0_eef_pos": 3, "obs/robot0_eef_quat": 4, "obs/robot0_gripper_qpos": 2}
ACTION_DIM = 10


def build_policy(preset: str, **overrides) -> DiffusionPolicy:
    """A randomly initialised policy of a preset, with robomimic-like observation shapes."""
    config = get_preset(preset)
    policy_config = replace(config.policy, **overrides) if overrides else config.policy
    specs, stats = {}, {"actions": {"min": -np.ones(ACTION_DIM), "max": np.ones(ACTION_DIM)}}
    for key in policy_config.obs_keys:
        if key.endswith("_image"):
            specs[key] = ObsSpec((84, 84, 3), "|u1")
        else:
            size = LOWDIM_SIZES.get(key.replace("robot1", "robot0"), 3)
            specs[key] = ObsSpec((size,), "<f4")
            stats[key] = {"min": -np.ones(size), "max": np.ones(size)}
    torch.manual_seed(0)
    return DiffusionPolicy(policy_config, ACTION_DIM, specs, Normalizer(stats))


def fake_batch(policy: DiffusionPolicy, batch: int) -> dict[str, np.ndarray]:
    """Random observations and actions shaped like the sampler's output."""
    rng = np.random.default_rng(0)
    out: dict[str, np.ndarray] = {}
    for key, spec in policy.obs_specs.items():
        shape = (batch, policy.config.n_obs_steps, *spec.shape)
        out[key] = rng.integers(0, 255, shape, dtype=np.uint8) if spec.is_image else rng.uniform(-1, 1, shape).astype(np.float32)
    out["action"] = rng.uniform(-1, 1, (batch, policy.config.horizon, ACTION_DIM)).astype(np.float32)
    out["weight"] = np.ones((batch, policy.config.horizon), np.float32)
    return out


def train_step_seconds(policy: DiffusionPolicy, batch: int, repeat: int) -> list[float]:
    """Wall seconds of forward + backward + AdamW step."""
    data = fake_batch(policy, batch)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-4)
    policy.train()

    def step() -> None:
        loss = policy.compute_loss(data)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return time_calls(step, repeat=repeat, warmup=1)


def latency_seconds(policy: DiffusionPolicy, steps: int, exploration: Exploration, repeat: int) -> tuple[list[float], list[float]]:
    """Wall seconds of predict() (batch 1) without and with exploration, calls interleaved so noise hits both alike."""
    policy.config = replace(policy.config, num_inference_steps=steps)
    policy.eval()  # as load_policy returns it for rollouts
    obs = {k: v[0] for k, v in fake_batch(policy, 1).items() if k.startswith("obs/")}
    plain: list[float] = []
    explored: list[float] = []
    for _ in range(repeat):
        plain += time_calls(lambda: policy.predict(obs, None, seed=0), repeat=1, warmup=1)
        explored += time_calls(lambda: policy.predict(obs, exploration, seed=0), repeat=1, warmup=1)
    return plain, explored


def run(quick: bool, threads: int = 1) -> list[Row]:
    """Measure every figure with `threads` torch threads; returns the table rows."""
    torch.set_num_threads(threads)
    repeat = 5 if quick else 15
    rows: list[Row] = []
    explore = Exploration("sime", noise_scale=0.1)
    cases = [("lift_lowdim_cpu", 128), ("lift_lowdim", 256), ("lift_image_cpu", 32)]
    if quick:
        cases = cases[:1] + cases[2:]
    for preset, batch in cases:
        policy = build_policy(preset)
        n_params = sum(p.numel() for p in policy.parameters()) / 1e6
        train = median(train_step_seconds(policy, batch, max(3, repeat // 3)))
        rows.append(Row(f"{preset}: train steps/s (batch {batch}, {n_params:.1f}M params)", 1.0 / train, "steps/s",
                        higher_is_better=True))
        for steps in (10, 20):
            plain_times, explored_times = latency_seconds(policy, steps, explore, repeat)
            plain, explored = median(plain_times), median(explored_times)
            target = 0.050 if (preset == "lift_lowdim_cpu" and steps == 10) else None
            rows.append(Row(f"{preset}: DDIM-{steps} latency per chunk", plain * 1000, "ms",
                            target=target * 1000 if target else None))
            rows.append(Row(f"{preset}: DDIM-{steps} with SIME exploration", explored * 1000, "ms",
                            baseline=plain * 1000, baseline_label="no exploration"))
            rows.append(Row(f"{preset}: DDIM-{steps} exploration overhead", explored / plain, "x", target=1.05))
    return rows


def test_policy_benchmark_smoke():
    """The benchmark's building blocks run and produce chunks of the right shape (no timing asserted)."""
    policy = build_policy("lift_lowdim_cpu", down_dims=(16, 32), diffusion_step_embed_dim=16)
    assert len(train_step_seconds(policy, 8, repeat=1)) == 1
    obs = {k: v[0] for k, v in fake_batch(policy, 1).items() if k.startswith("obs/")}
    assert policy.predict(obs, Exploration("sime", noise_scale=0.1), seed=0).shape == (8, ACTION_DIM)


def main() -> None:
    """Command-line entry: run, print the table, write CSV and PNG."""
    parser = bench_arg_parser(__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    out = output_dir(args.out, prefix="sime-bench-policy-")
    rows = run(args.quick, args.threads)
    paths = report(rows, out, "policy_bench", f"SIME policy benchmarks ({args.threads} torch thread(s))")
    figure = new_figure(1, width_per_panel=9)
    if figure is not None:
        fig, axes = figure
        plot_ratios(axes[0], [r for r in rows if r.target is not None])
        paths["png"] = save_figure(fig, out / "policy_bench.png")
    for name, path in paths.items():
        print(f"  {name}: {path}")


if __name__ == "__main__":
    main()
