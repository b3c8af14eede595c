"""A policy ready for rollouts or the rig: loaded once from a checkpoint (with its lineage) or wrapped in memory."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass

from ..policy.diffusion import DiffusionPolicy
from ..training.checkpoint import CheckpointInfo, load_policy_and_info


@dataclass(frozen=True)
class PolicyHandle:
    """A loaded policy plus what rollouts record about it (its checkpoint's lineage, when it has one)."""

    policy: DiffusionPolicy
    checkpoint_id: str
    info: CheckpointInfo | None = None

    @classmethod
    def of(cls, policy: DiffusionPolicy, info: CheckpointInfo | None = None) -> "PolicyHandle":
        """Handle of a policy loaded from a checkpoint (`info`), or of an in-memory one (content id)."""
        return cls(policy, info.checkpoint_id if info is not None else weights_id(policy), info)

    @property
    def path(self) -> str | None:
        """The checkpoint file the policy was loaded from (None: in memory)."""
        return self.info.path if self.info is not None else None

    @property
    def use_ema(self) -> bool:
        """True unless the checkpoint's non-EMA weights were loaded."""
        return self.info.use_ema if self.info is not None else True

    @property
    def task(self) -> str | None:
        """The task the checkpoint was trained for (None: unknown)."""
        return self.info.task if self.info is not None else None

    @property
    def trained_on(self) -> str | None:
        """The version the checkpoint was trained on."""
        return self.info.version if self.info is not None else None

    @property
    def trained_on_created_at(self) -> str | None:
        """Creation time of that version."""
        return self.info.version_created_at if self.info is not None else None


def weights_id(policy: DiffusionPolicy) -> str:
    """Content id of an in-memory policy without a checkpoint: 'mem-' + hash of config and weights."""
    digest = hashlib.sha256(json.dumps(dataclasses.asdict(policy.config), sort_keys=True, default=str).encode())
    for name, tensor in sorted(policy.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return "mem-" + digest.hexdigest()[:12]


def load_policy_handle(path: str | os.PathLike) -> PolicyHandle:
    """A checkpoint (file or run directory) loaded once for rollouts: EMA weights, eval mode, with its lineage."""
    return PolicyHandle.of(*load_policy_and_info(path))


def resolve_policy(policy_or_checkpoint: PolicyHandle | DiffusionPolicy | str | os.PathLike) -> PolicyHandle:
    """A handle as given, a checkpoint (file or run directory) loaded, or an in-memory policy wrapped (content id)."""
    if isinstance(policy_or_checkpoint, PolicyHandle):
        return policy_or_checkpoint
    if isinstance(policy_or_checkpoint, DiffusionPolicy):
        return PolicyHandle.of(policy_or_checkpoint)
    if not isinstance(policy_or_checkpoint, (str, os.PathLike)):
        raise TypeError(f"expected a DiffusionPolicy or a checkpoint path, got {type(policy_or_checkpoint).__name__}")
    return load_policy_handle(policy_or_checkpoint)
