import numpy as np
import pytest
import torch

from robot_rl.core.types import ActionSpec, ObsSpec
from robot_rl.data.demos import ChunkDataset, Episode
from robot_rl.policies.bc_chunk import BCChunkConfig, BCChunkPolicy, masked_chunk_mse

pytestmark = pytest.mark.unit


def test_masked_chunk_mse_by_hand():
    pred = torch.tensor([[[1.0, 1.0], [2.0, 0.0]]])  # B=1, Ta=2, Da=2
    target = torch.tensor([[[0.0, 1.0], [0.0, 0.0]]])
    # per-step mean squared error: step0 (1+0)/2 = 0.5, step1 (4+0)/2 = 2.0
    assert masked_chunk_mse(pred, target, torch.tensor([[1.0, 1.0]])).item() == pytest.approx(1.25)
    # the second step is padding: only step0 counts
    assert masked_chunk_mse(pred, target, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(0.5)


def test_chunk_windows_pad_history_and_mask_future():
    ep = Episode(
        np.arange(3, dtype=np.float32)[:, None],
        np.arange(3, dtype=np.float32)[:, None] * 10,
        np.zeros(3),
        True,
    )
    ds = ChunkDataset([ep], obs_horizon=2, chunk_size=2)
    # step 0: history [s0, s0], actions [a0, a1]; step 2: history [s1, s2], actions [a2, a2(pad)]
    np.testing.assert_array_equal(ds.states[ds.obs_index[0], 0], [0, 0])
    np.testing.assert_array_equal(ds.states[ds.obs_index[2], 0], [1, 2])
    np.testing.assert_array_equal(ds.actions[ds.action_index[2], 0], [20, 20])
    np.testing.assert_array_equal(ds.action_mask[2], [1, 0])


def test_act_replans_every_execution_horizon_and_reset_clears_queue():
    policy = BCChunkPolicy(
        BCChunkConfig(chunk_size=4, execution_horizon=2, hidden_dims=[8]),
        ObsSpec(2),
        ActionSpec.normalized(1),
    )
    calls = []
    original = policy.predict_chunk
    policy.predict_chunk = lambda x: calls.append(x.clone()) or original(x)  # type: ignore[method-assign]
    for t in range(5):
        policy.act({"state": np.array([t, 0], dtype=np.float32)})
    assert len(calls) == 3  # steps 0, 2, 4 re-plan
    policy.reset()
    policy.act({"state": np.array([9, 9], dtype=np.float32)})
    assert len(calls) == 4 and calls[-1][0, 0].tolist() == [9, 9]  # a fresh chunk from the new episode


def test_nan_in_demo_data_is_refused():
    from robot_rl.core.errors import DataError

    with pytest.raises(DataError, match="'actions' contains NaN"):
        Episode(np.zeros((2, 1)), np.array([[0.0], [np.nan]]), np.zeros(2), True)


def test_action_normalizer_by_hand():
    from robot_rl.core.networks import ActionNormalizer

    norm = ActionNormalizer(2, headroom=0.1, range_floor=0.1)
    norm.fit(torch.tensor([[0.0, -1.0], [0.5, 1.0], [0.25, 0.0]]))
    # dim 0: low 0, high 0.5 -> center 0.25, half range 0.25 * 1.1 = 0.275
    # dim 1: low -1, high 1 -> center 0, half range 1 * 1.1 = 1.1
    assert norm.center.tolist() == pytest.approx([0.25, 0.0])
    assert norm.half_range.tolist() == pytest.approx([0.275, 1.1])
    x = torch.tensor([[0.5, 1.0]])
    assert norm.normalize(x).tolist()[0] == pytest.approx([0.25 / 0.275, 1 / 1.1])
    assert torch.allclose(norm.denormalize(norm.normalize(x)), x)
    flat = ActionNormalizer(1, range_floor=0.1)
    flat.fit(torch.tensor([[0.3], [0.3]]))  # an unused dimension: the range is floored at 0.1
    assert flat.half_range.item() == pytest.approx(0.05)


def test_bundle_keeps_action_statistics_in_normalization_file(tmp_path):
    from safetensors.torch import load_file

    from robot_rl.deploy.bundle import save_bundle

    policy = BCChunkPolicy(
        BCChunkConfig(chunk_size=2, execution_horizon=1, hidden_dims=[8]),
        ObsSpec(2),
        ActionSpec.normalized(1),
    )
    policy.fit_normalizer(np.zeros((4, 2)), np.array([[0.0], [0.5], [0.2], [0.1]]))
    path = save_bundle(tmp_path / "b", policy)
    assert set(load_file(str(path / "normalization.safetensors"))) == {
        "normalizer.mean",
        "normalizer.std",
        "action_normalizer.center",
        "action_normalizer.half_range",
    }


def test_temporal_ensemble_by_hand():
    from robot_rl.policies.bc_chunk import temporal_ensemble

    # weights exp(0)=1 and exp(-ln 2)=0.5: (1·2 + 0.5·5) / 1.5 = 3
    out = temporal_ensemble([np.array([2.0]), np.array([5.0])], decay=np.log(2))
    assert out.tolist() == pytest.approx([3.0])


def test_temporal_ensembling_averages_overlapping_chunks():
    policy = BCChunkPolicy(
        BCChunkConfig(chunk_size=3, execution_horizon=1, hidden_dims=[4], temporal_ensemble_decay=np.log(2)),
        ObsSpec(1),
        ActionSpec.normalized(1),
    )
    chunks = iter([torch.tensor([[[0.1], [0.2], [0.3]]]), torch.tensor([[[0.4], [0.5], [0.6]]])])
    policy.predict_chunk = lambda x: next(chunks)  # type: ignore[method-assign]
    assert policy.act({"state": np.zeros(1, np.float32)}).tolist() == pytest.approx([0.1])
    # step 1: the first chunk's entry 1 (0.2, weight 1) and the second chunk's entry 0 (0.4, weight 0.5)
    assert policy.act({"state": np.zeros(1, np.float32)}).tolist() == pytest.approx([(0.2 + 0.5 * 0.4) / 1.5])
    policy.reset()
    assert not policy._chunks


# --- backbones (mlp | transformer) ---

TINY_TRANSFORMER = {"backbone": "transformer", "d_model": 16, "n_heads": 2, "n_layers": 1, "ff_dim": 32}
BACKBONES = {"mlp": {"hidden_dims": [8]}, "transformer": TINY_TRANSFORMER}


@pytest.mark.parametrize("backbone", BACKBONES)
def test_output_shapes_and_range(backbone):
    torch.manual_seed(0)
    cfg = BCChunkConfig(obs_horizon=2, chunk_size=4, execution_horizon=2, **BACKBONES[backbone])
    policy = BCChunkPolicy(cfg, ObsSpec(5), ActionSpec.normalized(3))
    obs_state = torch.randn(6, 2, 5)  # B=6, To=2, Ds=5
    chunk = policy.predict_chunk(obs_state)
    assert chunk.shape == (6, 4, 3) and chunk.abs().max() <= 1.0
    assert policy.sample({"obs_state": obs_state}, n=3).shape == (6, 3, 4, 3)
    assert policy.act({"state": np.zeros(5, np.float32)}).shape == (3,)
    batch = {"obs_state": obs_state, "action": torch.rand(6, 4, 3) * 2 - 1, "action_mask": torch.ones(6, 4)}
    loss = policy.bc_loss(batch)
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_transformer_parameters_and_state_dict_names():
    cfg = BCChunkConfig(obs_horizon=2, chunk_size=4, **TINY_TRANSFORMER)
    policy = BCChunkPolicy(cfg, ObsSpec(5), ActionSpec.normalized(3))
    keys = set(policy.state_dict())
    assert {"net.obs_pos", "net.queries", "net.head.weight", "net.encoder.norm.weight"} <= keys
    assert policy.net.obs_pos.shape == (2, 16) and policy.net.queries.shape == (4, 16)
    assert len(policy.net.encoder.layers) == 1 and policy.net.encoder.layers[0].norm_first
    # the mlp keeps the plain mlp's parameter names (bundles saved before the option still load)
    mlp_keys = set(
        BCChunkPolicy(BCChunkConfig(hidden_dims=[8]), ObsSpec(5), ActionSpec.normalized(3)).state_dict()
    )
    assert {"net.0.weight", "net.2.weight"} <= mlp_keys


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"backbone": "rnn"}, "policy.backbone='rnn' is not valid; choose one of: mlp, transformer"),
        ({"backbone": "transformer", "d_model": 30, "n_heads": 4}, "policy.d_model=30 must be divisible"),
        ({"n_layers": 0}, "policy.n_layers must be > 0, got 0"),
        ({"dropout": 1.0}, r"policy.dropout must be in \[0, 1\), got 1.0"),
    ],
)
def test_invalid_backbone_config_is_one_line_error(overrides, message):
    from robot_rl.core.errors import ConfigError

    with pytest.raises(ConfigError, match=message) as info:
        BCChunkConfig(**overrides)
    assert "\n" not in str(info.value)


def test_transformer_learns_a_fixed_mapping():
    """A state -> chunk map that differs per chunk step: the loss must fall far below the best
    state-independent prediction (the per-step mean), so a net that ignores the observation tokens
    or mixes up the query positions fails."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    to, ta, ds, da = 2, 4, 3, 2
    n = 64
    states = rng.normal(size=(n, to, ds)).astype(np.float32)
    w = rng.normal(size=(to * ds, ta * da)).astype(np.float32) / np.sqrt(to * ds)
    actions = np.tanh(states.reshape(n, -1) @ w).reshape(n, ta, da).astype(np.float32)
    cfg = BCChunkConfig(obs_horizon=to, chunk_size=ta, execution_horizon=2, **TINY_TRANSFORMER)
    policy = BCChunkPolicy(cfg, ObsSpec(ds), ActionSpec.normalized(da))
    policy.fit_normalizer(states.reshape(-1, ds), actions.reshape(-1, da))
    batch = {
        "obs_state": torch.as_tensor(states),
        "action": torch.as_tensor(actions),
        "action_mask": torch.ones(n, ta),
    }
    target = policy.action_normalizer.normalize(batch["action"])
    constant_baseline = ((target - target.mean(0)) ** 2).mean().item()  # best state-independent MSE
    opt = torch.optim.Adam(policy.parameters(), lr=3e-3)
    first = policy.bc_loss(batch).item()
    for _ in range(200):
        loss = policy.bc_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    final = policy.bc_loss(batch).item()
    assert final < 0.1 * first and final < 0.1 * constant_baseline, (first, final, constant_baseline)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_act_executes_chunk_prefixes_with_padded_history(backbone):
    """The same queue semantics for every backbone: re-plan every execution_horizon steps from the
    padded history, execute the chunk's first entries in order, start fresh after reset."""
    torch.manual_seed(0)
    cfg = BCChunkConfig(obs_horizon=2, chunk_size=4, execution_horizon=3, **BACKBONES[backbone])
    policy = BCChunkPolicy(cfg, ObsSpec(2), ActionSpec.normalized(2))
    states = [np.array([t, -t], np.float32) for t in range(7)]

    def expected(history):
        return policy.predict_chunk(torch.as_tensor(np.stack(history))[None])[0].detach().numpy()

    for _ in range(2):  # the second pass checks that reset() restores the episode-start behaviour
        policy.reset()
        got = [policy.act({"state": s}) for s in states]
        c0 = expected([states[0], states[0]])  # step 0: the history is padded with the first state
        c3, c6 = expected(states[2:4]), expected(states[5:7])
        want = [c0[0], c0[1], c0[2], c3[0], c3[1], c3[2], c6[0]]
        np.testing.assert_allclose(np.stack(got), np.stack(want), rtol=0, atol=1e-6)
    assert len(policy._queue) == 2


def test_transformer_temporal_ensembling_and_reset():
    cfg = BCChunkConfig(
        chunk_size=3, execution_horizon=1, temporal_ensemble_decay=np.log(2), **TINY_TRANSFORMER
    )
    policy = BCChunkPolicy(cfg, ObsSpec(1), ActionSpec.normalized(1))
    chunks = iter([torch.tensor([[[0.1], [0.2], [0.3]]]), torch.tensor([[[0.4], [0.5], [0.6]]])])
    policy.predict_chunk = lambda x: next(chunks)  # type: ignore[method-assign]
    assert policy.act({"state": np.zeros(1, np.float32)}).tolist() == pytest.approx([0.1])
    assert policy.act({"state": np.zeros(1, np.float32)}).tolist() == pytest.approx([(0.2 + 0.5 * 0.4) / 1.5])
    policy.reset()
    assert not policy._chunks and not policy._history
