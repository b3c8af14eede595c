"""Policy network building blocks: conditional 1-D UNet, ResNet18GN, RandomCrop, ObservationEncoder."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn

from sime_policy.models import (
    ConditionalUnet1D,
    ObservationEncoder,
    RandomCrop,
    ResNet18GN,
    SinusoidalTimeEmbedding,
)


def n_params(module: nn.Module) -> int:
    """Number of parameters of a module."""
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# --------------------------------------------------------------------------- UNet


@pytest.fixture(scope="module")
def small_unet() -> ConditionalUnet1D:
    torch.manual_seed(0)
    return ConditionalUnet1D(input_dim=4, global_cond_dim=6, diffusion_step_embed_dim=16, down_dims=(16, 32, 64))


def test_time_embedding_shapes_and_dtypes() -> None:
    emb = SinusoidalTimeEmbedding(16)
    out_long = emb(torch.tensor([0, 5, 99]))
    out_float = emb(torch.tensor([0.0, 5.0, 99.0]))
    assert out_long.shape == (3, 16)
    torch.testing.assert_close(out_long, out_float)
    assert not torch.allclose(out_long[0], out_long[1])
    assert SinusoidalTimeEmbedding(7)(torch.tensor([1, 2])).shape == (2, 7)
    with pytest.raises(ValueError):
        emb(torch.zeros(2, 1))


@pytest.mark.parametrize("horizon", [16, 10, 8, 7, 1])
def test_unet_output_shape_any_horizon(small_unet: ConditionalUnet1D, horizon: int) -> None:
    out = small_unet(torch.randn(3, horizon, 4), torch.tensor([1, 50, 99]), torch.randn(3, 6))
    assert out.shape == (3, horizon, 4)
    assert torch.isfinite(out).all()


def test_unet_accepts_int_and_scalar_timesteps(small_unet: ConditionalUnet1D) -> None:
    sample, cond = torch.randn(2, 16, 4), torch.randn(2, 6)
    with torch.no_grad():
        a = small_unet(sample, 7, cond)
        b = small_unet(sample, torch.tensor(7), cond)
        c = small_unet(sample, torch.tensor([7, 7]), cond)
        d = small_unet(sample, torch.tensor([7.0, 7.0]), cond)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)
    torch.testing.assert_close(a, d)


def test_unet_rejects_bad_shapes(small_unet: ConditionalUnet1D) -> None:
    with pytest.raises(ValueError, match="sample must have shape"):
        small_unet(torch.randn(2, 16, 5), 0, torch.randn(2, 6))
    with pytest.raises(ValueError, match="sample must have shape"):
        small_unet(torch.randn(16, 4), 0, torch.randn(2, 6))
    with pytest.raises(ValueError, match="global_cond must have shape"):
        small_unet(torch.randn(2, 16, 4), 0, torch.randn(2, 7))
    with pytest.raises(ValueError, match="timestep"):
        small_unet(torch.randn(2, 16, 4), torch.tensor([1, 2, 3]), torch.randn(2, 6))
    with pytest.raises(ValueError, match="n_groups"):
        ConditionalUnet1D(4, 6, down_dims=(12, 24))
    with pytest.raises(ValueError, match="kernel_size"):
        ConditionalUnet1D(4, 6, down_dims=(16, 32), kernel_size=4)


def test_unet_conditioning_matters(small_unet: ConditionalUnet1D) -> None:
    sample, cond, t = torch.randn(2, 16, 4), torch.randn(2, 6), torch.tensor([10, 10])
    with torch.no_grad():
        base = small_unet(sample, t, cond)
        other_cond = small_unet(sample, t, cond + 1.0)
        other_t = small_unet(sample, torch.tensor([80, 80]), cond)
    assert (base - other_cond).abs().max() > 1e-4
    assert (base - other_t).abs().max() > 1e-4
    # Samples are independent across the batch: changing one row's condition leaves the other alone.
    cond2 = cond.clone()
    cond2[1] += 1.0
    with torch.no_grad():
        mixed = small_unet(sample, t, cond2)
    torch.testing.assert_close(mixed[0], base[0])


def test_unet_timestep_enters_only_through_time_mlp(small_unet: ConditionalUnet1D) -> None:
    """A forward hook on time_mlp sees the timestep; replacing its output removes the timestep's effect."""
    seen = []
    fixed = torch.zeros(2, 16)

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        seen.append(inputs[0].clone())
        return fixed

    handle = small_unet.time_mlp.register_forward_hook(hook)
    try:
        sample, cond = torch.randn(2, 16, 4), torch.randn(2, 6)
        with torch.no_grad():
            a = small_unet(sample, torch.tensor([3, 3]), cond)
            b = small_unet(sample, torch.tensor([90, 90]), cond)
    finally:
        handle.remove()
    torch.testing.assert_close(a, b)
    assert [s.tolist() for s in seen] == [[3, 3], [90, 90]]


def test_unet_gradients_reach_every_parameter(small_unet: ConditionalUnet1D) -> None:
    small_unet.zero_grad()
    out = small_unet(torch.randn(4, 10, 4), torch.randint(0, 100, (4,)), torch.randn(4, 6))
    out.pow(2).mean().backward()
    missing = [name for name, p in small_unet.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []
    small_unet.zero_grad()


def test_unet_parameter_counts() -> None:
    small = ConditionalUnet1D(input_dim=10, global_cond_dim=2 * 19, diffusion_step_embed_dim=128, down_dims=(64, 128, 256))
    # DESIGN: "a 4M-param 1-D UNet (64,128,256)"; this layout has 4,555,978.
    assert 3.5e6 < n_params(small) < 5.5e6
    assert not any(isinstance(m, nn.BatchNorm1d) for m in small.modules())
    assert isinstance(small.time_mlp[0], SinusoidalTimeEmbedding)


# --------------------------------------------------------------------------- vision


def test_resnet18gn_shape_params_and_groupnorm() -> None:
    net = ResNet18GN()
    assert 11.0e6 < n_params(net) < 11.4e6  # ResNet-18 without its classifier: 11.18M
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
    norms = [m for m in net.modules() if isinstance(m, nn.GroupNorm)]
    assert norms and all(m.num_channels // m.num_groups == 16 for m in norms)
    assert isinstance(net.proj, nn.Identity)
    with torch.no_grad():
        assert net(torch.rand(2, 3, 32, 32)).shape == (2, 512)
    proj = ResNet18GN(in_channels=1, feature_dim=64)
    with torch.no_grad():
        assert proj(torch.rand(2, 1, 28, 36)).shape == (2, 64)
    with pytest.raises(ValueError):
        proj(torch.rand(2, 3, 28, 28))


def test_random_crop_train_eval_and_determinism() -> None:
    images = torch.arange(4 * 2 * 10 * 12, dtype=torch.float32).reshape(4, 2, 10, 12)
    crop = RandomCrop((6, 8))

    crop.eval()
    centre = crop(images)
    torch.testing.assert_close(centre, images[:, :, 2:8, 2:10])

    crop.train()
    torch.manual_seed(123)
    a = crop(images)
    torch.manual_seed(123)
    b = crop(images)
    assert a.shape == (4, 2, 6, 8)
    torch.testing.assert_close(a, b)
    # Every crop is a contiguous window of its own image, same window for every channel.
    offsets = set()
    for i in range(4):
        top, left = divmod(int(a[i, 0, 0, 0].item()) - i * 240, 12)
        torch.testing.assert_close(a[i], images[i, :, top : top + 6, left : left + 8])
        offsets.add((top, left))
    # Crops are independent per image: over several batches, offsets differ.
    for _ in range(5):
        c = crop(images)
        for i in range(4):
            offsets.add(divmod(int(c[i, 0, 0, 0].item()) - i * 240, 12))
    assert len(offsets) > 3

    uint8 = torch.randint(0, 256, (2, 3, 10, 12), dtype=torch.uint8)
    assert crop(uint8).dtype == torch.uint8
    torch.testing.assert_close(RandomCrop((10, 12))(images), images)
    with pytest.raises(ValueError, match="larger"):
        RandomCrop((11, 12))(images)


# --------------------------------------------------------------------------- observation encoder


def test_obs_encoder_lowdim_only_has_no_params_and_concats_in_order() -> None:
    enc = ObservationEncoder({"b_vel": 2, "a_pos": 3}, {}, n_obs_steps=2)
    assert n_params(enc) == 0
    assert enc.output_dim == 10
    assert enc.image_feature_mask.dtype == torch.bool and not enc.image_feature_mask.any()
    a = torch.arange(12, dtype=torch.float32).reshape(2, 2, 3)
    b = -torch.arange(8, dtype=torch.float32).reshape(2, 2, 2) - 1
    out = enc({"b_vel": b, "a_pos": a})
    assert out.shape == (2, 10)
    expected = torch.cat([a, b], dim=-1).reshape(2, 10)  # per step: a_pos then b_vel; steps in time order
    torch.testing.assert_close(out, expected)
    assert out[0].tolist() == [0, 1, 2, -1, -2, 3, 4, 5, -3, -4]


def test_obs_encoder_with_image_dims_order_and_mask() -> None:
    enc = ObservationEncoder(
        {"robot0_eef_pos": 3, "object": 4},
        {"agentview_image": (20, 24, 3)},
        n_obs_steps=2,
        image_feature_dim=8,
    )
    assert enc.output_dim == 2 * (8 + 4 + 3)
    mask = enc.image_feature_mask
    assert mask.shape == (30,)
    assert mask.tolist() == ([True] * 8 + [False] * 7) * 2
    assert enc.crops[0].crop_hw == (18, 22)  # default ~90%
    assert 11.0e6 < n_params(enc) < 11.4e6

    obj = torch.randn(2, 2, 4)
    eef = torch.randn(2, 2, 3)
    img = torch.randint(0, 256, (2, 2, 20, 24, 3), dtype=torch.uint8)
    enc.eval()
    with torch.no_grad():
        out = enc({"robot0_eef_pos": eef, "object": obj, "agentview_image": img})
        out_float = enc({"robot0_eef_pos": eef, "object": obj, "agentview_image": img.float()})
        direct = enc.image_encoders[0](enc.crops[0](img[:, 1].permute(0, 3, 1, 2).float() / 255.0))
    assert out.shape == (2, 30)
    torch.testing.assert_close(out, out_float)
    step1 = out[:, 15:]
    torch.testing.assert_close(step1[:, :8], direct)
    torch.testing.assert_close(step1[:, 8:12], obj[:, 1])
    torch.testing.assert_close(step1[:, 12:], eef[:, 1])
    torch.testing.assert_close(out[:, 8:12], obj[:, 0])


def test_obs_encoder_default_crop_and_shared_encoder() -> None:
    enc = ObservationEncoder({}, {"a": (84, 84, 3), "b": (84, 84, 3)}, n_obs_steps=1, share_image_encoder=True)
    assert [c.crop_hw for c in enc.crops] == [(76, 76), (76, 76)]
    assert len(enc.image_encoders) == 1
    assert enc.output_dim == 1024 and bool(enc.image_feature_mask.all())
    with pytest.raises(ValueError, match="channel"):
        ObservationEncoder({}, {"a": (8, 8, 3), "b": (8, 8, 1)}, n_obs_steps=1, share_image_encoder=True)


def test_obs_encoder_key_errors_name_the_keys() -> None:
    enc = ObservationEncoder({"pos": 3, "grip": 2}, {}, n_obs_steps=1)
    good = {"pos": torch.zeros(1, 1, 3), "grip": torch.zeros(1, 1, 2)}
    with pytest.raises(KeyError, match="missing observation keys \\['grip'\\]"):
        enc({"pos": good["pos"]})
    with pytest.raises(KeyError, match="unexpected observation keys \\['extra'\\]"):
        enc({**good, "extra": torch.zeros(1, 1, 1)})
    with pytest.raises(KeyError) as info:
        enc({"pos": good["pos"], "other": torch.zeros(1, 1, 1)})
    assert "grip" in str(info.value) and "other" in str(info.value)
    with pytest.raises(ValueError, match="shape"):
        enc({"pos": torch.zeros(1, 2, 3), "grip": torch.zeros(1, 2, 2)})
    with pytest.raises(ValueError, match="both"):
        ObservationEncoder({"x": 1}, {"x": (8, 8, 3)}, n_obs_steps=1)
