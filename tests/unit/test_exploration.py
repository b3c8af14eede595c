"""Modal-level exploration: schedule values, fresh noise, bit-identical when off, condition-only effect."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sime_policy.policy.config import PolicyConfig
from sime_policy.policy.exploration import Exploration
from sime_policy.policy.normalizer import Normalizer
from sime_policy.policy.diffusion import DiffusionPolicy, ObsSpec


def make_policy(image: bool = False, num_inference_steps: int = 10) -> DiffusionPolicy:
    """A small untrained policy (random weights are enough to test sampling mechanics)."""
    torch.manual_seed(0)
    keys = ("obs/pos", "obs/cam") if image else ("obs/pos",)
    specs = {"obs/pos": ObsSpec((3,), "<f4")}
    if image:
        specs["obs/cam"] = ObsSpec((24, 24, 3), "|u1")
    config = PolicyConfig(obs_keys=keys, horizon=8, n_obs_steps=2, n_action_steps=4, down_dims=(16, 32),
                          diffusion_step_embed_dim=16, num_inference_steps=num_inference_steps, image_feature_dim=8,
                          crop_hw=(20, 20) if image else None)
    normalizer = Normalizer({"actions": {"min": np.array([-1.0, 0.0]), "max": np.array([1.0, 2.0])},
                             "obs/pos": {"min": np.zeros(3), "max": np.ones(3)}})
    return DiffusionPolicy(config, 2, specs, normalizer).eval()


def observations(batch: int = 4, image: bool = False) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    obs = {"obs/pos": rng.random((batch, 2, 3)).astype(np.float32)}
    if image:
        obs["obs/cam"] = rng.integers(0, 255, (batch, 2, 24, 24, 3), dtype=np.uint8)
    return obs


def capture_conditions(policy: DiffusionPolicy) -> tuple[list[torch.Tensor], list[torch.Tensor], object]:
    """Record the global condition and the timestep embedding the UNet receives at every call."""
    conds: list[torch.Tensor] = []
    time_embeddings: list[torch.Tensor] = []
    h1 = policy.model.register_forward_pre_hook(lambda m, args: conds.append(args[2].detach().clone()))
    h2 = policy.model.time_mlp.register_forward_hook(lambda m, a, out: time_embeddings.append(out.detach().clone()))

    class Handles:
        def remove(self) -> None:
            h1.remove()
            h2.remove()

    return conds, time_embeddings, Handles()


def test_reference_schedule_multipliers():
    sime = Exploration("sime", noise_scale=0.5, tau1=0.0, tau2=1.0)
    # reference order: t = 1 - timestep / T_train; DDIM-20 over 100 steps starts at timestep 95
    assert sime.multiplier(95, 100) == pytest.approx(0.05 * 0.5)
    assert sime.multiplier(0, 100) == pytest.approx(1.0 * 0.5)
    assert sime.multiplier(90, 100) == pytest.approx(0.1 * 0.5)
    window = Exploration("sime", noise_scale=2.0, tau1=0.2, tau2=0.6)
    assert window.multiplier(90, 100) == 0.0  # t = 0.1 <= tau1
    assert window.multiplier(60, 100) == pytest.approx(2.0 * (1 - (0.6 - 0.4) / 0.4))  # t = 0.4, halfway
    assert window.multiplier(10, 100) == pytest.approx(2.0)  # t = 0.9 >= tau2
    cads = Exploration("cads", noise_scale=0.5)
    assert cads.multiplier(95, 100) == pytest.approx(0.95 * 0.5)  # strongest at the start
    assert cads.multiplier(0, 100) == 0.0


def test_policy_applies_the_schedule_at_each_ddim_step():
    policy = make_policy(num_inference_steps=20)
    obs = observations(batch=512)
    clean = policy.encode(obs).detach()
    conds, _, handles = capture_conditions(policy)
    policy.predict(obs, Exploration("sime", noise_scale=0.5, noise_units="normalized"), seed=3)
    handles.remove()
    assert len(conds) == 20
    stds = [float((c - clean).std()) for c in conds]
    assert stds[0] == pytest.approx(0.025, rel=0.1)  # 0.05 * s at the first step
    assert stds[-1] == pytest.approx(0.5, rel=0.1)  # 1.0 * s at the last
    assert all(a < b for a, b in zip(stds, stds[1:]))


def test_raw_unit_noise_is_converted_through_the_normaliser():
    """noise_units='raw' (the default, as the reference): s in observation units = s * 2 / span in the condition."""
    torch.manual_seed(0)
    specs = {"obs/pos": ObsSpec((3,), "<f4")}
    config = PolicyConfig(obs_keys=("obs/pos",), horizon=8, n_obs_steps=2, n_action_steps=4, down_dims=(16, 32),
                          diffusion_step_embed_dim=16, num_inference_steps=20)
    spans = np.array([0.2, 2.0, 0.02])   # metres: 0.2 m, 2 m and a 2 cm range
    normalizer = Normalizer({"actions": {"min": np.array([-1.0, 0.0]), "max": np.array([1.0, 2.0])},
                             "obs/pos": {"min": np.zeros(3), "max": spans}})
    policy = DiffusionPolicy(config, 2, specs, normalizer).eval()
    obs = {"obs/pos": np.random.default_rng(1).random((4096, 2, 3)).astype(np.float32) * spans.astype(np.float32)}
    clean = policy.encode(obs).detach()
    assert Exploration("sime", noise_scale=0.01).noise_units == "raw"
    conds, _, handles = capture_conditions(policy)
    policy.predict(obs, Exploration("sime", noise_scale=0.01), seed=3)
    handles.remove()
    last = (conds[-1] - clean).reshape(-1, 2, 3)  # (batch, obs step, dim): the last step has the full scale s
    expected = 0.01 * 2.0 / spans
    np.testing.assert_allclose(last.std(dim=(0, 1)).numpy(), expected, rtol=0.05)
    # the same Exploration in normalised units ignores the spans
    conds, _, handles = capture_conditions(policy)
    policy.predict(obs, Exploration("sime", noise_scale=0.01, noise_units="normalized"), seed=3)
    handles.remove()
    np.testing.assert_allclose((conds[-1] - clean).std().item(), 0.01, rtol=0.05)
    assert Exploration("sime", noise_scale=0.01).as_metadata()["noise_units"] == "raw"
    with pytest.raises(ValueError, match="noise units"):
        Exploration("sime", noise_scale=0.01, noise_units="metres")


def test_noise_is_fresh_per_step_and_per_call():
    policy = make_policy()
    obs = observations()
    explore = Exploration("sime", noise_scale=0.3)
    conds, _, handles = capture_conditions(policy)
    policy.predict(obs, explore)
    policy.predict(obs, explore)
    handles.remove()
    first_call, second_call = conds[:10], conds[10:]
    clean = policy.encode(obs).detach()
    deltas = [c - clean for c in first_call]
    normalized = [d / d.std() for d in deltas]
    for a, b in zip(normalized, normalized[1:]):
        assert not torch.allclose(a, b)  # not the same noise rescaled
    for a, b in zip(first_call, second_call):
        assert not torch.equal(a, b)


def test_disabled_exploration_is_bit_identical_to_plain_sampling():
    policy = make_policy()
    obs = observations()
    plain = policy.predict(obs, seed=11)
    assert np.array_equal(plain, policy.predict(obs, Exploration("none"), seed=11))
    assert np.array_equal(plain, policy.predict(obs, Exploration("sime", noise_scale=0.0), seed=11))
    assert not np.array_equal(plain, policy.predict(obs, Exploration("sime", noise_scale=0.5), seed=11))
    assert not np.array_equal(plain, policy.predict(obs, seed=12))


def test_exploration_changes_the_condition_only():
    policy = make_policy()
    obs = observations()
    weights = {k: v.clone() for k, v in policy.state_dict().items()}
    conds_plain, time_plain, handles = capture_conditions(policy)
    plain = policy.predict(obs, seed=5)
    handles.remove()
    conds_explore, time_explore, handles = capture_conditions(policy)
    explored = policy.predict(obs, Exploration("sime", noise_scale=0.5), seed=5)
    handles.remove()
    assert all(torch.equal(a, b) for a, b in zip(time_plain, time_explore))  # timestep embedding untouched
    assert all(not torch.equal(a, b) for a, b in zip(conds_plain, conds_explore))
    assert not np.array_equal(plain, explored)
    assert all(torch.equal(weights[k], v) for k, v in policy.state_dict().items())


def test_separate_image_noise_scale():
    policy = make_policy(image=True)
    obs = observations(batch=256, image=True)
    clean = policy.encode(obs).detach()
    mask = policy.obs_encoder.image_feature_mask
    assert mask.any() and (~mask).any()
    conds, _, handles = capture_conditions(policy)
    policy.predict(obs, Exploration("sime", noise_scale=0.2, image_noise_scale=0.0, noise_units="normalized"), seed=1)
    handles.remove()
    last = conds[-1] - clean
    assert float(last[:, mask].abs().max()) == 0.0
    assert float(last[:, ~mask].std()) == pytest.approx(0.2, rel=0.15)


def test_action_noise_and_ddim_eta_baselines():
    policy = make_policy()
    obs = observations()
    plain = policy.predict(obs, seed=2)
    conds, _, handles = capture_conditions(policy)
    noisy = policy.predict(obs, Exploration("action_noise", noise_scale=0.1), seed=2)
    eta = policy.predict(obs, Exploration("ddim_eta", eta=1.0), seed=2)
    handles.remove()
    clean = policy.encode(obs).detach()
    assert all(torch.equal(c, clean) for c in conds)  # neither baseline touches the condition
    assert not np.array_equal(plain, noisy) and not np.array_equal(plain, eta)
    assert np.array_equal(eta, policy.predict(obs, Exploration("ddim_eta", eta=1.0), seed=2))


@pytest.mark.parametrize("kwargs", [dict(mode="bogus"), dict(mode="sime", tau1=0.5, tau2=0.5),
                                    dict(mode="sime", noise_scale=-1), dict(mode="ddim_eta", eta=0.0)])
def test_invalid_exploration_settings(kwargs):
    with pytest.raises(ValueError):
        Exploration(**kwargs)


def test_predict_shapes_intermediates_and_metadata():
    policy = make_policy()
    obs = observations(batch=3)
    chunk = policy.predict(obs, seed=0)
    assert chunk.shape == (3, 4, 2)
    single = policy.predict({k: v[0] for k, v in obs.items()}, seed=0)
    assert single.shape == (4, 2)
    full, steps = policy.predict(obs, seed=0, full_horizon=True, return_intermediates=True)
    assert full.shape == (3, 8, 2) and len(steps) == 10
    assert [t for t, _ in steps] == sorted((t for t, _ in steps), reverse=True)
    np.testing.assert_allclose(steps[-1][1], full, rtol=1e-6)
    meta = Exploration("sime", noise_scale=0.01).as_metadata()
    assert {"explore_mode", "noise_scale", "tau1", "tau2"} <= set(meta)
