"""Scripted experts: the shared helper and the module-level entry point.

Each task implements ``expert_action(noise=0.0, hesitation=0.0)`` as a state machine over the true
simulator state. ``noise`` is the std of Gaussian noise added to the normalized action (then
clipped to [-1, 1]); ``hesitation`` is the per-step probability of a pause (zero motion, the gripper
command is kept). Both draw from the env's expert RNG, a stream separate from the physics RNG that is
re-derived at every ``reset`` (so seeded episodes with a noisy expert are reproducible).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def move_to(env: Any, target: np.ndarray, grip: float, gain: float = 1.0) -> np.ndarray:
    """Normalized ee_delta action that moves the tcp toward ``target`` (m) with gripper ``grip``.

    With ``control="joint_pos"`` the Cartesian step is mapped to joint increments through one DLS
    IK step, so the same expert drives both controllers. Under control latency the expert (which
    sees the true simulator, pending actions included) predicts the tcp after the queued actions.
    """
    ctrl = env.controller
    pending = env._action_queue  # actions sent but not executed yet (control latency)
    if ctrl.name == "ee_delta":
        # Smith predictor: aim from where the tcp will be once the pending deltas have been applied
        pred = env.arm.tcp_pos
        if pending:
            pred = pred + ctrl.max_delta * np.sum([a[:3] for a in pending], axis=0)
        action = np.zeros(ctrl.action_dim)  # with ee_yaw the expert holds the yaw (dyaw = 0)
        action[:3] = np.clip(gain * (target - pred) / ctrl.max_delta, -1.0, 1.0)
        action[-1] = grip
        return action
    if pending:
        gain = gain / (1.0 + 2.0 * len(pending))  # joint space: stay stable under the delay
    step = np.clip(gain * (target - env.arm.tcp_pos), -0.04, 0.04)
    dq = env.arm.ik_step(env.arm.tcp_pos + step)
    action = np.empty(8)
    action[:7] = np.clip(dq / ctrl.dq_max, -1.0, 1.0)
    action[7] = grip
    return action


def expert_action(env: Any, noise: float = 0.0, hesitation: float = 0.0) -> np.ndarray:
    """The scripted expert's next action for ``env`` (gymnasium wrappers are unwrapped)."""
    base = getattr(env, "unwrapped", env)
    if not hasattr(base, "expert_action"):
        raise TypeError(f"{type(base).__name__} has no scripted expert")
    return base.expert_action(noise=noise, hesitation=hesitation)


def evaluate_expert(
    env_id: str, episodes: int = 50, noise: float = 0.0, hesitation: float = 0.0, seed: int = 0, **kwargs: Any
) -> float:
    """Success rate of the scripted expert over ``episodes`` seeded episodes (seeds seed..seed+n-1)."""
    import gymnasium as gym

    import robot_rl  # noqa: F401  (registers the ids)

    env = gym.make(env_id, **kwargs)
    wins = 0
    for ep in range(episodes):
        env.reset(seed=seed + ep)
        success = False
        while True:
            _, _, terminated, truncated, info = env.step(expert_action(env, noise, hesitation))
            success = success or info["is_success"]
            if terminated or truncated:
                break
        wins += success
    env.close()
    return wins / episodes


def main(argv: list[str] | None = None) -> None:
    """``python -m robot_rl.sim.expert``: print the expert success rate per built-in task."""
    import argparse
    import time

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--noise", type=float, default=0.0)
    p.add_argument("--hesitation", type=float, default=0.0)
    p.add_argument("--randomization", default="none")
    p.add_argument("--control", default="ee_delta")
    p.add_argument("--tasks", nargs="+", default=["Reach", "Push", "Lift", "PegInsert"])
    args = p.parse_args(argv)
    for task in args.tasks:
        t0 = time.perf_counter()
        rate = evaluate_expert(
            f"robot_rl/{task}-v0",
            args.episodes,
            args.noise,
            args.hesitation,
            randomization=args.randomization,
            control=args.control,
        )
        took = time.perf_counter() - t0
        print(f"{task:10s} success {rate:6.1%} over {args.episodes} episodes ({took:.1f} s)")


if __name__ == "__main__":
    main()
