"""EXPO and PA-RL (algos/expo.py, pa_rl.py) and their deployable re-ranking policy (policies/rerank.py)."""

import numpy as np
import pytest
import torch

import robot_rl
from robot_rl.algos.expo import EXPO, EXPOConfig
from robot_rl.core import candidates as cand
from robot_rl.core.critics import Reduction
from robot_rl.core.errors import ConfigError
from robot_rl.core.types import ActionSpec, ObsSpec
from robot_rl.deploy.bundle import save_bundle
from robot_rl.policies.bc_chunk import BCChunkConfig, BCChunkPolicy
from robot_rl.policies.diffusion import DiffusionConfig, DiffusionPolicy
from robot_rl.policies.rerank import RerankPolicy

pytestmark = pytest.mark.unit

DS, DA = 5, 3


def make_base(kind: str, **overrides):
    torch.manual_seed(0)
    spec, act = ObsSpec(DS), ActionSpec.normalized(DA)
    overrides = {"obs_horizon": 1, "chunk_size": 2, "execution_horizon": 1, **overrides}  # chunk: masked loss
    if kind == "diffusion":
        cfg = DiffusionConfig(
            mlp_hidden=16, mlp_blocks=1, time_embed_dim=8, num_inference_steps=3, **overrides
        )
        base = DiffusionPolicy(cfg, spec, act)
    else:
        base = BCChunkPolicy(BCChunkConfig(hidden_dims=[16, 16], **overrides), spec, act)
    rng = np.random.default_rng(0)
    base.fit_normalizer(rng.normal(size=(64, DS)), rng.uniform(-1, 1, size=(64, DA)))
    return base


def make_expo(kind: str = "diffusion", **overrides) -> EXPO:
    cfg = EXPOConfig(
        **{"num_samples": 4, "num_edits": 4, "hidden_dims": [16, 16], "num_critics": 3, **overrides}
    )
    algo = EXPO(cfg, ObsSpec(DS), ActionSpec.normalized(DA), make_base(kind))
    algo.fit_normalizer(np.random.default_rng(1).normal(size=(64, DS)))
    return algo


def batch(b: int = 8) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return {
        "obs/state": torch.randn(b, DS, generator=g),
        "next_obs/state": torch.randn(b, DS, generator=g),
        "action": torch.rand(b, DA, generator=g) * 2 - 1,
        "reward": (torch.rand(b, generator=g) > 0.5).float(),
        "discount": torch.full((b,), 0.99),
        "is_demo": torch.arange(b) < b // 2,
    }


@pytest.mark.parametrize("kind", ["diffusion", "bc_chunk"])
def test_expo_is_policy_agnostic(kind):
    """The same EXPO code acts and learns with a diffusion and with a chunked-BC base."""
    algo = make_expo(kind)
    before = {k: v.clone() for k, v in algo.base.state_dict().items()}
    edit_before = [p.clone() for p in algo.edit.parameters()]
    for _ in range(3):
        metrics = algo.update(batch(), update_actor=True)
    assert all(np.isfinite(v) for k, v in metrics.items() if not k.startswith("train/q_"))
    assert {"loss/critic", "loss/base", "loss/edit", "train/edit_abs"} <= metrics.keys()
    assert any(not torch.equal(before[k], v) for k, v in algo.base.state_dict().items())  # imitation
    assert any(not torch.equal(a, b) for a, b in zip(edit_before, algo.edit.parameters()))
    action = algo.act({"state": np.zeros(DS, np.float32)})
    assert action.shape == (DA,) and np.all(np.abs(action) <= 1.0)


def test_otf_action_is_the_argmax_candidate_of_the_target_critic():
    algo = make_expo(target_reduction="mean")
    state = torch.randn(2, DS)
    algo.base.seed(11)
    algo.generator.manual_seed(5)
    chosen = algo.agent.choose(state)
    # rebuild the candidate pool with the same noise and score it by hand
    algo.base.seed(11)
    algo.generator.manual_seed(5)
    feats = algo.normalizer(state)
    pool = cand.propose(algo.base, state[:, None], 4)
    edited, _ = cand.edit(algo.edit, feats, pool, generator=algo.generator)
    pool = torch.cat([pool, edited], 1)
    scores = algo.critic_target(feats[:, None].expand(-1, 8, -1), pool).mean(0)
    torch.testing.assert_close(chosen, pool[torch.arange(2), scores.argmax(1)])
    assert algo.agent.critic is algo.critic_target  # OTF scores with the target critic


def test_standard_target_ablation_and_no_edit_variant_run():
    algo = make_expo(otf_target=False, num_edits=0)
    metrics = algo.update(batch(), update_actor=True)
    assert "loss/edit" not in metrics and "loss/base" in metrics


def test_refined_bundle_reproduces_the_otf_actions(tmp_path):
    algo = make_expo()
    for _ in range(2):
        algo.update(batch(), update_actor=True)
    loaded = robot_rl.load_policy(save_bundle(tmp_path / "b", algo.refined_policy()))
    assert isinstance(loaded, RerankPolicy)
    obs = {"state": np.linspace(-1, 1, DS).astype(np.float32)}
    for policy in (algo.agent, loaded):
        policy.reset()
        policy.seed(4)
    for _ in range(3):
        np.testing.assert_array_equal(algo.agent.act(obs), loaded.act(obs))


def test_expo_needs_a_single_step_base():
    base = make_base("diffusion", obs_horizon=2)
    with pytest.raises(ConfigError, match="obs_horizon=1"):
        EXPO(EXPOConfig(), ObsSpec(DS), ActionSpec.normalized(DA), base)
    with pytest.raises(ConfigError, match="num_edits=9 exceeds"):
        EXPOConfig(num_samples=8, num_edits=9)


def test_rerank_policy_with_local_optimization_never_scores_below_plain_reranking():
    algo = make_expo(target_reduction="mean", num_edits=0)
    agent = algo.agent
    state = torch.randn(4, DS)
    algo.base.seed(2)
    plain = agent.choose(state)
    object.__setattr__(
        agent, "cfg", type(agent.cfg)(**{**agent.cfg.__dict__, "local_steps": 5, "local_step_size": 0.05})
    )
    algo.base.seed(2)
    optimized = agent.choose(state)
    feats = agent.normalizer(state)
    q = lambda a: Reduction.parse("mean")(agent.critic(feats, a))  # noqa: E731
    assert (q(optimized) >= q(plain) - 1e-6).all()


# --- PA-RL (robot_rl/algos/pa_rl.py): same candidate machinery, Cal-QL critic, distillation ---


def make_parl(kind: str = "diffusion", **overrides):
    from robot_rl.algos.pa_rl import PARL, PARLConfig

    cfg = PARLConfig(
        **{
            "num_samples": 6,
            "top_k": 3,
            "local_steps": 2,
            "hidden_dims": [16, 16],
            "num_critics": 3,
            **overrides,
        }
    )
    algo = PARL(cfg, ObsSpec(DS), ActionSpec.normalized(DA), make_base(kind))
    algo.fit_normalizer(np.random.default_rng(1).normal(size=(64, DS)))
    return algo


def rl_batch(b: int = 8) -> dict[str, torch.Tensor]:
    out = batch(b)
    out["mc_return"] = out["reward"] * 0.9
    return out


@pytest.mark.parametrize("kind", ["diffusion", "bc_chunk"])
def test_pa_rl_is_policy_agnostic(kind):
    algo = make_parl(kind)
    base_before = {k: v.clone() for k, v in algo.base.state_dict().items()}
    metrics = algo.update(rl_batch(), update_actor=False)  # offline critic pre-training: base frozen
    assert "loss/base" not in metrics and metrics["loss/cql"] > 0
    assert all(torch.equal(base_before[k], v) for k, v in algo.base.state_dict().items())
    for _ in range(2):
        metrics = algo.update(rl_batch(), update_actor=True)  # online: distillation into the base
    assert np.isfinite(metrics["loss/base"]) and np.isfinite(metrics["loss/critic"])
    assert any(not torch.equal(base_before[k], v) for k, v in algo.base.state_dict().items())
    action = algo.act({"state": np.zeros(DS, np.float32)})
    assert action.shape == (DA,) and np.all(np.abs(action) <= 1.0)


def test_pa_rl_resets_the_critic_optimizer_at_the_online_switch():
    algo = make_parl()
    algo.update(rl_batch(), update_actor=False)
    offline_opt = algo.critic_opt
    assert offline_opt.state  # Adam moments from the offline phase
    algo.update(rl_batch(), update_actor=True)
    assert algo.critic_opt is not offline_opt and algo.online_started
    state = algo.state_dict()
    fresh = make_parl()
    fresh.load_state_dict(state)
    assert fresh.online_started
    fresh.update(rl_batch(), update_actor=True)  # no second reset after a resume
    assert fresh.critic_opt.state[next(iter(fresh.critic.parameters()))]["step"] == 2


def test_pa_rl_act_opt_never_scores_below_the_best_raw_sample():
    algo = make_parl(top_k=6, local_steps=3, local_step_size=0.05)
    s = torch.randn(5, DS)
    algo.base.seed(9)
    raw = cand.propose(algo.base, s[:, None], 6)
    raw_best = cand.score(algo.critic, algo.normalizer(s), raw, Reduction.parse("mean")).max(1).values
    algo.base.seed(9)
    scores, _ = algo.act_opt(s, algo.critic)
    assert (scores.max(1).values >= raw_best - 1e-6).all()
    dataset = torch.full((5, DA), 0.5)
    algo.base.seed(9)
    data_scores, _ = algo.act_opt(s, algo.critic, dataset_action=dataset)
    q_data = cand.score(algo.critic, algo.normalizer(s), dataset[:, None], Reduction.parse("mean"))[:, 0]
    assert (data_scores[:, -1] >= q_data - 1e-6).all()  # the injected action, moved uphill from its start
    global_only = make_parl(top_k=6, local_steps=0)
    _, kept = global_only.act_opt(s, global_only.critic, dataset_action=dataset)
    torch.testing.assert_close(kept[:, -1], dataset)  # replaces the worst kept candidate, unchanged


def test_pa_rl_with_an_iql_critic():
    algo = make_parl(critic="iql")
    v_before = [p.clone() for p in algo.value.parameters()]
    metrics = algo.update(rl_batch(), update_actor=False)
    assert "loss/value" in metrics and "loss/cql" not in metrics
    metrics = algo.update(rl_batch(), update_actor=True)
    assert np.isfinite(metrics["loss/base"])
    assert any(not torch.equal(a, b) for a, b in zip(v_before, algo.value.parameters()))
    with pytest.raises(ConfigError, match="algo.critic must be calql or iql"):
        make_parl(critic="cql")
