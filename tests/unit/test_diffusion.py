import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

import robot_rl
from robot_rl.core.errors import ConfigError
from robot_rl.core.types import ActionSpec, ObsSpec
from robot_rl.deploy.bundle import save_bundle
from robot_rl.policies.diffusion import (
    DiffusionConfig,
    DiffusionPolicy,
    ddim_coefficients_of,
    ddim_step,
    make_sampler,
)
from robot_rl.policies.encoders import random_shift

pytestmark = pytest.mark.unit

SMALL = {"mlp_hidden": 16, "mlp_blocks": 1, "time_embed_dim": 8, "down_dims": [8, 16], "n_groups": 4}


def make_policy(obs_spec: ObsSpec | None = None, da: int = 2, **overrides) -> DiffusionPolicy:
    torch.manual_seed(0)
    cfg = DiffusionConfig(**{"chunk_size": 4, "execution_horizon": 2, **SMALL, **overrides})
    policy = DiffusionPolicy(cfg, obs_spec or ObsSpec(3), ActionSpec.normalized(da))
    policy.fit_normalizer(np.random.default_rng(0).normal(size=(50, policy.obs_spec.state_dim)))
    return policy


def count_denoiser_calls(policy: DiffusionPolicy) -> list[int]:
    calls = [0]
    policy.ema.denoiser.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def obs(t: float, d: int = 3) -> dict[str, np.ndarray]:
    return {"state": np.full(d, t, dtype=np.float32)}


def test_noise_and_ddim_step_match_hand_computed_values():
    # 4-step linear schedule: β = (0.1, 0.2, 0.3, 0.4), α = 1 - β = (0.9, 0.8, 0.7, 0.6),
    # ᾱ_t = Π α = (0.9, 0.72, 0.504, 0.3024). DDIM-2 with trailing spacing visits t = 3, 1.
    policy = make_policy(
        num_train_timesteps=4,
        beta_schedule="linear",
        beta_start=0.1,
        beta_end=0.4,
        num_inference_steps=2,
        clip_sample=False,
    )
    assert policy.timesteps == [3, 1]
    x0, eps = torch.ones(1, 4, 2), torch.full((1, 4, 2), 0.5)
    # q(x_2 | x_0): √0.504 · 1 + √0.496 · 0.5 = 0.709930 + 0.352136 = 1.062066
    x2 = policy.noise_scheduler.add_noise(x0, eps, torch.tensor([2]))
    torch.testing.assert_close(x2, torch.full_like(x0, 1.062066), atol=1e-5, rtol=0)
    # DDIM (η=0) from t=3 to t=1 with x_3 = 1, ε̂ = 0.5:
    # x̂_0 = (1 - √(1-0.3024)·0.5) / √0.3024 = (1 - 0.417612) / 0.549909 = 1.059062
    # x_1 = √0.72 · 1.059062 + √0.28 · 0.5 = 0.898643 + 0.264575 = 1.163219
    x1 = policy.sampler.step(eps, 3, torch.ones(1, 4, 2), return_dict=False)[0]
    torch.testing.assert_close(x1, torch.full_like(x0, 1.163219), atol=1e-5, rtol=0)
    # the last step (t=1 -> ᾱ_prev = 1) returns x̂_0 = (1 - √0.28 · 0.5) / √0.72 = 0.866707
    x_end = policy.sampler.step(eps, 1, torch.ones(1, 4, 2), return_dict=False)[0]
    torch.testing.assert_close(x_end, torch.full_like(x0, 0.866707), atol=1e-5, rtol=0)
    # the fast path's coefficients and step give the same hand-computed values
    coefs = ddim_coefficients_of(policy.sampler)
    assert [float(c) for c in coefs[3]] == pytest.approx([0.3024**0.5, 0.6976**0.5, 0.72**0.5, 0.28**0.5])
    assert [float(c) for c in coefs[1]] == pytest.approx([0.72**0.5, 0.28**0.5, 1.0, 0.0])  # ᾱ_prev = 1
    ones = torch.ones(1, 4, 2)
    torch.testing.assert_close(ddim_step(ones, eps, coefs[3], None), torch.full_like(x0, 1.163219))
    torch.testing.assert_close(ddim_step(ones, eps, coefs[1], None), torch.full_like(x0, 0.866707))
    # with clipping x̂_0 = 1.059062 is clipped to 1: x_1 = √0.72 · 1 + √0.28 · 0.5 = 1.113101
    torch.testing.assert_close(ddim_step(ones, eps, coefs[3], 1.0), torch.full_like(x0, 1.113101))


class ZeroDenoiser(nn.Module):
    def forward(self, x, t, cond):
        return torch.zeros_like(x)


def test_eps_mse_loss_is_masked_by_hand():
    policy = make_policy()
    policy.model.denoiser = ZeroDenoiser()  # prediction 0: the loss is the masked mean of ε²
    batch = {
        "obs_state": torch.zeros(2, 2, 3),
        "action": torch.zeros(2, 4, 2),
        "action_mask": torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]]),
    }
    torch.manual_seed(7)
    loss = policy.bc_loss(batch)
    torch.manual_seed(7)
    eps = torch.randn(2, 4, 2)  # bc_loss draws ε first (randn_like of the action)
    per_step = (eps**2).mean(-1)  # [B, Ta]
    expected = (per_step[0, :2].sum() + per_step[1].sum()) / 6  # 6 valid steps
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("sampler", ["ddim", "dpm", "ddpm"])
def test_sample_shape_and_candidates_differ(sampler):
    policy = make_policy(sampler=sampler)
    calls = count_denoiser_calls(policy)
    out = policy.sample({"obs_state": torch.randn(3, 2, 3)}, n=5)
    assert out.shape == (3, 5, 4, 2)
    assert calls[0] == policy.cfg.num_inference_steps  # the n candidates are one batched chain
    assert torch.isfinite(out).all() and out.abs().max() <= 1.0
    assert ((out[:, 0] - out[:, 1]).abs().amax(dim=(1, 2)) > 0).all()  # per observation


def test_act_replans_every_execution_horizon_and_reset_clears_queue():
    policy = make_policy()
    calls = []
    original = policy.predict_chunk
    policy.predict_chunk = lambda s, *a, **k: calls.append(s.clone()) or original(s, *a, **k)  # type: ignore[method-assign]
    for t in range(5):
        action = policy.act(obs(t))
    assert action.shape == (2,) and action.dtype == np.float32
    assert len(calls) == 3  # steps 0, 2, 4 re-plan
    assert calls[0][0].tolist() == [[0, 0, 0], [0, 0, 0]]  # history padded with the first observation
    assert calls[1][0].tolist() == [[1, 1, 1], [2, 2, 2]]
    policy.reset()
    policy.act(obs(9))
    assert len(calls) == 4 and calls[-1][0].tolist() == [[9, 9, 9], [9, 9, 9]]


def test_ema_update_by_hand_and_acting_uses_ema():
    policy = make_policy(ema_decay=0.5, ema_warmup=False)
    name = "denoiser.inp.weight"
    param = dict(policy.model.named_parameters())[name]
    ema = dict(policy.ema.named_buffers())[name]
    p0 = param.detach().clone()
    assert torch.equal(ema, p0)  # the EMA starts as a copy
    with torch.no_grad():
        param.add_(2.0)
    policy.after_optimizer_step()  # ψ̄ = 0.5 p0 + 0.5 (p0 + 2) = p0 + 1
    torch.testing.assert_close(ema, p0 + 1.0)
    with torch.no_grad():
        param.add_(2.0)
    policy.after_optimizer_step()  # ψ̄ = 0.5 (p0 + 1) + 0.5 (p0 + 4) = p0 + 2.5
    torch.testing.assert_close(ema, p0 + 2.5)
    assert int(policy.ema_step) == 2
    assert all(not k.startswith("ema.") for k, _ in policy.named_parameters())
    assert "ema." + name in policy.state_dict()
    # acting reads the EMA copy only: changing the online weights leaves actions unchanged
    policy.seed(3)
    a = policy.sample({"obs_state": torch.ones(1, 2, 3)}, 2)
    with torch.no_grad():
        param.mul_(-3.0)
    policy.seed(3)
    assert torch.equal(a, policy.sample({"obs_state": torch.ones(1, 2, 3)}, 2))
    policy.seed(3)
    assert not torch.equal(a, policy.sample({"obs_state": torch.ones(1, 2, 3)}, 2, use_ema=False))


def test_ema_warmup_schedule():
    policy = make_policy(ema_decay=0.995)
    assert policy.ema_decay_now() == pytest.approx(0.1)  # (1 + 0) / (10 + 0)
    policy.ema_step.fill_(1)
    assert policy.ema_decay_now() == pytest.approx(2 / 11)
    policy.ema_step.fill_(10_000)
    assert policy.ema_decay_now() == pytest.approx(0.995)


def test_bundle_round_trip_acts_identically_with_the_same_seed(tmp_path):
    policy = make_policy(rti_warm_start=True)
    with torch.no_grad():  # make the EMA differ from the online weights, as after training
        for p in policy.model.parameters():
            p.add_(0.1)
    policy.after_optimizer_step()
    loaded = robot_rl.load_policy(save_bundle(tmp_path / "b", policy))
    assert isinstance(loaded, DiffusionPolicy) and not loaded.training
    for key, value in policy.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    policy.eval()
    for p in (policy, loaded):
        p.reset()
        p.seed(123)
    for t in range(7):
        np.testing.assert_array_equal(policy.act(obs(t * 0.1)), loaded.act(obs(t * 0.1)))


def test_rti_warm_start_uses_fewer_denoiser_calls():
    counts = {}
    for rti in (False, True):
        policy = make_policy(rti_warm_start=rti, rti_steps=3, num_inference_steps=10)
        calls = count_denoiser_calls(policy)
        for t in range(6):  # re-plans at steps 0, 2, 4
            policy.act(obs(t))
        counts[rti] = calls[0]
        policy.reset()  # after a reset the first chunk is sampled from noise with all steps
        policy.act(obs(0))
        assert calls[0] - counts[rti] == 10
    assert counts == {False: 30, True: 10 + 3 + 3}


def test_rti_warm_chunk_runs_the_last_steps_of_the_coarse_schedule():
    # T = 100, trailing spacing: a 5-step grid is 99, 79, 59, 39, 19; k = 3 keeps the last three
    policy = make_policy(rti_warm_start=True, rti_steps=3, rti_schedule_steps=5)
    sampler, steps = policy._rti_chain()
    assert steps == [59, 39, 19] and sampler.num_inference_steps == 5
    seen = []
    real = policy.ema.denoiser.forward

    def spy(x, t, *args, **kwargs):
        seen.append(int(t.reshape(-1)[0]))
        return real(x, t, *args, **kwargs)

    policy.ema.denoiser.forward = spy
    policy.predict_chunk(torch.randn(1, 2, 3), warm_start=torch.zeros(1, 4, 2))
    assert seen == [59, 39, 19]
    policy.cfg = dataclasses.replace(policy.cfg, rti_schedule_steps=10)  # the fine grid's tail
    assert policy._rti_chain()[1] == [29, 19, 9]
    policy.cfg = dataclasses.replace(policy.cfg, rti_schedule_steps=8)  # the default
    assert policy._rti_chain()[1] == [37, 24, 11]
    assert make_policy(rti_warm_start=True)._rti_chain()[1] == [37, 24, 11]


@pytest.mark.parametrize("denoiser", ["unet1d", "mlp_resnet"])
def test_both_denoisers_train_and_sample(denoiser):
    policy = make_policy(denoiser=denoiser, chunk_size=8, execution_horizon=4)
    batch = {
        "obs_state": torch.randn(4, 2, 3),
        "action": torch.rand(4, 8, 2) * 2 - 1,
        "action_mask": torch.ones(4, 8),
    }
    loss = policy.bc_loss(batch)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in policy.model.parameters())
    assert policy.sample(batch, 3).shape == (4, 3, 8, 2)


def test_pixel_path_forward_backward_and_act():
    spec = ObsSpec(3, {"front": (16, 16, 3)})
    policy = make_policy(spec, cnn_channels=[8, 8], image_feature_dim=8)
    pixels = torch.randint(0, 256, (4, 2, 16, 16, 3), dtype=torch.uint8)
    batch = {
        "obs_state": torch.randn(4, 2, 3),
        "obs_pixels/front": pixels,
        "action": torch.zeros(4, 4, 2),
        "action_mask": torch.ones(4, 4),
    }
    policy.bc_loss(batch).backward()
    cnn = policy.model.encoder.images["front"].conv[0].weight
    assert cnn.grad is not None and cnn.grad.abs().sum() > 0
    assert policy.sample(batch, 2).shape == (4, 2, 4, 2)
    frame = {"state": np.zeros(3, np.float32), "pixels/front": np.zeros((16, 16, 3), np.uint8)}
    assert policy.act(frame).shape == (2,)
    with pytest.raises(KeyError, match="obs_pixels/front"):
        policy.sample({"obs_state": batch["obs_state"]}, 1)
    enc = policy.model.encoder.eval()  # no augmentation outside training mode
    state = torch.zeros(4, 2, 3)
    assert torch.equal(enc(state, {"front": pixels}), enc(state, {"front": pixels}))


def test_random_shift_is_a_crop_of_the_padded_image():
    images = torch.rand(6, 3, 16, 16)
    assert torch.equal(random_shift(images, 0), images)
    shifted = random_shift(images, 4)
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4), mode="replicate")
    for i in range(6):
        crops = [padded[i, :, dy : dy + 16, dx : dx + 16] for dy in range(9) for dx in range(9)]
        assert any(torch.equal(shifted[i], c) for c in crops)


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"sampler": "euler"}, "policy.sampler='euler' is not valid"),
        ({"rti_warm_start": True, "rti_steps": 10}, "rti_steps=10 must be in"),
        (
            {"rti_warm_start": True, "rti_steps": 3, "rti_schedule_steps": 3},
            "rti_schedule_steps=3 must be in",
        ),
        ({"denoiser": "unet1d", "chunk_size": 5, "execution_horizon": 2}, "divisible by 2"),
        ({"num_inference_steps": 200}, "num_inference_steps=200"),
        ({"ema_decay": 1.0}, "ema_decay"),
    ],
)
def test_config_validation(overrides, match):
    with pytest.raises(ConfigError, match=match):
        DiffusionConfig(**overrides)


def test_yaml_composes_into_the_schema(tmp_path):
    from tests.conftest import make_train_config

    cfg = make_train_config(tmp_path, policy="diffusion", **{"policy.rti_warm_start": "true"})
    assert isinstance(cfg.policy, DiffusionConfig) and cfg.policy.rti_warm_start


# --- fast sampling path (policy.fast_sampling) ---


@pytest.mark.parametrize("clip_sample", [True, False])
@pytest.mark.parametrize(
    "spacing, steps, schedule",
    [
        ("trailing", 10, "squaredcos_cap_v2"),
        ("trailing", 7, "squaredcos_cap_v2"),  # uneven spacing: diffusers still steps to t - T // S
        ("leading", 10, "linear"),
        ("linspace", 4, "scaled_linear"),
    ],
)
def test_fast_ddim_step_matches_diffusers(clip_sample, spacing, steps, schedule):
    cfg = DiffusionConfig(
        timestep_spacing=spacing, num_inference_steps=steps, beta_schedule=schedule, clip_sample=clip_sample
    )
    sched = make_sampler(cfg)
    coefs = ddim_coefficients_of(sched)
    gen = torch.Generator().manual_seed(0)
    for t in sched.timesteps.tolist():
        x = 2 * torch.randn(16, 8, 3, generator=gen)  # wide enough that clipping x̂_0 matters
        eps = 2 * torch.randn(16, 8, 3, generator=gen)
        expected = sched.step(eps, t, x, eta=0.0, return_dict=False)[0]
        got = ddim_step(x, eps, coefs[t], 1.0 if clip_sample else None)
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=0, msg=f"t={t}")


@pytest.mark.parametrize("denoiser", ["mlp_resnet", "unet1d"])
def test_denoiser_step_conditioning_matches_plain_forward(denoiser):
    policy = make_policy(denoiser=denoiser, chunk_size=8, execution_horizon=4, mlp_hidden=32, mlp_blocks=2)
    net = policy.model.denoiser.eval()
    with torch.no_grad():  # non-trivial weights (fresh U-Net / MLP outputs can be near zero)
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    gen = torch.Generator().manual_seed(1)
    cond = torch.randn(3, policy.model.encoder.out_dim, generator=gen)
    t = torch.tensor([99, 42, 0])
    step_conds = net.condition(t, cond)
    assert len(step_conds) == 3
    for i in range(3):
        x = torch.randn(3, 8, 2, generator=gen)
        plain = net(x, t[i].repeat(3), cond)
        fast = net(x, t[i].repeat(3), cond, step_cond=step_conds[i])
        assert plain.abs().max() > 1e-2
        torch.testing.assert_close(fast, plain, atol=1e-5, rtol=1e-5)
    # a step conditioning is tied to its timestep: another step's entry gives another output
    assert not torch.allclose(net(x, t[0].repeat(3), cond, step_cond=step_conds[1]), plain, atol=1e-4)
    if denoiser == "mlp_resnet":  # training mode with dropout: the same random masks on both paths
        for block in net.blocks:
            block.net[3].p = 0.5
        net.train()
        torch.manual_seed(3)
        plain = net(x, t[2].repeat(3), cond)
        torch.manual_seed(3)
        fast = net(x, t[2].repeat(3), cond, step_cond=step_conds[2])
        torch.testing.assert_close(fast, plain, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(net.eval()(x, t[2].repeat(3), cond), plain, atol=1e-3)  # dropout acted


def perturbed(policy: DiffusionPolicy) -> DiffusionPolicy:
    with torch.no_grad():  # an EMA with non-trivial outputs, as after training
        for b in policy.ema.buffers():
            if b.is_floating_point():
                b.add_(0.05 * torch.randn_like(b))
    return policy.eval()


@pytest.mark.parametrize("sampler", ["ddim", "dpm", "ddpm"])
@pytest.mark.parametrize("denoiser", ["mlp_resnet", "unet1d"])
def test_fast_predict_chunk_matches_reference_path(sampler, denoiser):
    policy = perturbed(make_policy(sampler=sampler, denoiser=denoiser, chunk_size=8, execution_horizon=4))
    calls = count_denoiser_calls(policy)
    obs_state = torch.randn(3, 2, 3)
    warm = torch.rand(3, 8, 2) * 2 - 1
    out = {}
    for fast in (True, False):
        policy.fast_sampling = fast
        policy.seed(5)
        before = calls[0]
        cold = policy.predict_chunk(obs_state)
        hot = policy.predict_chunk(obs_state, warm_start=warm)  # RTI: the last rti_steps steps
        out[fast] = (cold, hot, calls[0] - before)
    assert out[True][2] == out[False][2] == 10 + 3  # the fast path still calls the denoiser module
    for got, expected in zip(out[True][:2], out[False][:2], strict=True):
        assert not got.is_inference()  # usable by autograd-recording callers (e.g. a critic)
        assert (expected - expected.mean()).abs().max() > 1e-2  # a non-degenerate chunk
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_fast_ddim_path_does_not_call_the_diffusers_step(monkeypatch):
    policy = make_policy()

    def fail(*args, **kwargs):
        raise AssertionError("diffusers step called on the fast DDIM path")

    monkeypatch.setattr(policy.sampler, "step", fail)
    assert policy.sample({"obs_state": torch.randn(2, 2, 3)}, 2).shape == (2, 2, 4, 2)
    policy.fast_sampling = False
    with pytest.raises(AssertionError, match="fast DDIM path"):
        policy.sample({"obs_state": torch.randn(2, 2, 3)}, 2)


def test_fast_ddim_coefficients_follow_set_timesteps():
    policy = perturbed(make_policy())
    cond = policy.encode({"obs_state": torch.randn(2, 2, 3)}).detach()
    x = torch.randn(2, 4, 2)
    policy.denoise(cond, x, policy.timesteps)  # fills the coefficient cache for S = 10
    policy.sampler.set_timesteps(4)  # a different step count (and step ratio 25)
    steps = [int(t) for t in policy.sampler.timesteps]
    assert steps == [99, 74, 49, 24]
    results = []
    for fast in (True, False):
        policy.fast_sampling = fast
        with torch.no_grad():
            results.append(policy.denoise(cond, x, steps))
    assert not results[0].is_inference()  # the inference-mode chain hands back a normal tensor
    torch.testing.assert_close(results[0], results[1], atol=1e-6, rtol=0)


def test_fast_path_keeps_autograd_when_grad_is_enabled():
    policy = make_policy(mlp_blocks=2)
    policy.sample({"obs_state": torch.randn(1, 2, 3)}, 1)  # an inference-mode chain first
    cond = policy.encode({"obs_state": torch.randn(2, 2, 3)}, use_ema=False)
    out = policy.denoise(cond, torch.randn(2, 4, 2), policy.timesteps, use_ema=False)
    out.sum().backward()
    grad = policy.model.denoiser.blocks[0].net[1].weight.grad
    assert grad is not None and grad.abs().sum() > 0
