"""Typed configuration of the diffusion policy and its training, with named presets."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

from ..settings import check_fields, setting

LOWDIM_SINGLE_ARM = ("obs/object", "obs/robot0_eef_pos", "obs/robot0_eef_quat", "obs/robot0_gripper_qpos")
LOWDIM_TWO_ARM = LOWDIM_SINGLE_ARM + ("obs/robot1_eef_pos", "obs/robot1_eef_quat", "obs/robot1_gripper_qpos")
IMAGE_PROPRIO = ("obs/robot0_eef_pos", "obs/robot0_eef_quat", "obs/robot0_gripper_qpos")
SCHEDULERS = ("ddim", "ddpm")
PREDICTION_TYPES = ("epsilon", "sample")
#: how low-dim observations enter the condition: min-max normalised to [-1, 1], or raw (as the SIME reference)
OBS_CONDITIONS = ("minmax", "raw")


@dataclass(frozen=True)
class PolicyConfig:
    """Architecture, action chunking and diffusion settings of one policy."""

    obs_keys: tuple[str, ...] = setting(LOWDIM_SINGLE_ARM, "observation keys the policy is conditioned on")
    action_key: str = setting("actions", "store array the policy predicts")
    horizon: int = setting(16, "action steps in each denoised chunk", positive=True)
    n_obs_steps: int = setting(2, "observation steps in the condition", positive=True)
    n_action_steps: int = setting(8, "actions of each chunk executed before predicting again", positive=True)
    down_dims: tuple[int, ...] = setting((256, 512, 1024), "UNet channel widths, one per resolution", positive=True)
    diffusion_step_embed_dim: int = setting(128, "width of the diffusion-step embedding", positive=True)
    kernel_size: int = setting(5, "UNet convolution kernel size", positive=True)
    n_groups: int = setting(8, "GroupNorm groups in the UNet", positive=True)
    num_train_timesteps: int = setting(100, "diffusion timesteps of the training (DDPM) process", positive=True)
    num_inference_steps: int = setting(10, "denoising steps at inference", positive=True)
    scheduler: str = setting("ddim", "inference scheduler (training always uses the DDPM forward process)",
                             choices=SCHEDULERS)
    beta_schedule: str = setting("squaredcos_cap_v2", "diffusers beta schedule")
    clip_sample: bool = setting(True, "clip denoised samples to [-1, 1]")
    prediction_type: str = setting("epsilon", "what the network predicts", choices=PREDICTION_TYPES)
    image_feature_dim: int = setting(512, "features per camera from the image encoder", positive=True)
    crop_hw: tuple[int, int] | None = setting(None, "random crop (height, width) of image keys; unset: 90% of the "
                                                    "stored size", positive=True)
    obs_condition: str = setting("minmax", "low-dim observations in the condition: min-max normalised to [-1, 1] "
                                           "(default) or raw, unnormalised, as the SIME reference feeds them",
                                 choices=OBS_CONDITIONS)
    obs_range_floor: float = setting(0.0, "with minmax: each low-dim dimension's range is widened (about its "
                                          "centre) to at least this many raw units, so a near-constant dimension "
                                          "is not blown up (0: no floor)")

    def validate(self) -> "PolicyConfig":
        """Raise ValueError on inconsistent settings; return self."""
        if not self.obs_keys:
            raise ValueError("obs_keys must name at least one observation key")
        if self.n_obs_steps < 1 or self.horizon < self.n_obs_steps:
            raise ValueError(f"need 1 <= n_obs_steps <= horizon, got n_obs_steps={self.n_obs_steps}, horizon={self.horizon}")
        if self.n_action_steps < 1 or self.n_obs_steps - 1 + self.n_action_steps > self.horizon:
            raise ValueError(f"n_action_steps={self.n_action_steps} does not fit in horizon={self.horizon} "
                             f"after n_obs_steps={self.n_obs_steps}")
        check_fields(self)
        if self.obs_range_floor < 0:
            raise ValueError(f"obs_range_floor must be >= 0, got {self.obs_range_floor}")
        if self.obs_condition == "raw" and self.obs_range_floor:
            raise ValueError("obs_range_floor applies to the minmax condition; the raw condition has no range")
        if not 1 <= self.num_inference_steps <= self.num_train_timesteps:
            raise ValueError("num_inference_steps must be between 1 and num_train_timesteps")
        return self


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, EMA, validation and checkpointing settings."""

    steps: int = setting(100_000, "total optimisation steps (the fixed budget, used when epochs is unset)",
                         positive=True)
    epochs: float | None = setting(None, "data-scaled budget: passes over the training windows (training/budget.py)",
                                   positive=True)
    min_steps: int = setting(0, "floor of the data-scaled budget")
    step_cap: int | None = setting(None, "cap of the data-scaled budget", positive=True)
    batch_size: int = setting(256, "batch size per process", positive=True)
    lr: float = setting(1e-4, "AdamW learning rate", positive=True)
    weight_decay: float = setting(1e-6, "AdamW weight decay")
    betas: tuple[float, float] = setting((0.95, 0.999), "AdamW betas")
    warmup_steps: int = setting(500, "linear warm-up steps of the cosine schedule")
    grad_clip: float = setting(1.0, "gradient-norm clip (0: none)")
    use_ema: bool = setting(True, "keep an exponential moving average of the weights and save it")
    ema_power: float = setting(0.75, "EMA warm-up power (decay 1 - (1 + step)^-power)", positive=True)
    ema_max_decay: float = setting(0.9999, "EMA decay ceiling", positive=True)
    val_ratio: float = setting(0.05, "share of episodes held out for the validation loss")
    val_every: int = setting(1000, "steps between validation losses (0: only after the last step)")
    val_batches: int = setting(4, "batches per validation loss (0: no validation)")
    checkpoint_every: int = setting(5000, "steps between checkpoints (0: only the last)")
    log_every: int = setting(50, "steps between logged losses (0: none)")
    seed: int = setting(0, "training seed")
    num_threads: int | None = setting(None, "torch threads; unset: torch's own choice", positive=True)
    fit_report: bool = setting(True, "open-loop fit on the training episodes after the last step (fit.json)")
    fit_windows: int = setting(256, "chunks the fit report predicts", positive=True)

    def validate(self) -> "TrainConfig":
        """Raise ValueError on a setting out of its bounds; return self."""
        check_fields(self)
        return self


@dataclass(frozen=True)
class ExperimentConfig:
    """A named preset: task, policy and training configuration together."""

    name: str
    task: str
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (saved inside every checkpoint)."""
        return asdict(self)

    def to_json(self) -> str:
        """JSON form."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "ExperimentConfig":
        """Inverse of `to_dict` (tuples restored; unknown keys are an error)."""
        return cls(name=raw["name"], task=raw["task"], policy=_build(PolicyConfig, raw["policy"]),
                   train=_build(TrainConfig, raw["train"]))

    def with_overrides(self, *, seed: int | None = None, steps: int | None = None, **policy_or_train: Any) -> "ExperimentConfig":
        """Copy with training seed/steps and other named fields of policy or train replaced."""
        train_updates = {k: v for k, v in policy_or_train.items() if k in TrainConfig.__dataclass_fields__}
        policy_updates = {k: v for k, v in policy_or_train.items() if k in PolicyConfig.__dataclass_fields__}
        unknown = set(policy_or_train) - set(train_updates) - set(policy_updates)
        if unknown:
            raise ValueError(f"unknown config field(s): {sorted(unknown)}")
        if seed is not None:
            train_updates["seed"] = seed
        if steps is not None:
            train_updates["steps"] = steps
        return replace(self, policy=replace(self.policy, **policy_updates).validate(),
                       train=replace(self.train, **train_updates).validate())


def _build(kind: type, raw: dict[str, Any]) -> Any:
    fields = {f.name: f for f in dataclasses.fields(kind)}
    unknown = set(raw) - set(fields)
    if unknown:
        raise ValueError(f"unknown {kind.__name__} field(s) {sorted(unknown)}: the checkpoint or file was written by "
                         "another version of the code")
    values = {k: tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v
              for k, v in raw.items()}
    return kind(**values)


# ---------------------------------------------------------------------- presets
def _diffusion_policy(task: str, obs_keys: tuple[str, ...], image: bool) -> Callable[[], ExperimentConfig]:
    """Diffusion Policy's defaults (Chi et al., UNet 256-512-1024, horizon 16, 2 obs, 8 actions; not SIME's)."""

    def make() -> ExperimentConfig:
        policy = PolicyConfig(obs_keys=obs_keys, crop_hw=(76, 76) if image else None)
        train = TrainConfig(steps=300_000 if image else 200_000, batch_size=64 if image else 256)
        return ExperimentConfig(name=f"{task}_{'image' if image else 'lowdim'}", task=task, policy=policy.validate(),
                                train=train)

    return make


#: UNet widths of the SIME reference's training configs (simulation/config_template/training/<task>.json);
#: can.json sets none, so the reference's DiffusionUNetPolicy default (256, 512) applies.
SIME_REF_DOWN_DIMS = {"lift": (512, 1024, 2048), "can": (256, 512), "square": (512, 1024, 2048),
                      "transport": (512, 1024, 2048), "toolhang": (512, 1024, 2048)}
#: batch sizes of those configs (can.json: 60; can_image.json and the rest: 64)
SIME_REF_BATCH = {"can": 60}


def _sime_reference(task: str, obs_keys: tuple[str, ...], image: bool) -> Callable[[], ExperimentConfig]:
    """The SIME reference's own settings (EricJin2002/SIME).

    From simulation/config_template/training/<task>[_image].json, src/policy/dp.py, src/policy/diffusion.py
    and src/train.py: 1 observation step and a 20-action chunk, all executed (num_obs 1, num_action 20,
    inference_horizon = horizon); UNet down_dims 512-1024-2048 (can state-based: the default 256-512),
    diffusion step embedding 256, kernel 5, 8 groups; DDIM with 100 training timesteps, squaredcos_cap_v2,
    clip_sample, epsilon prediction, 20 inference steps; AdamW lr 3e-4, betas (0.95, 0.999), weight decay
    1e-6, cosine schedule with 2000 warm-up steps; 1000 epochs x 100 iterations (100k steps) at batch 64
    (can state-based: 60); no EMA, no validation split, the last checkpoint is evaluated; image policies
    use a GroupNorm ResNet-18 with 64 output features per camera and no crop (crop_shape unset). Low-dim
    observations enter the global condition raw, unnormalised (src/policy/diffusion.py concatenates the image
    features with the raw low-dim vector; only actions are normalised), so exploration noise of 0.01 means 0.01
    in observation units, as in the paper.
    """

    def make() -> ExperimentConfig:
        kind = "image" if image else "lowdim"
        down_dims = (512, 1024, 2048) if image else SIME_REF_DOWN_DIMS[task]
        policy = PolicyConfig(obs_keys=obs_keys, horizon=20, n_obs_steps=1, n_action_steps=20, down_dims=down_dims,
                              diffusion_step_embed_dim=256, kernel_size=5, n_groups=8, num_train_timesteps=100,
                              num_inference_steps=20, scheduler="ddim", image_feature_dim=64,
                              crop_hw=(84, 84) if image else None, obs_condition="raw")
        train = TrainConfig(steps=100_000, batch_size=64 if image else SIME_REF_BATCH.get(task, 64), lr=3e-4,
                            betas=(0.95, 0.999), weight_decay=1e-6, warmup_steps=2000, use_ema=False, val_ratio=0.0,
                            checkpoint_every=5000, grad_clip=0.0)
        return ExperimentConfig(name=f"{task}_{kind}_ref", task=task, policy=policy.validate(), train=train)

    return make


def _cpu(task: str, obs_keys: tuple[str, ...], image: bool) -> Callable[[], ExperimentConfig]:
    """Small presets that train in minutes on a 2-core CPU."""

    def make() -> ExperimentConfig:
        policy = PolicyConfig(obs_keys=obs_keys, down_dims=(64, 128, 256), diffusion_step_embed_dim=64,
                              image_feature_dim=64, crop_hw=(76, 76) if image else None)
        train = TrainConfig(steps=3000 if not image else 1500, batch_size=128 if not image else 32, lr=3e-4,
                            warmup_steps=100, val_every=500, checkpoint_every=1000, ema_power=0.75)
        return ExperimentConfig(name=f"{task}_{'image' if image else 'lowdim'}_cpu", task=task, policy=policy.validate(),
                                train=train)

    return make


_TASK_KEYS = {
    "lift": LOWDIM_SINGLE_ARM,
    "can": LOWDIM_SINGLE_ARM,
    "square": LOWDIM_SINGLE_ARM,
    "transport": LOWDIM_TWO_ARM,
    "toolhang": LOWDIM_SINGLE_ARM,
}
_TASK_CAMERAS = {
    "lift": ("obs/agentview_image", "obs/robot0_eye_in_hand_image"),
    "can": ("obs/agentview_image", "obs/robot0_eye_in_hand_image"),
    "square": ("obs/agentview_image", "obs/robot0_eye_in_hand_image"),
    "transport": ("obs/shouldercamera0_image", "obs/shouldercamera1_image", "obs/robot0_eye_in_hand_image",
                  "obs/robot1_eye_in_hand_image"),
    "toolhang": ("obs/sideview_image", "obs/robot0_eye_in_hand_image"),
}

PRESETS: dict[str, Callable[[], ExperimentConfig]] = {}
for _task, _keys in _TASK_KEYS.items():
    _image_keys = _TASK_CAMERAS[_task] + (IMAGE_PROPRIO if _task != "transport" else
                                          IMAGE_PROPRIO + ("obs/robot1_eef_pos", "obs/robot1_eef_quat",
                                                           "obs/robot1_gripper_qpos"))
    PRESETS[f"{_task}_lowdim"] = _diffusion_policy(_task, _keys, image=False)
    PRESETS[f"{_task}_image"] = _diffusion_policy(_task, _image_keys, image=True)
    PRESETS[f"{_task}_lowdim_ref"] = _sime_reference(_task, _keys, image=False)
    PRESETS[f"{_task}_image_ref"] = _sime_reference(_task, _image_keys, image=True)
    PRESETS[f"{_task}_lowdim_cpu"] = _cpu(_task, _keys, image=False)
    PRESETS[f"{_task}_image_cpu"] = _cpu(_task, _image_keys, image=True)


def get_preset(name: str) -> ExperimentConfig:
    """A preset by name (ValueError listing the names if unknown)."""
    if name not in PRESETS:
        raise ValueError(f"unknown config preset {name!r}; choose one of: {', '.join(sorted(PRESETS))}")
    return PRESETS[name]()
