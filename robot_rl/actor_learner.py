"""Actor / learner split (``train.role=actor|learner``; docs/hil.md): the actor acts — on a robot, or
in simulation with a teleop device — and streams finished episodes to the learner, which trains and
sends acting weights back every ``train.weights_every`` updates (HIL-SERL's asynchronous design,
docs/hil.md). The link (:mod:`robot_rl.core.link`) delivers every episode exactly once into the
learner's checkpointed state; the learner may die and restart (``resume=true``) while the actor keeps
acting on its last weights.

Both processes are started from the same config (``robot-rl-train ... train.role=learner`` and
``... train.role=actor hydra.run.dir=<its own dir>``). The learner runs the usual pipeline (demos,
imitation base, online phase), but its env steps are the actor's: each received episode is inserted
(interventions into both buffers, as in the one-process loop) and followed by ``utd`` updates per
step. The actor runs ``train.env_steps`` steps, then waits for the learner's final acknowledgement.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.core import seeds
from robot_rl.core.link import ActorLink, LearnerLink, Outbox
from robot_rl.core.logging import MetricLogger
from robot_rl.core.replay import MixedSampler
from robot_rl.core.serialization import tree_to_bytes, write_atomic_bytes
from robot_rl.rewards.deferred import find_deferred_reward, pop_judged, relabel_terminal

STEP_KEYS = ("action", "reward", "terminated", "truncated", "is_intervention", "intervention_id")


def episode_message(steps: list[dict[str, Any]], stats: dict[str, float]) -> bytes:
    """One finished episode as link bytes: stacked per-step arrays plus its statistics."""
    obs_keys = [k for k in steps[0]["obs"] if not k.startswith("pixels/")]
    tree = {
        "obs": {k: np.stack([s["obs"][k] for s in steps]) for k in obs_keys},
        "next_obs": {k: np.stack([s["next_obs"][k] for s in steps]) for k in obs_keys},
        **{k: np.asarray([s[k] for s in steps]) for k in STEP_KEYS},
        "stats": stats,
    }
    tree["action"] = tree["action"].astype(np.float32)
    return tree_to_bytes(tree)


class VerdictSender:
    """The actor's side of deferred rewards (``reward.deferred=true``, robot_rl/rewards/deferred.py):
    a finished episode waits here for its verdict while the actor goes on acting, and is then put in
    the outbox relabelled (:func:`relabel_terminal`: reward 1 on the last step of a judged success,
    which becomes terminal). An episode with a flagged verdict is never sent (``flagged``). Without a
    deferred reward (``wrapper`` None) episodes go out as they finish."""

    def __init__(self, wrapper: Any, outbox: Any):
        self.wrapper, self.outbox = wrapper, outbox
        if wrapper is not None:
            wrapper.blocking = False  # the actor never waits for the model
        self.held: dict[str, tuple[list[dict[str, Any]], dict[str, float]]] = {}
        self.flagged = 0

    def finished(self, steps: list[dict[str, Any]], stats: dict[str, float], info: dict[str, Any]) -> None:
        """An episode ended (``info``: its last step's): send it, or hold it until judged."""
        if self.wrapper is None or "reward_request_id" not in info:
            self.outbox.put(episode_message(steps, stats))
        else:
            self.held[str(info["reward_request_id"])] = (steps, stats)

    def poll(self) -> None:
        """Send the held episodes whose verdict arrived (never blocks)."""
        if self.wrapper is None:
            return
        for (steps, stats), result in pop_judged(self.held, self.wrapper.poll()):
            if not result.usable:
                self.flagged += 1
                continue
            rewards, terminated, truncated = relabel_terminal(len(steps), steps[-1]["terminated"], result)
            steps = [
                {**step, "reward": float(r), "terminated": bool(te), "truncated": bool(tr)}
                for step, r, te, tr in zip(steps, rewards, terminated, truncated, strict=True)
            ]
            stats = {**stats, "return": float(rewards.sum()), "judged_success": float(result.success)}
            self.outbox.put(episode_message(steps, stats))

    def drain(self, timeout_s: float) -> None:
        """At the end: wait (bounded) for the verdicts still pending and send those episodes."""
        deadline = time.monotonic() + timeout_s
        while self.held and time.monotonic() < deadline:
            self.poll()
            time.sleep(0.01)


def learner_phase(trainer: Any, logger: MetricLogger) -> bool:
    """The learner's online phase: episodes from the link instead of an env loop. Returns True when
    ``train.env_steps`` steps were received and learned from."""
    cfg, acfg, algo = trainer.cfg, trainer.cfg.algo, trainer.algo
    trainer.policy.requires_grad_(False).eval()
    if trainer.online_buffer is None:
        trainer._build_buffers()
    sampler = MixedSampler(trainer.online_buffer, trainer.prior_buffer, acfg.prior_fraction)
    link = LearnerLink(cfg.train.address, cfg.train.authkey, durable=trainer.received_seq)
    link.publish_weights(algo.acting_state_dict())
    timing = (time.perf_counter(), trainer.env_step, algo.updates)
    published_at = algo.updates
    try:
        while trainer.env_step < cfg.train.env_steps:
            if (
                not trainer.history
                or trainer.env_step - trainer.history[-1]["env_step"] >= cfg.train.eval_every
            ):
                trainer._online_eval(logger)
            message = link.next_episode(timeout=0.2)
            if message is None:
                continue
            seq, ep = message
            if seq <= trainer.received_seq:
                continue  # a resend of an episode already in this learner's state
            if seq != trainer.received_seq + 1:
                raise RuntimeError(f"episode {seq} arrived after {trainer.received_seq}: the link lost order")
            trainer.received_seq = seq
            n = len(ep["reward"])
            bursts: list[list[tuple]] = []
            for t in range(n):
                obs = {k: v[t] for k, v in ep["obs"].items()}
                nxt = {k: v[t] for k, v in ep["next_obs"].items()}
                info = {
                    "is_intervention": bool(ep["is_intervention"][t]),
                    "intervention_id": ep["intervention_id"][t],
                }
                trainer._store_step(
                    obs, ep["action"][t], float(ep["reward"][t]), nxt,
                    bool(ep["terminated"][t]), bool(ep["truncated"][t]), info, bursts,
                )  # fmt: skip
            if not (ep["terminated"][-1] or ep["truncated"][-1]):
                trainer.online_buffer.end_episode()  # cut by the actor's budget: a time limit
            for _ in range(n):
                trainer.env_step += 1
                trainer._learn_after_env_step(sampler, logger, timing)
                if algo.updates - published_at >= cfg.train.weights_every:
                    link.publish_weights(algo.acting_state_dict())
                    published_at = algo.updates
            stats = dict(ep["stats"])
            info = {k: stats[k] for k in ("interventions", "intervention_steps") if k in stats}
            trainer._end_episode(logger, stats["return"], bool(stats["success"]), info, bursts, n)
            logger.log(
                {"link/received": float(link.received), "link/episode_seq": float(seq)}, trainer.env_step
            )
            if trainer.env_step // cfg.train.checkpoint_every > trainer._last_checkpoint_bucket:
                trainer._last_checkpoint_bucket = trainer.env_step // cfg.train.checkpoint_every
                trainer.save_checkpoint()
                link.ack(trainer.received_seq)  # durable now: the actor may forget it
        trainer.save_checkpoint()
        link.ack(trainer.received_seq)
        link.publish_weights(algo.acting_state_dict())
        time.sleep(0.5)  # let the last ack reach the actor
        return True
    finally:
        link.close()


def run_actor(cfg: Any) -> dict[str, Any]:
    """The actor process: wait for the learner's first weights, then act with the latest ones (the
    algorithm's warm-up action during ``algo.warmup_env_steps``), with the teleop device if one is set,
    and stream every finished episode (re-recorded ones are dropped here). Writes
    ``actor_status.json``."""
    from robot_rl.envs.wrappers import InterventionWrapper
    from robot_rl.teleop import TELEOP
    from robot_rl.trainer import Trainer

    trainer = Trainer(cfg)  # builds the algorithm (for acting) and the environments; trains nothing
    algo, run_dir = trainer.algo, Path(cfg.run_dir)
    outbox = Outbox(run_dir / "spool", cfg.train.actor_queue)
    link = ActorLink(cfg.train.address, cfg.train.authkey, outbox).start()
    env = trainer._make_online_env()
    sender = VerdictSender(find_deferred_reward(env), outbox)
    if cfg.teleop is not None:
        env = InterventionWrapper(env, TELEOP.build(cfg.teleop.name, cfg.teleop))
    logger = MetricLogger(run_dir, wandb_mode="disabled", config=None)
    rng = np.random.default_rng(cfg.seed + 7919)
    env_step, episode, has_weights, rerecorded = 0, 0, False, 0
    next_tick = time.monotonic()

    def status(done: bool) -> dict[str, Any]:
        out = {
            "env_steps": env_step,
            "episodes_sent": outbox.next_seq,
            "rerecorded": rerecorded,
            "unacknowledged": len(outbox.pending()),
            "spilled": outbox.spilled,
            "sent": link.sent,
            "resent": link.resent,
            "connections": link.connections,
            "weights_received": has_weights,
            "awaiting_verdict": len(sender.held),
            "flagged_verdicts": sender.flagged,
            "done": done,
        }
        write_atomic_bytes(run_dir / "actor_status.json", json.dumps(out).encode())
        return out

    try:
        # start once the learner is there (its first weights); later outages do not stop the actor
        waited = time.monotonic()
        while (weights := link.latest_weights()) is None:
            if time.monotonic() - waited > 10.0:
                print(f"actor: waiting for the learner at {cfg.train.address}", flush=True)
                waited = time.monotonic()
            time.sleep(0.1)
        algo.load_acting_state_dict(weights)
        has_weights = True
        next_tick = time.monotonic()
        while env_step < cfg.train.env_steps:
            obs, _ = env.reset(seed=seeds.actor_seed(cfg.seed, episode))
            steps: list[dict[str, Any]] = []
            ep_return, success, done, info = 0.0, False, False, {}
            while not done and env_step < cfg.train.env_steps:
                weights = link.latest_weights()
                if weights is not None:
                    algo.load_acting_state_dict(weights)
                if env_step >= cfg.algo.warmup_env_steps:
                    action = algo.act(obs, deterministic=False)
                else:
                    action = algo.warmup_action(obs, rng)
                if cfg.train.actor_hz > 0:  # a robot's control rate
                    next_tick += 1.0 / cfg.train.actor_hz
                    time.sleep(max(next_tick - time.monotonic(), 0.0))
                next_obs, reward, terminated, truncated, info = env.step(action)
                env_step += 1
                if info.get("rerecord", False):
                    rerecorded += 1
                    steps = []
                    break
                steps.append(
                    {
                        "obs": obs,
                        "next_obs": next_obs,
                        "action": np.asarray(info.get("executed_action", action), np.float32),
                        "reward": float(reward),
                        "terminated": bool(terminated),
                        "truncated": bool(truncated),
                        "is_intervention": bool(info.get("is_intervention", False)),
                        "intervention_id": int(info.get("intervention_id", -1)),
                    }
                )
                ep_return += float(reward)
                success = success or bool(info.get("is_success", False))
                obs, done = next_obs, terminated or truncated
                sender.poll()
            episode += 1
            # an episode cut by the budget is sent as a time limit, unless it awaits a verdict it
            # will never get (deferred rewards: only judged episodes are learned from)
            if steps and (done or sender.wrapper is None):
                stats = {"return": ep_return, "success": float(success)}
                if "interventions" in info:
                    stats.update(
                        interventions=info["interventions"], intervention_steps=info["intervention_steps"]
                    )
                sender.finished(steps, stats, info)
            logger.log({f"link/{k}": float(v) for k, v in status(False).items()}, step=env_step)
        sender.drain(60.0)
        deadline = time.monotonic() + 600.0  # the learner acknowledges after its final checkpoint
        while outbox.pending() and time.monotonic() < deadline:
            time.sleep(0.2)
        return status(True)
    finally:
        link.stop()
        env.close()
        logger.close()
