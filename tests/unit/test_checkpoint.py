import pytest
import torch

import robot_rl.core.checkpoint as checkpoint_module
from robot_rl.core.checkpoint import CheckpointManager

pytestmark = pytest.mark.unit


def test_save_load_latest_and_pruning(tmp_path):
    manager = CheckpointManager(tmp_path, keep=2)
    for step in (10, 20, 30):
        manager.save(step, {"step": step, "w": torch.full((2,), float(step))})
    assert [p.name for p in manager.complete()] == ["step_000000020", "step_000000030"]
    state = manager.load()
    assert state["step"] == 30 and torch.equal(state["w"], torch.full((2,), 30.0))
    assert (tmp_path / "latest").read_text() == "step_000000030"


def test_crash_mid_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    manager = CheckpointManager(tmp_path, keep=2)
    manager.save(1, {"w": torch.ones(3)})

    def crash_after_partial_write(directory, name, tree):
        (directory / f"{name}.safetensors").write_bytes(b"half a file")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(checkpoint_module, "save_tree", crash_after_partial_write)
    with pytest.raises(KeyboardInterrupt):
        manager.save(2, {"w": torch.zeros(3)})
    # a fresh process sees only the complete checkpoint
    reloaded = CheckpointManager(tmp_path, keep=2)
    assert reloaded.latest().name == "step_000000001"
    assert torch.equal(reloaded.load()["w"], torch.ones(3))


def test_folder_without_meta_is_not_a_checkpoint(tmp_path):
    manager = CheckpointManager(tmp_path)
    manager.save(5, {"x": 1})
    (tmp_path / "step_000000009").mkdir()  # renamed but never completed (impossible by design, still safe)
    assert manager.latest().name == "step_000000005"


def test_no_checkpoint_and_wrong_format_are_clear_errors(tmp_path):
    manager = CheckpointManager(tmp_path)
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        manager.load()
    path = manager.save(1, {"x": 1})
    (path / "meta.json").write_text('{"format_version": 99, "step": 1}')
    with pytest.raises(ValueError, match="checkpoint format 99 is not supported"):
        manager.load()
