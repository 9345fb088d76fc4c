import pickle

import numpy as np
import pytest
import torch

from robot_rl.core.serialization import load_tree, save_tree

pytestmark = pytest.mark.unit


def test_round_trip_keeps_types_keys_and_bits(tmp_path, monkeypatch):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    tree = {
        "model": model.state_dict(),
        "optim": opt.state_dict(),  # int keys in "state"
        "array": np.arange(6, dtype=np.int64).reshape(2, 3),
        "scalars": [1, 2.5, "x", None, True],
        "np_scalar": np.float32(0.5),
    }
    save_tree(tmp_path, "s", tree)
    monkeypatch.setattr(pickle, "loads", lambda *_: pytest.fail("pickle used on a load path"))
    back = load_tree(tmp_path, "s")
    for key, value in tree["model"].items():
        assert torch.equal(back["model"][key], value)
    assert set(back["optim"]["state"]) == {0, 1}
    assert isinstance(back["array"], np.ndarray) and np.array_equal(back["array"], tree["array"])
    assert back["scalars"] == [1, 2.5, "x", None, True] and back["np_scalar"] == 0.5
    opt2 = torch.optim.Adam(model.parameters())
    opt2.load_state_dict(back["optim"])  # a restored optimizer state is usable


def test_missing_and_corrupt_files_are_named(tmp_path):
    save_tree(tmp_path, "s", {"a": torch.zeros(2)})
    (tmp_path / "s.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"corrupt file .*s\.safetensors"):
        load_tree(tmp_path, "s")
    (tmp_path / "s.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing file .*s\.json"):
        load_tree(tmp_path, "s")


def test_unserializable_objects_are_refused(tmp_path):
    with pytest.raises(TypeError, match="without pickle"):
        save_tree(tmp_path, "s", {"f": object()})
