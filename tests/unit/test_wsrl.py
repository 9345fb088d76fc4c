"""WSRL (robot_rl/algos/wsrl.py): Cal-QL only in the offline pre-training, the pre-trained policy warms up."""

import numpy as np
import pytest
import torch

from robot_rl.algos.wsrl import WSRL, WSRLConfig
from robot_rl.core.types import ActionSpec, ObsSpec

pytestmark = pytest.mark.unit


def make_wsrl(**overrides) -> WSRL:
    torch.manual_seed(0)
    cfg = WSRLConfig(**{"hidden_dims": [16, 16], "num_critics": 3, **overrides})
    return WSRL(cfg, ObsSpec(4), ActionSpec.normalized(2))


def batch(b: int = 8) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    reward = (torch.rand(b, generator=g) > 0.5).float()
    return {
        "obs/state": torch.randn(b, 4, generator=g),
        "next_obs/state": torch.randn(b, 4, generator=g),
        "action": torch.rand(b, 2, generator=g) * 2 - 1,
        "reward": reward,
        "discount": torch.full((b,), 0.99),
        "is_demo": torch.ones(b, dtype=torch.bool),
        "mc_return": reward,
    }


def test_cal_ql_only_in_the_offline_updates():
    algo = make_wsrl()
    offline = algo.offline_update(batch())
    assert "loss/cql" in offline and np.isfinite(offline["loss/cql"])
    online = algo.update(batch())
    assert "loss/cql" not in online
    assert make_wsrl(cql_alpha=0.0).offline_update(batch()).keys() == online.keys()


def test_the_cal_ql_term_pushes_down_unseen_actions():
    """Many offline updates with a large α: Q of the data action ends above Q of random actions."""
    algo = make_wsrl(cql_alpha=1.0, critic_lr=3e-3)
    data = batch(32)
    data["reward"] = torch.zeros(32)
    data["mc_return"] = torch.zeros(32)
    for _ in range(150):
        algo.offline_update(data)
    s = algo.normalizer(data["obs/state"])
    q_data = algo.critic(s, data["action"]).mean()
    q_rand = algo.critic(s, torch.rand(32, 2, generator=torch.Generator().manual_seed(5)) * 2 - 1).mean()
    assert q_data > q_rand + 0.05


def test_warmup_uses_the_pre_trained_policy_not_random_actions():
    algo = make_wsrl()
    with torch.no_grad():  # a policy whose mean is far from uniform: tanh(±3) with a tiny std
        last = algo.actor.net[-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor([3.0, -3.0, -20.0, -20.0]))
    obs = {"state": np.zeros(4, np.float32)}
    actions = np.stack([algo.warmup_action(obs, np.random.default_rng(i)) for i in range(20)])
    np.testing.assert_allclose(actions, np.tile([np.tanh(3.0), -np.tanh(3.0)], (20, 1)), atol=1e-3)
