"""Diffusion policy: observation encoder + conditional 1-D UNet, DDPM training loss, DDIM/DDPM sampling with exploration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from torch import nn

from .config import PolicyConfig
from .exploration import NO_EXPLORATION, Exploration
from .models import ConditionalUnet1D, ObservationEncoder
from .normalizer import Normalizer, fit_normalizer


@dataclass(frozen=True)
class ObsSpec:
    """Per-step shape and dtype of one observation key (image keys have 3 dims: H, W, C)."""

    shape: tuple[int, ...]
    dtype: str

    @property
    def is_image(self) -> bool:
        """True for camera images (H, W, C)."""
        return len(self.shape) == 3


class PolicyInputError(ValueError):
    """Observations or data that do not match what the policy was built for."""


class DiffusionPolicy(nn.Module):
    """Predicts action chunks from an observation history by iterative denoising."""

    def __init__(self, config: PolicyConfig, action_dim: int, obs_specs: Mapping[str, ObsSpec],
                 normalizer: Normalizer) -> None:
        super().__init__()
        config.validate()
        missing = [k for k in config.obs_keys if k not in obs_specs]
        if missing:
            raise PolicyInputError(f"no shape given for observation key(s) {missing}")
        self.config = config
        self.action_dim = int(action_dim)
        self.obs_specs = {k: obs_specs[k] for k in config.obs_keys}
        self.lowdim_keys = sorted(k for k, s in self.obs_specs.items() if not s.is_image)
        self.image_keys = sorted(k for k, s in self.obs_specs.items() if s.is_image)
        for key in [config.action_key, *self.lowdim_keys]:
            if key not in normalizer.keys:
                raise PolicyInputError(f"the normaliser was not fitted for {key!r}")
        self.normalizer = normalizer
        crop = config.crop_hw
        if crop is None and self.image_keys:
            h, w, _ = self.obs_specs[self.image_keys[0]].shape
            crop = (int(round(h * 0.9)), int(round(w * 0.9)))
        self.obs_encoder = ObservationEncoder(
            lowdim_dims={k: int(np.prod(self.obs_specs[k].shape)) for k in self.lowdim_keys},
            image_shapes={k: tuple(self.obs_specs[k].shape) for k in self.image_keys},
            n_obs_steps=config.n_obs_steps,
            image_feature_dim=config.image_feature_dim,
            crop_hw=crop,
        )
        self.model = ConditionalUnet1D(
            input_dim=self.action_dim,
            global_cond_dim=self.obs_encoder.output_dim,
            diffusion_step_embed_dim=config.diffusion_step_embed_dim,
            down_dims=config.down_dims,
            kernel_size=config.kernel_size,
            n_groups=config.n_groups,
        )
        self.train_scheduler = DDPMScheduler(
            num_train_timesteps=config.num_train_timesteps, beta_schedule=config.beta_schedule,
            clip_sample=config.clip_sample, prediction_type=config.prediction_type,
        )

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_version(cls, store: Any, version: str, config: PolicyConfig) -> "DiffusionPolicy":
        """Build a policy for a store version: shapes from its arrays, normaliser fitted on its frames."""
        from sime_data.sampler import version_key_specs

        specs = version_key_specs(store, version)
        needed = [*config.obs_keys, config.action_key]
        missing = [k for k in needed if k not in specs]
        if missing:
            raise PolicyInputError(
                f"version {version!r} lacks key(s) {missing} that the config needs; it has {sorted(specs)}. "
                "Pick a config whose obs_keys match the data (or record the missing observations)."
            )
        if len(specs[config.action_key].shape) != 1:
            raise PolicyInputError(f"actions must be vectors per step, got shape {specs[config.action_key].shape}")
        obs_specs = {k: ObsSpec(tuple(specs[k].shape), specs[k].dtype) for k in config.obs_keys}
        lowdim = [k for k, s in obs_specs.items() if not s.is_image]
        normalizer = fit_normalizer(store, version, [config.action_key, *lowdim])
        return cls(config, specs[config.action_key].shape[0], obs_specs, normalizer)

    def signature(self) -> dict[str, Any]:
        """What a checkpoint must match to be loaded into this policy (keys, shapes, action size)."""
        return {"action_dim": self.action_dim,
                "obs_specs": {k: [list(s.shape), s.dtype] for k, s in self.obs_specs.items()}}

    @property
    def device(self) -> torch.device:
        """Device of the policy's weights."""
        return next(self.model.parameters()).device

    # ------------------------------------------------------------------ encoding
    def _obs_tensors(self, obs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Observation history (B, n_obs_steps, ...) as tensors on the policy's device, low-dim normalised."""
        out: dict[str, torch.Tensor] = {}
        steps = self.config.n_obs_steps
        for key in self.config.obs_keys:
            value = obs.get(key)
            if value is None and key.startswith("obs/"):
                value = obs.get(key[4:])
            if value is None:
                raise PolicyInputError(f"observation {key!r} missing; got keys {sorted(obs)}")
            tensor = torch.as_tensor(value, device=self.device)
            spec = self.obs_specs[key]
            if tuple(tensor.shape[-len(spec.shape):]) != spec.shape or tensor.ndim != len(spec.shape) + 2 \
                    or tensor.shape[1] != steps:
                raise PolicyInputError(f"observation {key!r} has shape {tuple(tensor.shape)}; expected "
                                       f"(batch, {steps}, {', '.join(map(str, spec.shape))})")
            if spec.is_image:
                out[key] = tensor
            else:
                flat = tensor.reshape(*tensor.shape[:2], -1).float()
                out[key] = self.normalizer.normalize(key, flat)
        return out

    def encode(self, obs: Mapping[str, Any]) -> torch.Tensor:
        """Global condition (B, G): the observation embedding the UNet is conditioned on."""
        return self.obs_encoder(self._obs_tensors(obs))

    # ------------------------------------------------------------------ training
    def compute_loss(self, batch: Mapping[str, Any], generator: torch.Generator | None = None) -> torch.Tensor:
        """Denoising loss of a batch from the window sampler (per-frame 'weight' respected)."""
        cond = self.encode(batch)
        actions = torch.as_tensor(batch["action"], device=self.device).float()
        if actions.ndim != 3 or actions.shape[1:] != (self.config.horizon, self.action_dim):
            raise PolicyInputError(f"action batch has shape {tuple(actions.shape)}; expected "
                                   f"(batch, {self.config.horizon}, {self.action_dim})")
        target_actions = self.normalizer.normalize(self.config.action_key, actions)
        noise = torch.randn(target_actions.shape, generator=generator, device=self.device)
        timesteps = torch.randint(0, self.config.num_train_timesteps, (actions.shape[0],), generator=generator,
                                  device=self.device)
        noisy = self.train_scheduler.add_noise(target_actions, noise, timesteps)
        prediction = self.model(noisy, timesteps, cond)
        target = noise if self.config.prediction_type == "epsilon" else target_actions
        per_frame = ((prediction - target) ** 2).mean(dim=-1)
        weight = batch.get("weight")
        if weight is None:
            return per_frame.mean()
        weight = torch.as_tensor(weight, device=self.device).float()
        return (per_frame * weight).sum() / weight.sum().clamp_min(1e-8)

    def forward(self, batch: Mapping[str, Any]) -> torch.Tensor:  # DistributedDataParallel calls forward
        """Training loss of a batch (same as compute_loss)."""
        return self.compute_loss(batch)

    # ------------------------------------------------------------------ inference
    def _inference_scheduler(self, exploration: Exploration) -> DDIMScheduler | DDPMScheduler:
        """The sampling scheduler, built once per (kind, steps): building one costs ~7 ms, a DDIM chunk ~50 ms."""
        kind = DDPMScheduler if self.config.scheduler == "ddpm" and exploration.mode != "ddim_eta" else DDIMScheduler
        key = (kind.__name__, self.config.num_inference_steps)
        cache = self.__dict__.setdefault("_schedulers", {})
        if key not in cache:
            scheduler = kind.from_config(self.train_scheduler.config)
            scheduler.set_timesteps(self.config.num_inference_steps)
            cache[key] = scheduler
        return cache[key]

    @torch.inference_mode()
    def sample(self, cond: torch.Tensor, exploration: Exploration = NO_EXPLORATION,
               generator: torch.Generator | None = None, explore_generator: torch.Generator | None = None,
               return_intermediates: bool = False) -> tuple[torch.Tensor, list[tuple[int, torch.Tensor]]]:
        """Normalised action trajectories (B, horizon, A) denoised from Gaussian noise given the condition."""
        scheduler = self._inference_scheduler(exploration)
        shape = (cond.shape[0], self.config.horizon, self.action_dim)
        trajectory = torch.randn(shape, generator=generator, device=cond.device)
        image_mask = self.obs_encoder.image_feature_mask
        intermediates: list[tuple[int, torch.Tensor]] = []
        for timestep in scheduler.timesteps:
            t = int(timestep)
            step_cond = cond
            if exploration.perturbs_condition:
                step_cond = exploration.perturb(cond, t, self.config.num_train_timesteps, image_mask, explore_generator)
            t_batch = torch.full((cond.shape[0],), t, device=cond.device, dtype=torch.long)
            model_output = self.model(trajectory, t_batch, step_cond)
            kwargs: dict[str, Any] = {"generator": generator}
            if isinstance(scheduler, DDIMScheduler):
                kwargs["eta"] = exploration.eta if exploration.mode == "ddim_eta" else 0.0
            trajectory = scheduler.step(model_output, timestep, trajectory, **kwargs).prev_sample
            if return_intermediates:
                intermediates.append((t, trajectory.clone()))
        if exploration.mode == "action_noise" and exploration.noise_scale > 0:
            trajectory = trajectory + exploration.noise_scale * torch.randn(
                trajectory.shape, generator=explore_generator, device=trajectory.device)
        return trajectory, intermediates

    @torch.inference_mode()
    def predict(self, obs_history: Mapping[str, Any], exploration: Exploration | None = None, *,
                seed: int | None = None, full_horizon: bool = False,
                return_intermediates: bool = False) -> np.ndarray | tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
        """Action chunk(s) for an observation history: numpy in, numpy out.

        `obs_history[key]` is (n_obs_steps, ...) or batched (B, n_obs_steps, ...). Returns the executable
        chunk (B, n_action_steps, A) (or the whole horizon), unbatched if the input was. With a `seed` the
        result is reproducible; exploration noise is drawn from its own generator so disabling exploration
        gives exactly plain sampling.
        """
        exploration = exploration or NO_EXPLORATION
        first = self.config.obs_keys[0]
        sample_value = obs_history.get(first, obs_history.get(first[4:]) if first.startswith("obs/") else None)
        if sample_value is None:
            raise PolicyInputError(f"observation {first!r} missing; got keys {sorted(obs_history)}")
        unbatched = np.ndim(sample_value) == len(self.obs_specs[first].shape) + 1
        obs = {k: np.asarray(v)[None] if unbatched else v for k, v in obs_history.items()}
        was_training = self.training
        if was_training:  # toggling walks every module (~2.5 ms): only when needed
            self.eval()
        try:
            cond = self.encode(obs)
            generator = explore_generator = None
            if seed is not None:
                generator = torch.Generator(device=cond.device).manual_seed(int(seed))
                explore_generator = torch.Generator(device=cond.device).manual_seed(int(seed) + 7919)
            normalized, steps = self.sample(cond, exploration, generator, explore_generator, return_intermediates)
        finally:
            if was_training:
                self.train(True)
        actions = self.normalizer.unnormalize(self.config.action_key, normalized)
        if not full_horizon:
            start = self.config.n_obs_steps - 1
            actions = actions[:, start: start + self.config.n_action_steps]
        result = actions.cpu().numpy()
        if unbatched:
            result = result[0]
        if not return_intermediates:
            return result
        key = self.config.action_key
        return result, [(t, self.normalizer.unnormalize(key, x).cpu().numpy()[0 if unbatched else slice(None)])
                        for t, x in steps]
