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
