"""Experiment tracking with the real backends: `sime train --track`, videos, and `sime run`'s per-round logging.

TensorBoard files are read back with TensorBoard's own EventAccumulator; wandb runs offline into a temporary
WANDB_DIR and its history is read from the run's ``.wandb`` file (LevelDB log-format records of wandb's
``Record`` protobuf, after a 7-byte ':W&B' header; the framing is LevelDB's documented log format).
"""

from __future__ import annotations

import csv
import io
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import sime_data
from sime_policy import cli
from sime_policy.policy.config import ExperimentConfig, PolicyConfig, TrainConfig
from sime_policy.training.fit_report import FitReport
from sime_policy.pipeline import PipelineConfig, build_report
from sime_policy.pipeline.names import Chain
from sime_policy.training.tracking import TrackingError, check_track_spec, make_tracker, parse_track_spec
from sime_policy.training.trainer import train

EventAccumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator").EventAccumulator
pytest.importorskip("wandb")
from PIL import Image  # noqa: E402

STEPS = 30
TRAIN_FILES = {"final.ckpt", "fit.json", "latest.ckpt", "loss_curves.png", "losses.csv", "losses.json", "train.log"}


# ---------------------------------------------------------------------- helpers
@pytest.fixture(autouse=True)
def offline_wandb(tmp_path_factory, monkeypatch):
    """wandb offline and silent, everything it writes under a temporary directory; one torch thread."""
    root = tmp_path_factory.mktemp("wandb_home")
    for var, sub in (("WANDB_DIR", "runs"), ("WANDB_CACHE_DIR", "cache"), ("WANDB_CONFIG_DIR", "config"),
                     ("WANDB_DATA_DIR", "data"), ("WANDB_ARTIFACT_DIR", "artifacts")):
        (root / sub).mkdir()
        monkeypatch.setenv(var, str(root / sub))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var in ("WANDB_X_DISABLE_STATS", "WANDB_X_DISABLE_META", "WANDB_X_DISABLE_MACHINE_INFO", "WANDB_DISABLE_GIT"):
        monkeypatch.setenv(var, "true")  # a faster start: no system metrics, machine or git probing
    monkeypatch.setenv("WANDB_X_SAVE_REQUIREMENTS", "false")
    monkeypatch.delenv("SIME_TRACK", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield root / "runs"
    torch.set_num_threads(before)
    assert not wandb_children(), "a wandb process outlived its runs"


def wandb_children() -> list[str]:
    """Names of this process's child processes that belong to wandb."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name, rest = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()
        if int(rest[1]) == os.getpid() and "wandb" in name:
            found.append(name)
    return found


def wandb_runs(root: Path) -> list[Path]:
    """Offline run directories under a WANDB_DIR."""
    return sorted((root / "wandb").glob("offline-run-*"))


def wandb_history(run_dir: Path) -> list[dict[str, object]]:
    """History rows of an offline wandb run (key -> JSON-decoded value), read from its .wandb file."""
    from wandb.proto import wandb_internal_pb2

    raw = next(run_dir.glob("run-*.wandb")).read_bytes()
    assert raw[:4] == b":W&B"
    block, pos, parts, rows = 32768, 7, [], []
    while pos + 7 <= len(raw):
        left = block - pos % block
        if left < 7:  # block trailer
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", raw[pos:pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        data, pos = raw[pos + 7:pos + 7 + length], pos + 7 + length
        parts = [data] if kind in (1, 2) else parts + [data]
        if kind in (1, 4):  # full record, or the last part of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(parts))
            if record.WhichOneof("record_type") == "history":
                rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                             for item in record.history.item})
    return rows


def events(log_dir: Path) -> EventAccumulator:
    """Every event of a TensorBoard directory."""
    accumulator = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def scalars(acc: EventAccumulator, tag: str) -> dict[int, float]:
    """step -> value of one scalar tag."""
    return {event.step: event.value for event in acc.Scalars(tag)}


def gif_frames(data: bytes) -> list[np.ndarray]:
    """RGB frames of a GIF."""
    image = Image.open(io.BytesIO(data))
    frames = []
    for index in range(image.n_frames):
        image.seek(index)
        frames.append(np.asarray(image.convert("RGB")))
    return frames


def toy_store(path: Path) -> sime_data.Store:
    """Six deterministic 1-D reaches (as in tests/unit/test_trainer.py), in version 'v1'."""
    store = sime_data.init_store(path)
    with store.writer(source="demo", task="toy") as writer:
        for i, goal in enumerate((-0.8, -0.3, 0.3, 0.8, -0.55, 0.55)):
            pos = 0.0
            for _ in range(20):
                nxt = pos + 0.15 * (goal - pos)
                writer.add_step(obs={"pos": np.array([pos], np.float32), "goal": np.array([goal], np.float32)},
                                action=np.array([nxt, (nxt - pos) * 5.0], np.float32))
                pos = nxt
            writer.finish(success=True, init_state_id=f"s{i}")
    store.create_version("v1", store.episodes()["episode_id"].tolist())
    return store


def tiny_config() -> ExperimentConfig:
    """A policy that trains dozens of steps a second on one thread, validating every 10 steps."""
    policy = PolicyConfig(obs_keys=("obs/pos", "obs/goal"), horizon=8, n_obs_steps=2, n_action_steps=4,
                          down_dims=(16, 32), diffusion_step_embed_dim=16, n_groups=4, num_inference_steps=5)
    return ExperimentConfig(name="tiny", task="toy", policy=policy.validate(), train=TrainConfig(
        steps=STEPS, batch_size=16, lr=1e-3, warmup_steps=5, val_ratio=0.2, val_every=10, val_batches=2,
        checkpoint_every=0, log_every=10, num_threads=1, seed=0, fit_windows=32))


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> tuple[sime_data.Store, Path]:
    """The toy store and the tiny config as a JSON file."""
    root = tmp_path_factory.mktemp("toy")
    config = root / "tiny.json"
    config.write_text(tiny_config().to_json())
    return toy_store(root / "store"), config


def train_argv(store: sime_data.Store, config: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--store", store.location, "--version", "v1", "--config", str(config), "--out", str(out),
            "--no-progress", *extra]


def csv_rows(path: Path) -> dict[int, dict[str, str]]:
    return {int(row["step"]): row for row in csv.DictReader(path.open())}


# ---------------------------------------------------------------------- sime train
def test_sime_train_logs_losses_fit_and_summary_to_tensorboard_and_wandb(toy, tmp_path, offline_wandb, capsys):
    store, config = toy
    out = tmp_path / "run"
    assert cli.main(train_argv(store, config, out, "--track", "wandb,tensorboard")) == 0
    printed = capsys.readouterr().out
    assert f"tensorboard --logdir {out / 'tensorboard'}" in printed and "wandb sync" in printed

    rows = csv_rows(out / "losses.csv")
    fit = json.loads((out / "fit.json").read_text())
    acc = events(out / "tensorboard")
    logged = scalars(acc, "train/loss")
    assert sorted(logged) == [10, 20, 30]  # every 10th step
    for step, value in logged.items():  # TensorBoard keeps float32
        assert value == pytest.approx(float(rows[step]["train_loss"]), rel=1e-6)
        assert scalars(acc, "train/lr")[step] == pytest.approx(float(rows[step]["lr"]), rel=1e-6)
        assert scalars(acc, "train/grad_norm")[step] == pytest.approx(float(rows[step]["grad_norm"]), rel=1e-6)
    val = scalars(acc, "val/loss")
    assert sorted(val) == [10, 20, 30]
    assert all(val[s] == pytest.approx(float(rows[s]["val_loss"]), rel=1e-6) for s in val)
    assert scalars(acc, "fit/normalized_mse") == {STEPS: pytest.approx(fit["normalized_mse"], rel=1e-6)}
    assert scalars(acc, "fit/windows") == {STEPS: fit["windows"]} and scalars(acc, "fit/ok") == {STEPS: float(fit["ok"])}
    assert {"fit/summary/text_summary", "summary/text_summary", "config/text_summary"} <= set(acc.Tags()["tensors"])

    (run,) = wandb_runs(offline_wandb)
    by_step: dict = {}
    for row in wandb_history(run):
        by_step.setdefault(row["_step"], {}).update(row)
    for step in (10, 20, 30):  # wandb keeps the exact float64 that losses.csv holds
        assert by_step[step]["train/loss"] == float(rows[step]["train_loss"])
        assert by_step[step]["val/loss"] == float(rows[step]["val_loss"])
    assert by_step[STEPS]["fit/normalized_mse"] == fit["normalized_mse"]
    assert "tracking: " in (out / "train.log").read_text() and "ms per step" in (out / "train.log").read_text()


def test_track_none_writes_nothing_extra_and_tracking_leaves_results_unchanged(toy, tmp_path, offline_wandb):
    store, config = toy
    assert cli.build_parser().parse_args(train_argv(store, config, tmp_path / "x")).track == "none"  # the default
    assert cli.main(train_argv(store, config, tmp_path / "plain", "--track", "none")) == 0
    assert {p.name for p in (tmp_path / "plain").iterdir()} == TRAIN_FILES
    assert not (offline_wandb / "wandb").exists()

    with make_tracker("tensorboard,wandb", tmp_path / "tracked", "tracked") as tracker:
        tracked = train(store, "v1", tiny_config(), tmp_path / "tracked", progress=False, track_every=1,
                        tracker=tracker)
    assert tracked.tracking_s > 0
    # tracking changes no number: losses, learning rates and gradient norms are the same bytes
    assert (tmp_path / "tracked" / "losses.csv").read_bytes() == (tmp_path / "plain" / "losses.csv").read_bytes()
    assert sorted(scalars(events(tmp_path / "tracked" / "tensorboard"), "train/loss")) == list(range(1, STEPS + 1))


def test_unknown_backend_or_missing_package_is_refused_before_any_work(toy, tmp_path, monkeypatch, capsys):
    store, config = toy
    for spec, message in (("mlflow", "unknown tracking backend 'mlflow'"),
                          ("tensorboard,nope", "unknown tracking backend 'nope'"),
                          ("none,wandb", "'none' cannot be combined")):
        with pytest.raises(SystemExit) as exit_:
            cli.main(train_argv(store, config, tmp_path / "x", "--track", spec))
        assert exit_.value.code == 2 and message in capsys.readouterr().err
        with pytest.raises(SystemExit):
            cli.main(["run", "--store", str(tmp_path / "new_store"), "--track", spec])
        assert message in capsys.readouterr().err
    monkeypatch.setenv("SIME_TRACK", "bogus")  # a bad default from the environment is refused the same way
    with pytest.raises(SystemExit):
        cli.main(train_argv(store, config, tmp_path / "x"))
    assert "unknown tracking backend 'bogus'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "new_store").exists()

    monkeypatch.setenv("SIME_TRACK", "wandb")
    args = cli.build_parser().parse_args(train_argv(store, config, tmp_path / "x"))
    assert args.track == "wandb"
    assert parse_track_spec(" WandB , tensorboard,wandb ") == ("tensorboard", "wandb")
    assert check_track_spec("") == check_track_spec(None) == "none"
    monkeypatch.setitem(__import__("sime_policy.training.tracking").training.tracking._REQUIRES, "wandb", ("sime_no_such_module",))
    with pytest.raises(TrackingError, match=r'pip install -e "\.\[track\]"'):
        check_track_spec("wandb")


# ---------------------------------------------------------------------- videos
def test_video_is_an_image_summary_and_a_wandb_gif_with_every_frame(tmp_path, offline_wandb):
    colors = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 255, 255], [255, 0, 255],
                       [128, 128, 128]], np.uint8)
    frames = np.broadcast_to(colors[:, None, None, :], (7, 24, 32, 3)).copy()
    frames[:, :4, :4] = 0  # a corner mark, so no frame is a flat colour
    with make_tracker("tensorboard,wandb", tmp_path, "video-test") as tracker:
        tracker.log_video("eval/video", frames, fps=10, step=3)
        with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
            tracker.log_video("eval/video", frames[..., :2], fps=10, step=4)
        with pytest.raises(ValueError, match="uint8"):
            tracker.log_video("eval/video", frames.astype(np.float32), fps=10, step=4)

    (image,) = events(tmp_path / "tensorboard").Images("eval/video")
    assert (image.step, image.width, image.height) == (3, 32, 24)
    decoded = gif_frames(image.encoded_image_string)
    assert len(decoded) == 7 and Image.open(io.BytesIO(image.encoded_image_string)).info["duration"] == 100
    for got, want in zip(decoded, frames):
        assert np.abs(got[12, 16].astype(int) - want[12, 16]).max() <= 8  # GIF palette rounding at most

    (run,) = wandb_runs(offline_wandb)
    (gif,) = (run / "files" / "media" / "videos").rglob("*.gif")
    assert len(gif_frames(gif.read_bytes())) == 7
    assert [row["_step"] for row in wandb_history(run) if row.get("eval/video/_type") == "video-file"] == [3]


# ---------------------------------------------------------------------- sime run: one round's figures
@pytest.fixture(scope="module")
def camera_env():
    """A real Lift simulator with cameras (skipped where offscreen rendering does not work)."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    from sime_policy.envs.wrapper import SimEnv

    try:
        env = SimEnv("lift", cameras=True, image_size=64, seed=0)
    except Exception as exc:  # pragma: no cover - machines without EGL/OSMesa
        pytest.skip(f"no offscreen rendering here: {exc}")
    yield env
    env.close()


def _rollouts(store, outcomes, *, model_xml=None, states=None, **meta) -> list[str]:
    """Episodes of 4 states x 2 trials with the given successes (real simulator states when given)."""
    ids = []
    length = len(states) if states is not None else 3
    with store.writer(source="rollout", task="lift", model_xml=model_xml, **meta) as writer:
        for i, ok in enumerate(outcomes):
            for t in range(length):
                writer.add_step(obs={"x": np.full(2, t, np.float32)}, action=np.zeros(3), reward=0.0, done=False,
                                state=states[t] if states is not None else np.zeros(4))
            ids.append(writer.finish(success=ok, init_state_id=f"s{i % 4}", trial=i // 4))
    return ids


def test_round_logging_writes_rates_paired_differences_fit_and_one_video(camera_env, tmp_path, offline_wandb):
    from sime_policy.pipeline.tracking import VIDEO_TAG, close_trackers, log_round, render_episode, round_trackers

    env = camera_env
    states = [env.sample_init_states(1, seed=5)[0]]
    env.reset_to(states[0])
    for _ in range(5):  # a real 6-step episode: close the gripper while holding the pose
        env.step(env.eef_action(1.0))
        states.append(env.get_state())
    store = sime_data.init_store(tmp_path / "store")
    config = PipelineConfig(name="exp", task="lift", demos=5, rounds=1, seeds=(233,), track="tensorboard,wandb")
    base, sime, out = Chain("lift", "exp", 233, "baseline"), Chain("lift", "exp", 233, "sime"), tmp_path / "out"
    demos = _rollouts(store, [True] * 5)
    store.create_version("lift/core_5", demos)

    def evaluation(name, outcomes, trained_on):
        ids = _rollouts(store, outcomes, model_xml=env.model_xml(), states=states)
        store.create_version(name, ids, rule={"kind": "rollouts", "trained_on": trained_on, "held_out": True})

    r0 = [True, False, False, True, False, False, True, False]                   # 3 / 8
    evaluation(sime.eval_version(0), r0, "lift/core_5")
    store.create_version(sime.collect_version(0), _rollouts(store, [True, False] * 4))
    store.create_version(sime.explore_version(0), _rollouts(store, [True, True, False, True] * 2))
    store.create_version(base.train_version(1, "lift/core_5"), demos[:4])
    store.create_version(sime.train_version(1, "lift/core_5"), demos)
    evaluation(base.eval_version(1), r0, base.train_version(1, "lift/core_5"))   # unchanged
    evaluation(sime.eval_version(1), [True] * 6 + [False] * 2, sime.train_version(1, "lift/core_5"))
    for chain, round_, mm in ((sime, 0, 2.0), (base, 1, 3.0), (sime, 1, 5.0)):
        FitReport("v", 5, 20, 160, 0.01, position_error_mm=mm, jitter_mm=4.0).write(chain.checkpoint_dir(out, round_))

    trackers = round_trackers(config, out)
    try:
        logged = [log_round(trackers, store, config, out, r, video_env=env) for r in (0, 1)]
    finally:
        close_trackers(trackers)
    report = build_report(store, task="lift", run="exp")
    row = report.summary[(report.summary["round"] == 1) & (report.summary["branch"] == "sime")].iloc[0]

    acc = events(out / "tracking" / "sime" / "tensorboard")
    assert scalars(acc, "eval/success_rate") == {0: 0.375, 1: 0.75}
    assert scalars(acc, "eval/n") == {0: 8, 1: 8}
    assert scalars(acc, "paired/vs_round0/diff") == {1: pytest.approx(row["diff_vs_round0"])}
    assert scalars(acc, "paired/vs_round0/p_value") == {1: pytest.approx(row["p_value"])}
    assert scalars(acc, "paired/vs_other/diff") == {1: pytest.approx(row["diff_vs_other"])}
    assert scalars(acc, "eval/stderr")[1] == pytest.approx(row["stderr"])
    assert scalars(acc, "data/explore/success_rate") == {0: 0.75} and scalars(acc, "data/collect/n") == {0: 8}
    assert scalars(acc, "fit/position_error_mm") == {0: 2.0, 1: 5.0} and scalars(acc, "data/train_episodes")[1] == 5
    videos = acc.Images(VIDEO_TAG)
    assert [v.step for v in videos] == [0, 1] and (videos[0].width, videos[0].height) == (64, 64)
    assert all(len(gif_frames(v.encoded_image_string)) == len(states) for v in videos)  # every recorded step
    assert "round/text_summary" in acc.Tags()["tensors"]

    baseline = events(out / "tracking" / "baseline" / "tensorboard")
    assert scalars(baseline, "eval/success_rate") == {0: 0.375, 1: 0.375}
    assert scalars(baseline, "paired/vs_other/diff") == {1: pytest.approx(-row["diff_vs_other"])}
    assert VIDEO_TAG not in baseline.Tags()["images"]  # one video per round, on the SIME branch
    assert logged[1]["sime"]["eval/success_rate"] == 0.75 and logged[1]["baseline"]["data/train_episodes"] == 4

    runs = wandb_runs(offline_wandb)
    assert len(runs) == 2  # one wandb run per branch
    histories = [wandb_history(run) for run in runs]
    sime_history = next(h for h in histories if any(f"{VIDEO_TAG}/_type" in row for row in h))
    assert [row["eval/success_rate"] for row in sime_history if "eval/success_rate" in row] == [0.375, 0.75]

    # the video's frames are exactly what reset_to observes of the recorded states
    episode = store.episodes(version=sime.eval_version(1))["episode_id"].iloc[0]
    frames, fps = render_episode(store, episode, "lift", env=env)
    assert frames.shape == (len(states), 64, 64, 3) and fps == 20.0
    for index in (0, len(states) - 1):
        np.testing.assert_array_equal(frames[index], env.reset_to(states[index])["agentview_image"])

    assert log_round(round_trackers(PipelineConfig(name="exp"), tmp_path / "untracked"), store, config, out, 1) == {}
    assert not (tmp_path / "untracked").exists()


def test_tracking_choice_is_not_part_of_a_runs_identity(tmp_path, capsys):
    plain, tracked = PipelineConfig(), PipelineConfig(track="tensorboard,wandb")
    assert plain.identity() == tracked.identity() and "track" not in tracked.identity()
    assert tracked.identity_changes(plain.identity()) == [] and plain.identity_changes(tracked.to_dict()) == []
    assert tracked.validate() is tracked
    with pytest.raises(TrackingError, match="unknown tracking backend 'tb'"):
        PipelineConfig(track="tb").validate()
    assert cli.main(["run", "--store", str(tmp_path / "s"), "--track", "wandb", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["track"] == "wandb"
