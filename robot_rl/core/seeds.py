"""The seed space: every environment reset seed a run uses comes from one of these disjoint streams.

A reset seed fully fixes a task's initial state, so a policy evaluated on a seed it trained on is
evaluated on a start state it has seen. Each stream owns a half-open range of integers and the
ranges do not overlap, so by construction no final-evaluation seed is ever a training, warm-up,
demonstration, in-training-evaluation or actor seed, for any run seed (``tests/unit/test_seeds.py``).

- ``evaluation`` ``[0, 10**6)``: the final evaluation and benchmark curves (``eval.seed_offset + i``),
  the same list for every run, policy and method; never trained on, never used to select anything.
- ``online_eval`` ``[10**6, 2*10**6)``: the trainer's in-training evaluations (``train.eval_every``).
- ``demos`` ``[2*10**6, 3*10**6)``: scripted demonstrations (``demos.seed_offset + i``,
  ``robot-rl-collect``).
- ``aux`` ``[3*10**6, 4*10**6)``: data for learned rewards and other tools (``aux_seed(i)``).
- ``train`` ``[10**8, 11*10**8)``: training episodes (warm-up included) of run seed ``s``:
  ``10**8 + (s mod 1000) * 10**6 + episode``.
- ``actor`` ``[12*10**8, 17*10**8)``: episodes of a separate actor process (``train.role=actor``).

Every seed stays below 2**31 (robosuite and older numpy seeders take 32-bit seeds). Indices past a
stream's size raise ``ValueError`` instead of spilling into the next stream.
"""

from __future__ import annotations

from dataclasses import dataclass

STREAM_SIZE = 1_000_000  # seeds per stream (per run seed for train and actor)


@dataclass(frozen=True)
class Stream:
    """A half-open range of reset seeds ``[base, base + size)``."""

    name: str
    base: int
    size: int

    def seed(self, index: int) -> int:
        if not 0 <= index < self.size:
            raise ValueError(f"{self.name} seed index {index} outside [0, {self.size})")
        return self.base + index

    def __contains__(self, seed: int) -> bool:
        return self.base <= seed < self.base + self.size

    @property
    def stop(self) -> int:
        return self.base + self.size


EVALUATION = Stream("evaluation", 0, STREAM_SIZE)
ONLINE_EVAL = Stream("online_eval", 1 * STREAM_SIZE, STREAM_SIZE)
DEMOS = Stream("demos", 2 * STREAM_SIZE, STREAM_SIZE)
AUX = Stream("aux", 3 * STREAM_SIZE, STREAM_SIZE)
TRAIN_RUN_SEEDS = 1000  # run seeds s and s + 1000 share training seeds (never an evaluation seed)
TRAIN = Stream("train", 100 * STREAM_SIZE, TRAIN_RUN_SEEDS * STREAM_SIZE)
ACTOR_RUN_SEEDS = 500
ACTOR = Stream("actor", 1200 * STREAM_SIZE, ACTOR_RUN_SEEDS * STREAM_SIZE)
STREAMS = (EVALUATION, ONLINE_EVAL, DEMOS, AUX, TRAIN, ACTOR)


def evaluation_seeds(n: int, offset: int = 0) -> list[int]:
    """The final-evaluation seeds ``offset .. offset + n - 1`` (the held-out start states)."""
    return [EVALUATION.seed(offset + i) for i in range(n)]


def online_eval_seeds(n: int) -> list[int]:
    """The seeds of every in-training evaluation (the same list each time, for a comparable curve)."""
    return [ONLINE_EVAL.seed(i) for i in range(n)]


def demo_seed(index: int, offset: int = 0) -> int:
    """The reset seed of demonstration attempt ``offset + index``."""
    return DEMOS.seed(offset + index)


def aux_seed(index: int) -> int:
    return AUX.seed(index)


def train_seed(run_seed: int, episode: int) -> int:
    """The reset seed of training episode ``episode`` of a run seeded ``run_seed``."""
    if not 0 <= episode < STREAM_SIZE:
        raise ValueError(f"training episode {episode} outside [0, {STREAM_SIZE})")
    return TRAIN.seed((run_seed % TRAIN_RUN_SEEDS) * STREAM_SIZE + episode)


def actor_seed(run_seed: int, episode: int) -> int:
    """The reset seed of episode ``episode`` of a separate actor process of run ``run_seed``."""
    if not 0 <= episode < STREAM_SIZE:
        raise ValueError(f"actor episode {episode} outside [0, {STREAM_SIZE})")
    return ACTOR.seed((run_seed % ACTOR_RUN_SEEDS) * STREAM_SIZE + episode)


def stream_of(seed: int) -> str:
    """The name of the stream a seed belongs to (``ValueError`` for a seed outside every stream)."""
    for stream in STREAMS:
        if seed in stream:
            return stream.name
    raise ValueError(f"seed {seed} belongs to no stream of robot_rl.core.seeds")
