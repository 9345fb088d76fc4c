"""The ``vlm`` reward back-end: prompt, parser, mapping, frame sampling, and a tiny Qwen3-VL end to end."""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pytest

from robot_rl.rewards import REWARDS
from robot_rl.rewards.interface import RewardModel, RewardRequest, RewardResult
from robot_rl.rewards.vlm import (
    ROBOREWARD_PROMPT,
    VLMReward,
    VLMRewardConfig,
    build_prompt,
    parse_answer,
    progress_table,
    prompt_hash,
    result_from_text,
    sample_frame_indices,
    score_to_progress,
)

pytestmark = pytest.mark.unit


# ----------------------------------------------------------------------------- parser
@pytest.mark.parametrize(
    ("text", "score"),
    [
        ("ANSWER: 4", 4),
        ("ANSWER:5", 5),
        ("answer:  1\n", 1),
        ("The cube is lifted. ANSWER: 3", 3),
        ("**ANSWER:** 2", 2),  # markdown bold around the label
        ("ANSWER: **2**", 2),
        ("ANSWER: 2 ... on reflection ANSWER: 5", 5),  # the last answer wins
        ("ANSWER: 7", None),
        ("ANSWER: 0", None),
        ("ANSWER: 45", None),
        ("ANSWER: four", None),
        ("I would give it a 4", None),  # no fallback to a stray digit
        ("", None),
        ("ANSWER:", None),
        ("\x00\ufffd garbage ANS WER: 3", None),
    ],
)
def test_parse_answer(text, score):
    assert parse_answer(text) == score


def test_parse_answer_non_string_is_none():
    assert parse_answer(None) is None  # type: ignore[arg-type]


def test_score_mapping_default_table():
    assert [score_to_progress(k) for k in range(1, 6)] == [0.0, 0.25, 0.5, 0.75, 1.0]
    with pytest.raises(ValueError, match="score must be one of"):
        score_to_progress(6)


def test_result_from_text_success_only_at_5_by_default():
    assert result_from_text("ANSWER: 5") == (5, 1.0, True)
    assert result_from_text("ANSWER: 4") == (4, 0.75, False)
    assert result_from_text("ANSWER: 4", success_score=4) == (4, 0.75, True)
    assert result_from_text("nonsense") == (None, 0.0, False)
    custom = progress_table((0.0, 0.0, 0.2, 0.6, 1.0))
    assert result_from_text("ANSWER: 3", table=custom) == (3, 0.2, False)


def test_progress_table_validation():
    with pytest.raises(ValueError, match="needs 5 values"):
        progress_table((0.0, 1.0))
    with pytest.raises(ValueError, match="non-decreasing"):
        progress_table((0.0, 0.5, 0.25, 0.75, 1.0))
    with pytest.raises(ValueError, match="non-decreasing"):
        progress_table((0.0, 0.25, 0.5, 0.75, 1.5))


# ----------------------------------------------------------------------------- prompt
def test_prompt_rubric_and_task_last():
    prompt = build_prompt("  lift the red cube ")
    assert prompt.endswith("Task: lift the red cube")
    assert "ANSWER: <score>" in prompt
    assert "final state" in prompt
    for k in range(1, 6):
        assert f"\n{k} - " in prompt


def test_prompt_hash_is_stable_and_template_sensitive():
    assert prompt_hash(ROBOREWARD_PROMPT) == prompt_hash(ROBOREWARD_PROMPT)
    assert len(prompt_hash(ROBOREWARD_PROMPT)) == 16
    assert prompt_hash(ROBOREWARD_PROMPT + " ") != prompt_hash(ROBOREWARD_PROMPT)


def test_prompt_template_needs_task_slot():
    with pytest.raises(ValueError, match="must contain"):
        build_prompt("x", "no slot here")
    with pytest.raises(ValueError, match="must contain"):
        VLMRewardConfig(prompt_template="no slot")


# ----------------------------------------------------------------------------- frame sampling
def test_sample_uniform_k_includes_first_and_last():
    # linspace(0, 99, 8) = 0, 14.14, 28.29, 42.43, 56.57, 70.71, 84.86, 99
    assert sample_frame_indices(100, max_frames=8) == [0, 14, 28, 42, 57, 71, 85, 99]


def test_sample_short_clips():
    assert sample_frame_indices(0) == []
    assert sample_frame_indices(1) == [0, 0]  # a single frame is repeated to make 2
    assert sample_frame_indices(3, max_frames=16) == [0, 1, 2]
    assert sample_frame_indices(1, min_frames=1) == [0]


def test_sample_at_fps():
    # 50 frames at 10 fps = 4.9 s -> floor(4.9) + 1 = 5 frames: linspace(0, 49, 5) = 0, 12.25, 24.5, 36.75, 49
    assert sample_frame_indices(50, fps=10.0, sample_fps=1.0) == [0, 12, 24, 37, 49]
    # capped by max_frames; 2 frames minimum
    assert len(sample_frame_indices(1000, fps=10.0, sample_fps=1.0, max_frames=16)) == 16
    assert sample_frame_indices(5, fps=10.0, sample_fps=1.0) == [0, 4]


def test_sample_rejects_bad_bounds():
    with pytest.raises(ValueError, match="min_frames"):
        sample_frame_indices(10, max_frames=2, min_frames=3)


# ----------------------------------------------------------------------------- interface
def test_request_validation():
    ok = np.zeros((2, 8, 8, 3), np.uint8)
    RewardRequest(ok, "t")
    RewardRequest(np.zeros((0, 8, 8, 3), np.uint8), "t")  # empty is allowed (scored as flagged)
    with pytest.raises(ValueError, match=r"\[T, H, W, 3\]"):
        RewardRequest(np.zeros((8, 8, 3), np.uint8), "t")
    with pytest.raises(ValueError, match="uint8"):
        RewardRequest(ok.astype(np.float32), "t")
    with pytest.raises(ValueError, match="mode"):
        RewardRequest(ok, "t", mode="dense")  # type: ignore[arg-type]


def test_registered_and_missing_checkpoint_is_a_clear_error(tmp_path):
    assert "vlm" in REWARDS.names()
    assert REWARDS.config_cls("vlm")().name == "vlm"
    with pytest.raises(ValueError, match="model_path is not set"):
        REWARDS.build("vlm", VLMRewardConfig())
    with pytest.raises(FileNotFoundError, match="no Qwen3-VL checkpoint"):
        REWARDS.build("vlm", VLMRewardConfig(model_path=str(tmp_path / "missing")))


# ----------------------------------------------------------------------------- tiny Qwen3-VL end to end
_HAVE_VLM = all(
    importlib.util.find_spec(m) is not None for m in ("transformers", "torchvision", "tokenizers")
)
needs_vlm = pytest.mark.skipif(
    not _HAVE_VLM, reason="needs the vlm extra: pip install robot-rl[vlm] (transformers, torchvision)"
)
_SPECIAL = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
# Minimal Qwen-style chat template: media items become vision-start/pad/end markers.
_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_qwen3_vl(path) -> None:
    """A randomly initialized 2-layer, width-64 Qwen3-VL with a locally trained BPE tokenizer."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        PreTrainedTokenizerFast,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
    )
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    corpus = [
        build_prompt("lift the red cube onto the green plate"),
        "ANSWER: 1 2 3 4 5",
        "user assistant system",
    ]
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=_SPECIAL, show_progress=False)
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template=_CHAT_TEMPLATE
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in _SPECIAL}
    patch = 16
    processor = Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(patch_size=patch, merge_size=2, temporal_patch_size=2),
        video_processor=Qwen3VLVideoProcessor(
            patch_size=patch,
            merge_size=2,
            temporal_patch_size=2,
            size={"shortest_edge": 4096, "longest_edge": 65536},
        ),
        tokenizer=tokenizer,
        chat_template=_CHAT_TEMPLATE,
    )
    config = Qwen3VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "max_position_embeddings": 4096,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [2, 3, 3],
                "mrope_interleaved": True,
            },
            "pad_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
        },
        vision_config={
            "depth": 2,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_heads": 4,
            "patch_size": patch,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "out_hidden_size": 64,
            "num_position_embeddings": 64,
            "deepstack_visual_indexes": [1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(0)
    model = Qwen3VLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(path)
    processor.save_pretrained(path)


@pytest.fixture(scope="module")
def tiny_qwen3_vl(tmp_path_factory):
    if not _HAVE_VLM:
        pytest.skip("needs the vlm extra: pip install robot-rl[vlm] (transformers, torchvision)")
    path = tmp_path_factory.mktemp("tiny_qwen3_vl")
    build_tiny_qwen3_vl(path)
    return path


def _frames(t: int, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, size, size, 3), dtype=np.uint8)


def _assert_well_formed(res: RewardResult, req: RewardRequest) -> None:
    assert isinstance(res, RewardResult)
    assert res.model_id and res.model_revision and len(res.prompt_hash) == 16
    assert 0.0 <= res.progress <= 1.0 and 0.0 <= res.success_prob <= 1.0
    assert res.latency_ms >= 0.0 and res.episode_id == req.episode_id and res.mode == req.mode
    assert isinstance(res.raw_text, str)
    if res.parse_ok:
        assert res.score_raw in (1, 2, 3, 4, 5) and not res.error
    else:  # flagged "unknown": never a usable reward
        assert res.score_raw is None and res.progress == 0.0 and not res.success and res.error
        assert not res.usable


def _loaded_tiny(path, **overrides):
    cfg = VLMRewardConfig(model_path=str(path), **{"max_frames": 2, "device": "cpu", **overrides})
    return REWARDS.build("vlm", cfg).load()


@needs_vlm
def test_tiny_qwen3_vl_end_to_end(tiny_qwen3_vl):
    cfg = VLMRewardConfig(model_path=str(tiny_qwen3_vl), max_frames=4, max_new_tokens=4, device="cpu")
    reward = REWARDS.build("vlm", cfg)
    assert isinstance(reward, RewardModel)
    assert reward.model_revision.startswith("config:")
    req = RewardRequest(_frames(10), "lift the red cube", episode_id="ep0")

    # the real processor path: chat template, video placeholder expansion, pixel values
    reward.load()
    assert reward.model.dtype.is_floating_point and str(reward.model.device) == "cpu"
    enc = reward.inputs([(req, reward._indices(req))])
    video_id = reward.processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    assert int((enc["input_ids"] == video_id).sum()) > 1 and "pixel_values_videos" in enc
    assert enc["video_grid_thw"].tolist()[0][0] == 2  # 4 frames / temporal patch 2

    res = reward.score(req)
    _assert_well_formed(res, req)
    assert res.frames_used == [0, 3, 6, 9]
    if not res.parse_ok:
        assert res.error == "parse"  # random weights: garbage text is flagged, not raised

    reqs = [
        RewardRequest(_frames(3, seed=1), "push the block", mode="prefix", episode_id="a"),
        RewardRequest(_frames(0), "empty episode", episode_id="b"),
        RewardRequest(_frames(1, size=48, seed=2), "lift", episode_id="c"),
    ]
    out = reward.score_batch(reqs)
    assert [r.episode_id for r in out] == ["a", "b", "c"]
    for r, q in zip(out, reqs):
        _assert_well_formed(r, q)
    assert out[1].error == "empty" and out[1].frames_used == []
    assert out[2].frames_used == [0, 0]
    assert out[0].error in ("", "parse") and out[2].error in ("", "parse")  # generation itself ran


@needs_vlm
def test_tiny_qwen3_vl_parses_a_forced_answer(tiny_qwen3_vl, monkeypatch):
    """The decode -> parse -> map path with a model output that is a valid answer."""
    reward = _loaded_tiny(tiny_qwen3_vl)
    answer = reward.processor.tokenizer("ANSWER: 5", return_tensors="pt")["input_ids"]
    real_generate = reward.model.generate

    def generate(**kwargs):
        import torch

        real_generate(**kwargs)  # the real call still runs
        return torch.cat([kwargs["input_ids"], answer.expand(kwargs["input_ids"].shape[0], -1)], dim=1)

    monkeypatch.setattr(reward.model, "generate", generate)
    req = RewardRequest(_frames(4), "lift the red cube")
    res = reward.score(req)
    assert (res.parse_ok, res.score_raw, res.progress, res.success, res.success_prob) == (
        True,
        5,
        1.0,
        True,
        1.0,
    )
    assert res.raw_text.strip() == "ANSWER: 5"


def test_answer_success_prob_by_hand():
    from robot_rl.rewards.vlm import answer_success_prob

    # digits 1..5 with logits (0, 0, 0, 0, ln 4): p = (1, 1, 1, 1, 4) / 8, so P(5) = 0.5
    assert answer_success_prob([0, 0, 0, 0, math.log(4)], score=5) == pytest.approx(0.5)
    # success from 4 up: P(4) + P(5) = (2 + 3) / (1 + 1 + 1 + 2 + 3) = 5/8 with logits ln(1,1,1,2,3)
    logits = np.log([1.0, 1.0, 1.0, 2.0, 3.0])
    assert answer_success_prob(logits, score=5, success_score=4) == pytest.approx(5 / 8)
    with pytest.raises(ValueError, match="not the most likely digit"):
        answer_success_prob(logits, score=2)
    with pytest.raises(ValueError, match="5 finite digit logits"):
        answer_success_prob([0.0, float("nan"), 0.0, 0.0, 0.0], score=1)


@needs_vlm
def test_tiny_qwen3_vl_success_prob_comes_from_the_answer_digit(tiny_qwen3_vl, monkeypatch):
    """generate's per-step logits at the answer digit become success_prob (not the 0/1 verdict)."""
    import torch

    reward = _loaded_tiny(tiny_qwen3_vl)
    tok = reward.processor.tokenizer
    answer = tok("ANSWER: 5", return_tensors="pt")["input_ids"][0]
    five = tok.convert_ids_to_tokens(answer[-1].item())  # "Ġ5" here: this tokenizer merges the space
    digits = tok.convert_tokens_to_ids([five[:-1] + str(k) for k in range(1, 6)])
    assert five.endswith("5") and len(set(digits)) == 5 and tok.unk_token_id not in digits
    real_generate = reward.model.generate

    def generate(**kwargs):
        out = real_generate(**kwargs)  # the real call still runs, with the flags _generate passes
        assert kwargs["output_scores"] and kwargs["return_dict_in_generate"]
        rows = kwargs["input_ids"].shape[0]
        vocab = out.scores[0].shape[-1]
        scores = []
        for _ in answer:
            step = torch.zeros(rows, vocab)
            step[:, digits[4]] = math.log(4)  # the digit step: P(5) = 4 / (4 + 4) among the digits
            scores.append(step)
        seqs = torch.cat([kwargs["input_ids"], answer.expand(rows, -1)], dim=1)
        return type(out)(sequences=seqs, scores=tuple(scores))

    monkeypatch.setattr(reward.model, "generate", generate)
    res = reward.score(RewardRequest(_frames(4), "lift the red cube"))
    assert (res.parse_ok, res.score_raw, res.success) == (True, 5, True)
    assert res.success_prob == pytest.approx(0.5)


@needs_vlm
def test_tiny_qwen3_vl_model_error_is_flagged(tiny_qwen3_vl, monkeypatch):
    reward = REWARDS.build("vlm", VLMRewardConfig(model_path=str(tiny_qwen3_vl), device="cpu")).load()

    def boom(**kwargs):
        raise RuntimeError("out of memory\nmore")

    monkeypatch.setattr(reward.model, "generate", boom)
    res = reward.score(RewardRequest(_frames(4), "lift"))
    assert not res.parse_ok and res.error == "model" and res.raw_text == "RuntimeError: out of memory"


def test_revision_read_from_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"_commit_hash": "abc123"}))
    assert VLMReward(VLMRewardConfig(model_path=str(tmp_path))).model_revision == "abc123"


@needs_vlm
def test_tiny_qwen3_vl_as_the_reward_in_simulation(tiny_qwen3_vl):
    """reward=vlm in the training loop: rendered prefixes go through the real processor and generate
    every ``score_every`` steps; the random tiny model's text does not parse, which is counted and
    never becomes a reward."""
    pytest.importorskip("mujoco")
    import gymnasium as gym

    cfg = VLMRewardConfig(
        model_path=str(tiny_qwen3_vl),
        max_frames=4,
        max_new_tokens=4,
        device="cpu",
        score_every=2,
        image_size=32,
    )
    env = REWARDS.build("vlm", cfg).wrap(gym.make("robot_rl/Lift-v0", terminate_on_success=True))
    env.reset(seed=0)
    total, info = 0.0, {}
    for _ in range(4):
        _, r, _, _, info = env.step(np.zeros(4, np.float32))
        total += r
    scored = info["reward_parse_failures"] + (info["reward_score"] is not None)
    assert scored >= 1 and total == (1.0 if info["reward_score"] == 5 else 0.0)
    env.close()
