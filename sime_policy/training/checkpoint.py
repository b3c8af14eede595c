"""Training checkpoints: one self-contained file per save, written atomically, loadable without the store.

A checkpoint is a ``torch.save`` dict (loadable with ``weights_only=True``) holding the model and EMA
weights, optimiser, LR scheduler and RNG states, the experiment config, normaliser stats, the policy's
signature (observation keys/shapes, action size), the store location and version it was trained on
(with the version's creation time and size, for lineage), the code version, the step, the losses so far
and a short stable ``checkpoint_id``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from ..policy.config import ExperimentConfig, PolicyConfig
from ..policy.diffusion import DiffusionPolicy, ObsSpec
from ..policy.normalizer import Normalizer

FORMAT = "sime-policy-checkpoint"
FORMAT_VERSION = 1
LATEST = "latest.ckpt"
FINAL = "final.ckpt"


class CheckpointError(ValueError):
    """A file that is not a readable SIME policy checkpoint."""


class IncompatibleCheckpointError(CheckpointError):
    """A checkpoint whose config, keys or shapes do not match what it is being loaded into."""


# ---------------------------------------------------------------------- identity and code version
@lru_cache(maxsize=1)
def code_version() -> dict[str, Any]:
    """sime package version, git commit (and whether the tree was dirty) and torch version."""
    try:
        from importlib.metadata import PackageNotFoundError, version

        try:
            sime_version = version("sime")
        except PackageNotFoundError:
            sime_version = "0+unknown"
    except ImportError:  # pragma: no cover
        sime_version = "0+unknown"
    commit, dirty = None, None
    root = Path(__file__).resolve().parent.parent
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=root, capture_output=True, text=True,
                             timeout=5).stdout.strip()
        if top and Path(top).resolve() == root:  # only our own checkout, not a repo that happens to contain it
            commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                    timeout=5).stdout.strip() or None
        if commit:
            status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                    capture_output=True, text=True, timeout=5).stdout
            dirty = bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return {"sime_version": sime_version, "git_commit": commit, "git_dirty": dirty, "torch": str(torch.__version__)}


def checkpoint_id(config: Mapping[str, Any], version: str, version_created_at: str | None, step: int,
                  init_from: str | None = None) -> str:
    """Short stable id of a checkpoint: hash of config (seed included), version identity, step and starting weights."""
    identity = {"config": config, "version": version, "created_at": version_created_at, "step": int(step)}
    if init_from is not None:
        identity["init_from"] = init_from
    blob = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


# ---------------------------------------------------------------------- the schema of a training checkpoint
def absolute_location(location: str) -> str:
    """Local store paths made absolute (for lineage); URLs unchanged."""
    return location if "://" in location else os.path.abspath(location)


@dataclass(frozen=True)
class TrainingLineage:
    """What a checkpoint records about its training data (its ``data`` entry)."""

    store: str
    version: str
    version_created_at: str | None
    n_episodes: int
    n_frames: int
    parents: list[str]
    train_episodes: list[str]
    val_episodes: list[str]
    frame_weights: bool
    init_from: str | None
    budget: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The ``data`` entry of the checkpoint dict."""
        return dataclasses.asdict(self)


def training_checkpoint(*, checkpoint_id: str, step: int, total_steps: int, world_size: int, policy: DiffusionPolicy,
                        ema: Mapping[str, Any] | None, optimizer: Mapping[str, Any], lr_scheduler: Mapping[str, Any],
                        rng: Mapping[str, Any], config: Mapping[str, Any], lineage: TrainingLineage,
                        losses: Mapping[str, Any]) -> dict[str, Any]:
    """The checkpoint dict of a training state (format FORMAT / FORMAT_VERSION, see the module docstring)."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "checkpoint_id": checkpoint_id,
        "step": step,
        "total_steps": total_steps,
        "world_size": world_size,
        "created_at": datetime.now(timezone.utc).isoformat(),
        "model": policy.state_dict(),
        "ema": ema,
        "optimizer": optimizer,
        "lr_scheduler": lr_scheduler,
        "rng": rng,
        "config": config,
        "normalizer": policy.normalizer.stats(),
        "signature": policy.signature(),
        "data": lineage.to_dict(),
        "code": code_version(),
        "losses": losses,
    }


# ---------------------------------------------------------------------- writing and reading
def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write a file so that readers see either the old or the complete new content (temp file + os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600 files
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def save_checkpoint(payload: Mapping[str, Any], paths: Iterable[str | os.PathLike]) -> None:
    """Serialise a checkpoint dict once and write it atomically to every path (hard links after the first)."""
    buffer = io.BytesIO()
    torch.save(dict(payload), buffer)
    data = buffer.getvalue()
    first: Path | None = None
    for path in map(Path, paths):
        if first is None:
            atomic_write_bytes(path, data)
            first = path
        elif not _atomic_link(first, path):
            atomic_write_bytes(path, data)


def _atomic_link(source: Path, target: Path) -> bool:
    """Make target a hard link to source, atomically replacing it; False where links are unsupported."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.link")
    try:
        if tmp.exists():
            tmp.unlink()
        os.link(source, tmp)
        os.replace(tmp, target)
        return True
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass
        return False


def resolve_checkpoint_path(path: str | os.PathLike) -> Path:
    """A checkpoint file, or a run directory (its final.ckpt if present, else latest.ckpt)."""
    path = Path(path)
    if path.is_dir():
        for name in (FINAL, LATEST):
            if (path / name).is_file():
                return path / name
        raise FileNotFoundError(f"no {FINAL} or {LATEST} in run directory {path}")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint dict (tensors only, no code executed); CheckpointError if it is not one."""
    path = resolve_checkpoint_path(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many kinds (pickle, zip, EOF) for damaged or foreign files
        raise CheckpointError(f"{path} is not a readable checkpoint: {exc}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a SIME policy checkpoint (no format marker {FORMAT!r})")
    if int(ckpt.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format {ckpt['format_version']}, newer than this code "
                              f"({FORMAT_VERSION}); upgrade sime")
    ckpt["path"] = str(path)
    return ckpt


def checkpoint_info(path: str | os.PathLike) -> dict[str, Any]:
    """Everything in a checkpoint except weights and optimiser/RNG states (id, config, data, code, losses...)."""
    ckpt = load_checkpoint(path)
    heavy = {"model", "ema", "optimizer", "lr_scheduler", "rng"}
    return {k: v for k, v in ckpt.items() if k not in heavy}


# ---------------------------------------------------------------------- compatibility
def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Human-readable 'field: saved -> current' lines for fields that differ."""
    out = []
    for key in sorted(set(saved) | set(current)):
        a, b = _plain(saved.get(key, "<absent>")), _plain(current.get(key, "<absent>"))
        if a != b:
            out.append(f"{key}: checkpoint {a!r} vs now {b!r}")
    return out


def signature_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Differences in action size and observation keys/shapes between two policy signatures."""
    out = []
    if int(saved["action_dim"]) != int(current["action_dim"]):
        out.append(f"action_dim: checkpoint {saved['action_dim']} vs now {current['action_dim']}")
    a, b = saved["obs_specs"], current["obs_specs"]
    for key in sorted(set(a) | set(b)):
        if key not in b:
            out.append(f"observation {key!r}: in the checkpoint, absent now")
        elif key not in a:
            out.append(f"observation {key!r}: absent from the checkpoint, present now")
        elif _plain(a[key]) != _plain(b[key]):
            out.append(f"observation {key!r}: checkpoint shape/dtype {_plain(a[key])} vs now {_plain(b[key])}")
    return out


def check_compatible(ckpt: Mapping[str, Any], policy_config: PolicyConfig, signature: Mapping[str, Any]) -> None:
    """Raise IncompatibleCheckpointError naming every policy field, key or shape that differs."""
    saved_policy = ckpt["config"]["policy"]
    problems = config_differences(saved_policy, dataclasses.asdict(policy_config))
    problems += signature_differences(ckpt["signature"], signature)
    if problems:
        raise IncompatibleCheckpointError(
            f"checkpoint {ckpt.get('path', '')} (trained on version {ckpt['data'].get('version')!r}) does not fit "
            "this policy: " + "; ".join(problems))


def load_weights(module: nn.Module, state: Mapping[str, torch.Tensor], what: str = "model") -> None:
    """load_state_dict with an IncompatibleCheckpointError listing missing, unexpected and mis-shaped tensors."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs now {tuple(own[k].shape)}"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        if shapes:
            parts.append(f"shape mismatch {shapes[:5]}{' ...' if len(shapes) > 5 else ''}")
        raise IncompatibleCheckpointError(f"{what} weights do not fit: " + "; ".join(parts))
    module.load_state_dict(state)


# ---------------------------------------------------------------------- rebuilding a policy
@dataclass(frozen=True)
class CheckpointInfo:
    """Lineage of a policy loaded from a checkpoint: its id, file, step, weights and training data."""

    checkpoint_id: str
    path: str | None = None
    step: int | None = None
    weights: str = "ema"  # 'ema' or 'model': which weights were loaded
    task: str | None = None
    store: str | None = None
    version: str | None = None
    version_created_at: str | None = None

    @property
    def use_ema(self) -> bool:
        """True when the EMA weights were loaded."""
        return self.weights == "ema"

    @classmethod
    def of(cls, ckpt: Mapping[str, Any], weights: str) -> "CheckpointInfo":
        """The lineage a checkpoint dict records, for the given loaded weights."""
        data = ckpt.get("data") or {}
        step = ckpt.get("step")
        return cls(checkpoint_id=str(ckpt.get("checkpoint_id")), path=ckpt.get("path"),
                   step=None if step is None else int(step), weights=weights,
                   task=(ckpt.get("config") or {}).get("task"), store=data.get("store"), version=data.get("version"),
                   version_created_at=data.get("version_created_at"))


def policy_from_checkpoint(ckpt: Mapping[str, Any], *, use_ema: bool = True) -> tuple[DiffusionPolicy, CheckpointInfo]:
    """The DiffusionPolicy a checkpoint dict describes (EMA weights when present and asked for) and its lineage."""
    config = ExperimentConfig.from_dict(ckpt["config"])
    signature = ckpt["signature"]
    obs_specs = {k: ObsSpec(tuple(int(x) for x in shape), str(dtype)) for k, (shape, dtype) in
                 signature["obs_specs"].items()}
    policy = DiffusionPolicy(config.policy, int(signature["action_dim"]), obs_specs, Normalizer(ckpt["normalizer"]))
    ema = ckpt.get("ema")
    if use_ema and ema is not None:
        load_weights(policy, ema["averaged"], "EMA")
    else:
        load_weights(policy, ckpt["model"], "model")
    return policy, CheckpointInfo.of(ckpt, "ema" if use_ema and ema is not None else "model")


def load_policy_and_info(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                         use_ema: bool = True) -> tuple[DiffusionPolicy, CheckpointInfo]:
    """DiffusionPolicy (eval mode) from a checkpoint file or run directory alone, and its lineage."""
    ckpt = load_checkpoint(path, map_location=map_location)
    policy, info = policy_from_checkpoint(ckpt, use_ema=use_ema)
    policy.to(map_location)
    policy.eval()
    return policy, info


def load_policy(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                use_ema: bool = True) -> DiffusionPolicy:
    """DiffusionPolicy from a checkpoint file or run directory alone (no store needed), in eval mode."""
    return load_policy_and_info(path, map_location, use_ema)[0]
