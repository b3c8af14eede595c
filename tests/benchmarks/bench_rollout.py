"""Rollout benchmark: batched runner vs the bare simulator and vs one-env-at-a-time, 1 vs 2 processes.

Run: python tests/benchmarks/bench_rollout.py [--quick] [--out DIR]
The policy is a randomly initialised UNet of the quick pipeline preset (32-64-128, DDIM-10, 8 executed
actions) whose normaliser keeps actions near the gripper, so episodes run to the step limit and every
run does the same amount of work. One torch thread per process. Figures, each as a ratio in one run:
the bare simulator (one process, then two processes at once); the runner with one env and batch-1
inference (the old runner) and with 16 envs and one batched policy call per chunk (target >= 0.8 of
the bare simulator per core); recording overhead; `collect_rollouts` with 1 and 2 worker processes of
16 envs each in steady state (target: 2 processes >= 1.7x one, bounded by what the bare simulator
itself gains from a second process on this machine).
"""

from __future__ import annotations

import multiprocessing as mp
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
from sime_policy.policy.config import get_preset  # noqa: E402
from sime_policy.envs import SimEnv, init_state_id  # noqa: E402
from sime_policy.policy.exploration import NO_EXPLORATION, Exploration  # noqa: E402
from sime_policy.policy.normalizer import Normalizer  # noqa: E402
from sime_policy.pipeline.config import QUICK_POLICY  # noqa: E402
from sime_policy.policy.diffusion import DiffusionPolicy, ObsSpec  # noqa: E402
from sime_policy.collect.batched import Item, run_batched, run_episode  # noqa: E402
from sime_policy.collect.rollouts import collect_rollouts  # noqa: E402
from sime_policy.collect.seeding import episode_seed  # noqa: E402

TASK = "lift"


QUICK_ARCHITECTURE = {k: v for k, v in QUICK_POLICY.items() if k in ("down_dims",)}


def make_policy(env: SimEnv, preset: str = "lift_lowdim_cpu", **overrides) -> DiffusionPolicy:
    """A random policy for `env` whose normaliser maps its outputs to small moves around the current pose."""
    config = get_preset(preset).with_overrides(**{**QUICK_ARCHITECTURE, **overrides}).policy
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


def _items(states: list[np.ndarray], rep: int) -> list[Item]:
    return [Item(init_state_id(s), s, 0, episode_seed(rep, init_state_id(s), 0)) for s in states]


def runner_steps_per_s(envs: list[SimEnv], policy: DiffusionPolicy, states: list[np.ndarray], lanes: int | None,
                       repeat: int, record: bool = False) -> list[float]:
    """Steps/s of `run_batched` over `states` on `envs` (one batched policy call per chunk)."""
    rates = []
    for rep in range(repeat + 1):
        steps = []
        start = time.perf_counter()
        run_batched(envs, policy, _items(states, rep), NO_EXPLORATION, lambda item, ok, n, slot: steps.append(n),
                    lanes=lanes, record=record)
        if rep:  # the first round warms up
            rates.append(sum(steps) / (time.perf_counter() - start))
    return rates


def _sim_worker(steps: int, queue: "mp.Queue") -> None:
    """Bare-simulator throughput measured in a spawned process (for the two-process ceiling)."""
    with SimEnv(TASK, horizon=steps) as env:
        queue.put(median(sim_steps_per_s(env, steps, 2)))


def parallel_sim_steps_per_s(steps: int, processes: int) -> float:
    """Summed bare-simulator steps/s of `processes` processes running at the same time."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_sim_worker, args=(steps, queue)) for _ in range(processes)]
    for proc in procs:
        proc.start()
    rates = [queue.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join()
    return float(sum(rates))


def steady_steps_per_s(rows: pd.DataFrame) -> float:
    """Steps/s between each segment's first and last commit (start-up excluded), over all segments together."""
    steps, window = 0, 0.0
    for _, group in rows.sort_values("created_at").groupby("segment"):
        if len(group) < 2:
            continue
        steps += int(group["length"].iloc[1:].sum())
        window = max(window, (group["created_at"].iloc[-1] - group["created_at"].iloc[0]).total_seconds())
    return steps / window if window > 0 else float("nan")


def collection_steps_per_s(store: sime_data.Store, policy: DiffusionPolicy, workers: int, envs: int, k: int, n: int,
                           max_steps: int, seed: int) -> tuple[float, float]:
    """(end-to-end, steady-state) steps/s of one collect_rollouts call."""
    start = time.perf_counter()
    result = collect_rollouts(store, policy, task=TASK, init_states=k, trials=n, seed=seed, workers=workers, envs=envs,
                              exploration=Exploration("sime", noise_scale=0.01), max_steps=max_steps, progress=False,
                              version=f"bench/w{workers}/seed{seed}")
    elapsed = time.perf_counter() - start
    rows = store.episodes(version=result.version, columns=["segment", "created_at", "length"])
    return int(rows["length"].sum()) / elapsed, steady_steps_per_s(rows)


def run(quick: bool, scratch: Path) -> list[Row]:
    """Measure every figure; returns the table rows."""
    repeat = 1 if quick else 3
    episodes, max_steps, envs = (16, 48, 16) if quick else (32, 96, 16)
    k, n = (16, 2) if quick else (32, 2)
    store = sime_data.init_store(scratch / "store")
    rows: list[Row] = []
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with SimEnv(TASK, horizon=max_steps) as env:
            sim = median(sim_steps_per_s(env, max_steps, 3 if quick else 6))
            policy = make_policy(env)
            states = env.sample_init_states(episodes, 1)
            single = runner_steps_per_s([env], policy, states[: max(2, episodes // 4)], None, repeat)
            more = [SimEnv(TASK, horizon=max_steps) for _ in range(envs - 1)]
            try:
                batched = runner_steps_per_s([env, *more], policy, states, 16, repeat)
                recorded = runner_steps_per_s([env, *more], policy, states, 16, repeat, record=True)
            finally:
                for other in more:
                    other.close()
        rows.append(Row("simulator alone (hold action), 1 process", sim, "steps/s", higher_is_better=True))
        rows.append(Row("runner, 1 env, batch-1 inference (old runner)", median(single), "steps/s",
                        higher_is_better=True, baseline=sim, baseline_label="sim alone", samples=single))
        rows.append(Row(f"runner, {envs} envs, one batched call per chunk (16 lanes)", median(batched), "steps/s",
                        higher_is_better=True, baseline=median(single), baseline_label="1 env", samples=batched))
        rows.append(Row("  as a fraction of the bare simulator", median(batched) / sim, "x", target=0.8,
                        higher_is_better=True))
        rows.append(Row(f"runner, {envs} envs, recording every step", median(recorded), "steps/s",
                        higher_is_better=True, baseline=median(batched), baseline_label="no recording",
                        samples=recorded))
        results: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
        for rep in range(1 if quick else 2):
            for workers in (1, 2):
                results[workers].append(collection_steps_per_s(store, policy, workers, envs, k * workers, n,
                                                               max_steps, 100 * rep + workers))
    finally:
        torch.set_num_threads(prev)
    sim_two = parallel_sim_steps_per_s(max_steps * 4, 2)
    for workers in (1, 2):
        end = median([r[0] for r in results[workers]])
        steady = median([r[1] for r in results[workers]])
        base_steady = None if workers == 1 else median([r[1] for r in results[1]])
        rows.append(Row(f"collect_rollouts {workers} process(es) x {envs} envs, end to end", end, "steps/s",
                        higher_is_better=True))
        rows.append(Row(f"collect_rollouts {workers} process(es) x {envs} envs, steady state", steady, "steps/s",
                        higher_is_better=True, baseline=base_steady, baseline_label="1 process"))
    one, two = median([r[1] for r in results[1]]), median([r[1] for r in results[2]])
    rows.append(Row("2 processes / 1 process, steady state", two / one, "x", target=1.7, higher_is_better=True,
                    note="2 cores, shared with whatever else runs"))
    rows.append(Row("bare simulator: 2 processes / 1 process", sim_two / sim, "x", higher_is_better=True,
                    note="the ceiling this machine allows right now"))
    return rows


def test_rollout_benchmark_smoke(tmp_path) -> None:
    """The batched runner stores what the one-env runner does, and the steady-state arithmetic (no timing)."""
    with SimEnv(TASK, horizon=12) as env, SimEnv(TASK, horizon=12) as other:
        policy = make_policy(env, down_dims=(16, 32), diffusion_step_embed_dim=16)
        states = env.sample_init_states(3, 0)
        alone = [run_episode(env, policy, s, NO_EXPLORATION, episode_seed(0, init_state_id(s), 0)) for s in states]
        together: dict[str, tuple[bool, int]] = {}
        run_batched([env, other], policy, _items(states, 0), NO_EXPLORATION,
                    lambda item, ok, n, slot: together.__setitem__(item.state_id, (ok, n)))
        assert [together[init_state_id(s)] for s in states] == alone == [(False, 12)] * 3
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
    paths = report(rows, out, "rollout_bench", "SIME rollout benchmark (lift, DDIM-10 UNet 32-64-128, 1 thread)")
    for name, path in paths.items():
        print(f"  {name}: {path}")


if __name__ == "__main__":
    main()
