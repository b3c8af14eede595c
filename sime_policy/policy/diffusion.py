"""Diffusion policy: observation encoder + conditional 1-D UNet, DDPM training loss, DDIM/DDPM sampling with exploration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from torch import nn

from ..models import ConditionalUnet1D, ObservationEncoder
from .config import PolicyConfig
from .exploration import NO_EXPLORATION, Exploration, Generators, gaussian
from .normalizer import Normalizer


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


@dataclass(frozen=True)
class PolicyShapes:
    """What a policy is built for besides its config: the action size and each observation's spec."""

    action_dim: int
    obs_specs: Mapping[str, ObsSpec]

    @classmethod
    def from_key_specs(cls, specs: Mapping[str, Any], config: PolicyConfig, source: str = "the data") -> "PolicyShapes":
        """Shapes from per-key array specs (anything with .shape and .dtype); PolicyInputError if keys are missing."""
        needed = [*config.obs_keys, config.action_key]
        missing = [k for k in needed if k not in specs]
        if missing:
            raise PolicyInputError(
                f"{source} lacks key(s) {missing} that the config needs; it has {sorted(specs)}. "
                "Pick a config whose obs_keys match the data (or record the missing observations)."
            )
        if len(specs[config.action_key].shape) != 1:
            raise PolicyInputError(f"actions must be vectors per step, got shape {specs[config.action_key].shape}")
        obs_specs = {k: ObsSpec(tuple(specs[k].shape), specs[k].dtype) for k in config.obs_keys}
        return cls(int(specs[config.action_key].shape[0]), obs_specs)

    def lowdim_keys(self) -> list[str]:
        """Observation keys that are not camera images, in config order."""
        return [k for k, s in self.obs_specs.items() if not s.is_image]


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

    # ------------------------------------------------------------------ identity
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

    def condition_noise_units(self, exploration: Exploration) -> torch.Tensor | None:
        """Per-dimension factor turning exploration noise into condition units (None: the condition's own units).

        With ``noise_units='raw'`` the noise is meant in raw observation units, as the SIME reference adds it
        to the unnormalised low-dim vector: a low-dim dimension normalised by ``x * scale + offset`` gets
        ``noise * scale``. Image-feature dimensions have no raw units and are left as they are.
        """
        if exploration.noise_units != "raw" or not self.lowdim_keys:
            return None
        cached = self.__dict__.setdefault("_raw_unit_factors", {})
        device = self.device
        if device not in cached:
            per_step = [torch.ones(self.config.image_feature_dim * len(self.image_keys), device=device)]
            for key in self.obs_encoder.lowdim_keys:
                scale, _ = self.normalizer._params(key)
                per_step.append(scale.to(device).reshape(-1).float())
            cached[device] = torch.cat(per_step).repeat(self.config.n_obs_steps)
        return cached[device]

    @torch.inference_mode()
    def sample(self, cond: torch.Tensor, exploration: Exploration = NO_EXPLORATION,
               generator: Generators = None, explore_generator: Generators = None,
               return_intermediates: bool = False) -> tuple[torch.Tensor, list[tuple[int, torch.Tensor]]]:
        """Normalised action trajectories (B, horizon, A) denoised from Gaussian noise given the condition.

        Each generator may be one torch.Generator for the whole batch or a list with one per row (then
        every row's result depends only on its own generator and condition).
        """
        scheduler = self._inference_scheduler(exploration)
        shape = (cond.shape[0], self.config.horizon, self.action_dim)
        trajectory = gaussian(shape, generator, cond.device, torch.float32)
        image_mask = self.obs_encoder.image_feature_mask
        units = self.condition_noise_units(exploration) if exploration.perturbs_condition else None
        intermediates: list[tuple[int, torch.Tensor]] = []
        for timestep in scheduler.timesteps:
            t = int(timestep)
            step_cond = cond
            if exploration.perturbs_condition:
                step_cond = exploration.perturb(cond, t, self.config.num_train_timesteps, image_mask, explore_generator,
                                                units=units)
            t_batch = torch.full((cond.shape[0],), t, device=cond.device, dtype=torch.long)
            model_output = self.model(trajectory, t_batch, step_cond)
            kwargs: dict[str, Any] = {"generator": generator}
            if isinstance(scheduler, DDIMScheduler):
                kwargs["eta"] = exploration.eta if exploration.mode == "ddim_eta" else 0.0
            trajectory = scheduler.step(model_output, timestep, trajectory, **kwargs).prev_sample
            if return_intermediates:
                intermediates.append((t, trajectory.clone()))
        if exploration.mode == "action_noise" and exploration.noise_scale > 0:
            trajectory = trajectory + exploration.noise_scale * gaussian(
                trajectory.shape, explore_generator, trajectory.device, trajectory.dtype)
        return trajectory, intermediates

    @torch.inference_mode()
    def predict(self, obs_history: Mapping[str, Any], exploration: Exploration | None = None, *,
                seed: int | None = None, seeds: Sequence[int] | None = None, lanes: int | None = None,
                full_horizon: bool = False,
                return_intermediates: bool = False) -> np.ndarray | tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
        """Action chunk(s) for an observation history: numpy in, numpy out.

        `obs_history[key]` is (n_obs_steps, ...) or batched (B, n_obs_steps, ...). Returns the executable
        chunk (B, n_action_steps, A) (or the whole horizon), unbatched if the input was. With a `seed` the
        result is reproducible; exploration noise is drawn from its own generator so disabling exploration
        gives exactly plain sampling. `seeds` gives every row its own seed instead. `lanes` evaluates the
        rows in groups of exactly that many (padding the last group): the float results of a row then do
        not depend on how many other rows are predicted with it, so batched rollouts reproduce one-by-one
        ones bit for bit (CPU kernels pick other code paths for other batch sizes).
        """
        exploration = exploration or NO_EXPLORATION
        first = self.config.obs_keys[0]
        sample_value = obs_history.get(first, obs_history.get(first[4:]) if first.startswith("obs/") else None)
        if sample_value is None:
            raise PolicyInputError(f"observation {first!r} missing; got keys {sorted(obs_history)}")
        unbatched = np.ndim(sample_value) == len(self.obs_specs[first].shape) + 1
        obs = {k: np.asarray(v)[None] if unbatched else v for k, v in obs_history.items()}
        batch = int(np.shape(obs.get(first, obs.get(first[4:])))[0])
        if seed is not None and seeds is not None:
            raise ValueError("give seed (one for the batch) or seeds (one per row), not both")
        if seeds is not None and len(seeds) != batch:
            raise ValueError(f"seeds has {len(seeds)} entries for a batch of {batch} observations")
        if lanes is not None and (isinstance(lanes, bool) or int(lanes) < 1):
            raise ValueError(f"lanes must be a positive integer, got {lanes!r}")
        was_training = self.training
        if was_training:  # toggling walks every module (~2.5 ms): only when needed
            self.eval()
        try:
            groups = [(obs, None if seeds is None else list(seeds))] if lanes is None else \
                [_lane_group(obs, seeds, lo, int(lanes), batch) for lo in range(0, batch, int(lanes))]
            parts = [self._predict_rows(group_obs, group_seeds, exploration=exploration, seed=seed,
                                        return_intermediates=return_intermediates) for group_obs, group_seeds in groups]
            normalized = torch.cat([chunks for chunks, _ in parts])[:batch]
            steps = [(t, torch.cat([part[1][k][1] for part in parts])[:batch]) for k, (t, _) in enumerate(parts[0][1])]
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

    def _predict_rows(self, obs: Mapping[str, Any], seeds: Sequence[int] | None = None, *,
                      exploration: Exploration = NO_EXPLORATION, seed: int | None = None,
                      return_intermediates: bool = False) -> tuple[torch.Tensor, list[tuple[int, torch.Tensor]]]:
        """Normalised chunks of one batch: one generator pair for the batch (`seed`) or one per row (`seeds`)."""
        cond = self.encode(obs)
        generator: Generators = None
        explore_generator: Generators = None
        if seeds is not None:
            generator = [torch.Generator(device=cond.device).manual_seed(int(s)) for s in seeds]
            explore_generator = [torch.Generator(device=cond.device).manual_seed(int(s) + 7919) for s in seeds]
        elif seed is not None:
            generator = torch.Generator(device=cond.device).manual_seed(int(seed))
            explore_generator = torch.Generator(device=cond.device).manual_seed(int(seed) + 7919)
        return self.sample(cond, exploration, generator, explore_generator, return_intermediates)


def make_policy(config: PolicyConfig, normalizer: Normalizer, shapes: PolicyShapes) -> DiffusionPolicy:
    """A freshly initialised DiffusionPolicy for a config, a fitted normaliser and the data's shapes."""
    return DiffusionPolicy(config, shapes.action_dim, shapes.obs_specs, normalizer)


def _lane_group(obs: Mapping[str, Any], seeds: Sequence[int] | None, lo: int, lanes: int,
                batch: int) -> tuple[dict[str, np.ndarray], list[int] | None]:
    """Rows lo..lo+lanes of a batch, padded to exactly `lanes` rows by repeating the group's first row."""
    hi = min(lo + lanes, batch)
    pad = lanes - (hi - lo)
    index = np.concatenate([np.arange(lo, hi), np.full(pad, lo, dtype=np.int64)])
    group = {k: np.asarray(v)[index] for k, v in obs.items()}
    return group, (None if seeds is None else [int(seeds[i]) for i in index])
