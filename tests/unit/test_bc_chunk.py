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
