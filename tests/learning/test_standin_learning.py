"""The reward-model stand-in learns to tie the instruction's colour to the object it sees: trained
with bfloat16 autocast (the default) on tiny synthetic clips, in the default tier (~5 s)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robot_rl.rewards.standin import Clip, Rollout, make_clips

pytestmark = [pytest.mark.ci_learning, pytest.mark.sim]  # the colours come from robot_rl.sim


def _square_rollout(colour: str, lifted: bool) -> Rollout:
    """16x16 grey frames with a 4x4 square of ``colour`` that rises 8 px (``lifted``) or stays."""
    from robot_rl.sim.base import COLOURS as RGB

    n = 9
    frames = np.full((n, 16, 16, 3), 110, np.uint8)
    for t in range(n):
        top = 10 - (t if lifted else 0)
        frames[t, top : top + 4, 6:10] = (np.array(RGB[colour]) * 255).astype(np.uint8)
    rubric = np.minimum(1 + np.arange(n) // 2, 5) if lifted else np.ones(n, int)
    return Rollout(frames, rubric, f"lift the {colour} cube", lifted)


def test_standin_learns_which_colour_the_instruction_names():
    """bf16-autocast training on squares that rise or stay: the right instruction scores a lifted
    square 5, an instruction naming a colour that is not in the picture scores it 1."""
    from robot_rl.rewards.standin import COLOURS, StandInTrainConfig, predict_scores, train_standin

    rollouts = [_square_rollout(c, lifted) for c in COLOURS for lifted in (True, False)] * 2
    clips = make_clips(rollouts, seed=0, prefixes=0, counterfactuals=3)
    # 80 epochs fit training seeds 0-2 exactly (~5 s); without the lexicon start the gate learned
    # slower and seed 0 needed 120
    cfg = StandInTrainConfig(epochs=80, batch_size=16, lr=3e-3, channels=8, hidden=32, shift=0, bf16=True)
    model, _ = train_standin(rollouts, clips, cfg)
    assert next(model.parameters()).dtype == torch.float32  # autocast leaves the weights in fp32
    test = [Clip(r, 8, ro.task, 0, "full") for r, ro in enumerate(rollouts[:12]) if ro.success]
    test += [Clip(c.rollout, 8, c.task, 0, "x") for c in clips[:60] if c.kind == "counterfactual"]
    scores = predict_scores(model, rollouts, test)
    assert (scores[:6] == 5).all(), scores[:6]  # lifted, named right
    wrong_on_lifted = [s for c, s in zip(test[6:], scores[6:]) if rollouts[c.rollout].success]
    assert np.mean(np.array(wrong_on_lifted) == 1) >= 0.9, wrong_on_lifted
