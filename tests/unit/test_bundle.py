import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import robot_rl
from robot_rl.core.errors import BundleError
from robot_rl.core.types import ActionSpec, ObsSpec
from robot_rl.deploy.bundle import save_bundle
from robot_rl.policies.bc_chunk import BCChunkConfig, BCChunkPolicy

pytestmark = pytest.mark.unit


@pytest.fixture
def policy():
    torch.manual_seed(0)
    p = BCChunkPolicy(
        BCChunkConfig(chunk_size=4, execution_horizon=2, hidden_dims=[16]),
        ObsSpec(5),
        ActionSpec.normalized(3),
    )
    p.fit_normalizer(np.random.default_rng(0).normal(size=(50, 5)))
    return p


def test_round_trip_is_bit_identical_and_acts_the_same(tmp_path, policy):
    path = save_bundle(
        tmp_path / "b", policy, control_hz=20.0, config_yaml="seed: 0\n", task="robot_rl/PointReach-v0"
    )
    loaded = robot_rl.load_policy(path)
    for key, value in policy.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    meta = json.loads((path / "bundle.json").read_text())
    assert meta["policy"] == "bc_chunk" and meta["chunk_size"] == 4 and meta["control_hz"] == 20.0
    assert set(meta["library_versions"]) >= {"robot_rl", "torch", "numpy", "python"}
    obs_seq = [{"state": np.random.default_rng(i).normal(size=5).astype(np.float32)} for i in range(5)]
    policy.reset()
    loaded.reset()
    for obs in obs_seq:
        np.testing.assert_array_equal(policy.act(obs), loaded.act(obs))


def test_missing_file_is_named(tmp_path, policy):
    path = save_bundle(tmp_path / "b", policy)
    (path / "normalization.safetensors").unlink()
    with pytest.raises(BundleError, match=r"missing file .*normalization\.safetensors"):
        robot_rl.load_policy(path)


def test_wrong_shape_names_file_tensor_and_shapes(tmp_path, policy):
    path = save_bundle(tmp_path / "b", policy)
    weights = load_file(str(path / "model.safetensors"))
    weights["net.0.weight"] = torch.zeros(16, 7)
    save_file(weights, str(path / "model.safetensors"))
    with pytest.raises(
        BundleError, match=r"model\.safetensors: tensor 'net.0.weight' has shape \(16, 7\).*\(16, 5\)"
    ):
        robot_rl.load_policy(path)


def test_incompatible_version_and_unknown_policy(tmp_path, policy):
    path = save_bundle(tmp_path / "b", policy)
    meta = json.loads((path / "bundle.json").read_text())
    (path / "bundle.json").write_text(json.dumps({**meta, "format_version": 7}))
    with pytest.raises(BundleError, match="bundle format 7 is incompatible"):
        robot_rl.load_policy(path)
    (path / "bundle.json").write_text(json.dumps({**meta, "policy": "nope"}))
    with pytest.raises(BundleError, match="unknown policy 'nope'; valid: bc_chunk"):
        robot_rl.load_policy(path)
    with pytest.raises(BundleError, match="does not exist"):
        robot_rl.load_policy(tmp_path / "missing")


def test_save_replaces_atomically(tmp_path, policy):
    path = save_bundle(tmp_path / "b", policy)
    save_bundle(tmp_path / "b", policy)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]
    assert (path / "bundle.json").is_file()


def test_transformer_bc_chunk_round_trip_acts_the_same(tmp_path):
    torch.manual_seed(0)
    cfg = BCChunkConfig(
        obs_horizon=2,
        chunk_size=4,
        execution_horizon=2,
        backbone="transformer",
        d_model=16,
        n_heads=2,
        ff_dim=32,
    )
    policy = BCChunkPolicy(cfg, ObsSpec(5), ActionSpec.normalized(3))
    rng = np.random.default_rng(0)
    policy.fit_normalizer(rng.normal(size=(50, 5)), rng.uniform(-0.5, 0.5, size=(50, 3)))
    path = save_bundle(tmp_path / "b", policy)
    loaded = robot_rl.load_policy(path)
    meta = json.loads((path / "bundle.json").read_text())
    assert meta["policy_config"]["backbone"] == "transformer" and loaded.cfg == cfg
    for key, value in policy.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    policy.eval()  # the loaded policy is in eval mode (PyTorch's fused encoder path): compare like with like
    obs_seq = [{"state": rng.normal(size=5).astype(np.float32)} for _ in range(6)]
    policy.reset()
    loaded.reset()
    for obs in obs_seq:
        np.testing.assert_array_equal(policy.act(obs), loaded.act(obs))
