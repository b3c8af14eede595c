"""Rollout benchmark: simulated steps/s of the runner with and without recording, 1 vs 2 worker processes.

Run: python tests/benchmarks/bench_rollout.py [--quick] [--out DIR]
The policy is a randomly initialised lift_lowdim_cpu UNet (64-128-256, DDIM-10) whose normaliser keeps
actions near the gripper, so episodes run to the step limit and every run does the same amount of work.
Figures: raw simulator steps/s; runner steps/s (policy + simulator) without and with writing every step
to a store (target: recording costs < 10 %); `collect_rollouts` end to end and in steady state (from the
episodes' commit times, i.e. without process start-up) with 1 and 2 workers.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_util import Row, bench_arg_parser, median, output_dir, report, time_calls  # noqa: E402

import sime_data  # noqa: E402
from sime_policy.config import get_preset  # noqa: E402
from sime_policy.envs import SimEnv  # noqa: E402
from sime_policy.exploration import NO_EXPLORATION, Exploration  # noqa: E402
from sime_policy.normalizer import Normalizer  # noqa: E402
from sime_policy.policy import DiffusionPolicy, ObsSpec  # noqa: E402
from sime_policy.rollout import collect_rollouts, run_episode  # noqa: E402

TASK = "lift"


def make_policy(env: SimEnv, preset: str = "lift_lowdim_cpu", **overrides) -> DiffusionPolicy:
    """A random policy for `env` whose normaliser maps its outputs to small moves around the current pose."""
    config = get_preset(preset).with_overrides(**overrides).policy
    obs = env.reset()
    specs, stats = {}, {}
    for key in config.obs_keys:
        value = obs[key[4:]]
        specs[key] = ObsSpec(tuple(value.shape), value.dtype.str)
        stats[key] = {"min": value - 0.5, "max": value + 0.5}
    hold = env.eef_action(gripper=-1.0)
    low, high = hold - 0.05, hold + 0.05
    low[9], high[9] = -1.0, 1.0
    stats["actions"] = {"min": low, "max": high}
    torch.manual_seed(0)
    return DiffusionPolicy(config, env.action_dim, specs, Normalizer(stats)).eval()


def sim_steps_per_s(env: SimEnv, steps: int, repeat: int) -> list[float]:
    """Raw simulator throughput: `steps` hold-pose actions after a reset."""
    state = env.sample_init_states(1, 0)[0]

    def run() -> None:
        env.reset_to(state)
        hold = env.eef_action(gripper=-1.0)
        for _ in range(steps):
            env.step(hold)

    return [steps / t for t in time_calls(run, repeat=repeat, warmup=1)]


def runner_steps_per_s(env: SimEnv, policy: DiffusionPolicy, states: list[np.ndarray], store: sime_data.Store,
                       repeat: int) -> tuple[list[float], list[float]]:
    """Runner throughput over `states` without and with recording (interleaved so machine load hits both)."""
    plain: list[float] = []
    recorded: list[float] = []
    with store.writer("rollout", TASK, model_xml=env.model_xml()) as writer:
        for rep in range(repeat + 1):
            for record, out in ((False, plain), (True, recorded)):
                start, steps = time.perf_counter(), 0
                for i, state in enumerate(states):
                    _, length = run_episode(env, policy, state, NO_EXPLORATION, 1000 * rep + i,
                                            writer if record else None)
                    if record:
                        writer.finish(trial=i)
                    steps += length
                if rep:  # the first round warms up
                    out.append(steps / (time.perf_counter() - start))
    return plain, recorded


def steady_steps_per_s(rows: pd.DataFrame) -> float:
    """Steps/s between each segment's first and last commit (start-up excluded), over all segments together."""
    steps, window = 0, 0.0
    for _, group in rows.sort_values("created_at").groupby("segment"):
        if len(group) < 2:
            continue
        steps += int(group["length"].iloc[1:].sum())
        window = max(window, (group["created_at"].iloc[-1] - group["created_at"].iloc[0]).total_seconds())
    return steps / window if window > 0 else float("nan")


def collection_steps_per_s(store: sime_data.Store, policy: DiffusionPolicy, workers: int, k: int, n: int,
                           max_steps: int, seed: int) -> tuple[float, float]:
    """(end-to-end, steady-state) steps/s of one collect_rollouts call."""
    start = time.perf_counter()
    result = collect_rollouts(store, policy, task=TASK, init_states=k, trials=n, seed=seed, workers=workers,
                              exploration=Exploration("sime", noise_scale=0.1), max_steps=max_steps, progress=False,
                              version=f"bench/w{workers}/seed{seed}")
    elapsed = time.perf_counter() - start
    rows = store.episodes(version=result.version, columns=["segment", "created_at", "length"])
    return int(rows["length"].sum()) / elapsed, steady_steps_per_s(rows)


def run(quick: bool, scratch: Path) -> list[Row]:
    """Measure every figure; returns the table rows."""
    repeat = 2 if quick else 4
    episodes, max_steps = (3, 48) if quick else (6, 96)
    k, n, collections = (4, 2, 1) if quick else (6, 2, 2)
    store = sime_data.init_store(scratch / "store")
    rows: list[Row] = []
    with SimEnv(TASK, horizon=max_steps) as env:
        sim = median(sim_steps_per_s(env, max_steps, repeat))
        rows.append(Row("simulator alone (hold action)", sim, "steps/s", higher_is_better=True))
        policy = make_policy(env)
        states = env.sample_init_states(episodes, 1)
        prev = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            plain_runs, recorded_runs = runner_steps_per_s(env, policy, states, store, repeat)
        finally:
            torch.set_num_threads(prev)
    plain, recorded = median(plain_runs), median(recorded_runs)
    rows.append(Row("runner, no recording (policy + sim, 1 thread)", plain, "steps/s", higher_is_better=True,
                    baseline=sim, baseline_label="sim alone", samples=plain_runs))
    rows.append(Row("runner, recording every step", recorded, "steps/s", higher_is_better=True, baseline=plain,
                    baseline_label="no recording", samples=recorded_runs))
    rows.append(Row("recording overhead (time with / without)", plain / recorded, "x", target=1.05))
    results: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
    for rep in range(collections):
        for workers in (1, 2):
            results[workers].append(collection_steps_per_s(store, policy, workers, k, n, max_steps, 100 * rep + workers))
    for workers in (1, 2):
        end = median([r[0] for r in results[workers]])
        steady = median([r[1] for r in results[workers]])
        base = None if workers == 1 else median([r[0] for r in results[1]])
        base_steady = None if workers == 1 else median([r[1] for r in results[1]])
        rows.append(Row(f"collect_rollouts {workers} worker(s), end to end ({k}x{n} episodes)", end, "steps/s",
                        higher_is_better=True, baseline=base, baseline_label="1 worker"))
        rows.append(Row(f"collect_rollouts {workers} worker(s), steady state", steady, "steps/s",
                        higher_is_better=True, baseline=base_steady, baseline_label="1 worker"))
    one, two = median([r[1] for r in results[1]]), median([r[1] for r in results[2]])
    rows.append(Row("2-worker speedup, steady state (2 cores)", two / one, "x", target=1.3, higher_is_better=True,
                    note="shares 2 cores with anything else running"))
    return rows


def test_rollout_benchmark_smoke(tmp_path) -> None:
    """Recording does not change a rollout, and every step is stored (no timing asserted)."""
    store = sime_data.init_store(tmp_path / "store")
    with SimEnv(TASK, horizon=12) as env:
        policy = make_policy(env, down_dims=(16, 32), diffusion_step_embed_dim=16)
        state = env.sample_init_states(1, 0)[0]
        success, steps = run_episode(env, policy, state, NO_EXPLORATION, 5)
        final = env.get_state()
        with store.writer("rollout", TASK) as writer:
            assert run_episode(env, policy, state, NO_EXPLORATION, 5, writer) == (success, steps)
            episode_id = writer.finish()
        np.testing.assert_array_equal(env.get_state(), final)
    assert steps == 12 and store.episode(episode_id)["length"] == steps
    data = store.read_episode(episode_id, keys=["states", "actions"])
    np.testing.assert_array_equal(data["states"][0], state)
    rows = pd.DataFrame({"segment": ["a"] * 3, "length": [5, 7, 9],
                         "created_at": pd.to_datetime([0, 1, 3], unit="s", utc=True)})
    assert steady_steps_per_s(rows) == (7 + 9) / 3


def main() -> None:
    """Command-line entry: run, print the table, write the CSV."""
    args = bench_arg_parser(__doc__.splitlines()[0]).parse_args()
    out = output_dir(args.out, prefix="sime-bench-rollout-")
    scratch = out / "scratch"
    try:
        rows = run(args.quick, scratch)
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    paths = report(rows, out, "rollout_bench", "SIME rollout benchmark (lift, DDIM-10 UNet 64-128-256)")
    for name, path in paths.items():
        print(f"  {name}: {path}")


if __name__ == "__main__":
    main()
