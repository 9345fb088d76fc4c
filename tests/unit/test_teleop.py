"""Teleop devices (fake input events), the simulated human, the intervention wrapper, and how the
trainer stores interventions (both buffers, re-record discards)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pytest

from robot_rl.core.replay import ReplayBuffer
from robot_rl.envs.point_reach import PointReachEnv
from robot_rl.envs.wrappers import InterventionWrapper
from robot_rl.teleop import TELEOP
from robot_rl.teleop.base import TeleopCommand, TeleopConfig, TeleopDevice, deadzone, ee_action
from robot_rl.teleop.gamepad import Gamepad, GamepadConfig
from robot_rl.teleop.keyboard import Keyboard, KeyboardConfig
from robot_rl.teleop.simulated import SimulatedHuman, SimulatedHumanConfig, random_burst_probability
from robot_rl.teleop.spacemouse import SpaceMouse, SpaceMouseConfig

pytestmark = pytest.mark.unit
OBS = {"state": np.zeros(3, np.float32)}
POLICY = np.full(4, 0.3, np.float32)


# --- pure mappings ---


def test_deadzone_and_ee_action_by_hand():
    # threshold 0.2: 0.1 -> 0; 0.6 -> (0.6 - 0.2) / 0.8 = 0.5; -1 -> -1
    np.testing.assert_allclose(deadzone(np.array([0.1, 0.6, -1.0]), 0.2), [0.0, 0.5, -1.0])
    np.testing.assert_allclose(ee_action([1.0, -0.5, 3.0], 1.0, gain=0.5), [0.5, -0.25, 1.0, 1.0])
    # non-finite device input: no motion, gripper open, never NaN
    np.testing.assert_array_equal(ee_action([np.nan, np.inf, -np.inf], np.nan), [0.0, 1.0, -1.0, -1.0])
    with pytest.raises(ValueError, match="unknown teleop events"):
        TeleopCommand(np.zeros(4), events=frozenset({"oops"}))


# --- devices with fake input ---


class FakeKeys:
    def __init__(self):
        self.down, self.pressed = set(), []

    def held(self):
        return set(self.down)

    def presses(self):
        out, self.pressed = self.pressed, []
        return out


def test_keyboard_mapping_takeover_gripper_and_events():
    keys = FakeKeys()
    kb = Keyboard(KeyboardConfig(speed=0.5), source=keys)
    idle = kb.command(OBS, POLICY)
    assert not idle.takeover and not idle.events
    keys.down = {"up", "left", "shift"}  # forward, left, up at half speed
    cmd = kb.command(OBS, POLICY)
    assert cmd.takeover
    np.testing.assert_allclose(cmd.action, [0.5, 0.5, 0.5, -1.0])
    keys.down, keys.pressed = set(), ["c"]  # a tap closes the gripper, and the tap is a takeover step
    cmd = kb.command(OBS, POLICY)
    assert cmd.takeover and cmd.action[3] == 1.0
    keys.pressed = ["space"]  # standing takeover: hold still in control, gripper stays closed
    cmd = kb.command(OBS, POLICY)
    assert cmd.takeover and np.allclose(cmd.action, [0, 0, 0, 1.0])
    assert kb.command(OBS, POLICY).takeover  # still standing
    keys.pressed = ["space", "s"]  # hand back, and label the episode a success
    cmd = kb.command(OBS, POLICY)
    assert not cmd.takeover and cmd.events == {"success"}
    keys.pressed = ["r", "q"]
    assert kb.command(OBS, POLICY).events == {"rerecord", "end"}


class FakePad:
    def __init__(self):
        self.axes = dict.fromkeys(("lx", "ly", "rx", "ry", "lt", "rt"), 0.0)
        self.buttons = dict.fromkeys(("a", "b", "x", "y", "rb"), False)

    def read(self):
        return dict(self.axes), dict(self.buttons)


def test_gamepad_mapping_toggle_on_press_edges():
    pad = FakePad()
    gp = Gamepad(GamepadConfig(deadzone=0.2), source=pad)
    pad.axes.update(ly=0.6, lx=-1.0, ry=0.1)  # stick up-left; right stick inside the dead zone
    cmd = gp.command(OBS, POLICY)
    assert not cmd.takeover  # moving a stick alone does not take over: RB does
    np.testing.assert_allclose(cmd.action, [0.5, 1.0, 0.0, -1.0])
    pad.buttons["rb"] = True
    assert gp.command(OBS, POLICY).takeover
    assert gp.command(OBS, POLICY).takeover  # RB held: no second toggle
    pad.buttons["rb"] = False
    pad.axes["lt"] = 0.9  # close
    cmd = gp.command(OBS, POLICY)
    assert cmd.takeover and cmd.action[3] == 1.0
    pad.buttons.update(rb=True, y=True)  # hand back + success, once per press
    cmd = gp.command(OBS, POLICY)
    assert not cmd.takeover and cmd.events == {"success"}
    assert gp.command(OBS, POLICY).events == frozenset()


class FakeMouse:
    def __init__(self):
        self.axes, self.buttons = np.zeros(6), (False, False)

    def read(self):
        return self.axes, self.buttons


def test_spacemouse_takes_over_on_deflection_or_button():
    mouse = FakeMouse()
    sm = SpaceMouse(SpaceMouseConfig(deadzone=0.0), source=mouse)
    assert not sm.command(OBS, POLICY).takeover
    mouse.axes = np.array([5e-4, 0, 0, 0, 0, 0])  # below HIL-SERL's 1e-3 norm
    assert not sm.command(OBS, POLICY).takeover
    mouse.axes = np.array([0.4, -0.2, 0.1, 0.3, 0, 0])
    cmd = sm.command(OBS, POLICY)
    assert cmd.takeover
    np.testing.assert_allclose(cmd.action, [0.4, -0.2, 0.1, -1.0])
    mouse.axes, mouse.buttons = np.zeros(6), (True, False)
    cmd = sm.command(OBS, POLICY)
    assert cmd.takeover and cmd.action[3] == 1.0
    mouse.axes, mouse.buttons = np.array([np.nan] * 6), (False, False)
    cmd = sm.command(OBS, POLICY)
    assert np.all(np.isfinite(cmd.action))


# --- the simulated human ---


def test_random_burst_probability_decays_linearly_to_zero():
    assert random_burst_probability(0, 0.5, 100) == 0.5
    assert random_burst_probability(50, 0.5, 100) == 0.25
    assert random_burst_probability(100, 0.5, 100) == 0.0
    assert random_burst_probability(400, 0.5, 100) == 0.0


def _human(**kw) -> tuple[SimulatedHuman, PointReachEnv]:
    env = PointReachEnv(horizon=200, terminate_on_success=True)
    env.reset(seed=0)
    human = SimulatedHuman(SimulatedHumanConfig(start_probability=0.0, **kw))
    human.reset(env, episode=0)
    return human, env


def test_simulated_human_takes_over_a_stalled_policy_in_one_burst_of_expert_actions():
    human, env = _human(no_progress_steps=10, burst_min=12, burst_max=12, cooldown_steps=5)
    takeovers = []
    for _ in range(40):
        cmd = human.command(OBS, np.zeros(3, np.float32))  # the policy does nothing
        if cmd.takeover:
            np.testing.assert_allclose(cmd.action, env.expert_action())
        takeovers.append(cmd.takeover)
        env.step(cmd.action if cmd.takeover else np.zeros(3, np.float32))
    # steps 0..9 make no progress beyond the first reading -> the burst starts at step 10, 12 long
    first = takeovers.index(True)
    assert first == 10 and takeovers[first : first + 12] == [True] * 12
    assert takeovers[first + 12] is False


def test_simulated_human_leaves_a_progressing_policy_alone():
    human, env = _human(no_progress_steps=5)
    for t in range(200):
        cmd = human.command(OBS, env.expert_action())
        assert not cmd.takeover, t
        _, _, terminated, _, _ = env.step(env.expert_action())
        if terminated:
            break
    assert terminated


# --- the wrapper ---


@dataclass(frozen=True)
class ScriptConfig(TeleopConfig):
    name: str = "scripted_test"
    takeover_steps: tuple[int, ...] = ()
    event_step: int = -1  # the step at which `event` is emitted
    event: str = "success"


class Scripted(TeleopDevice):
    """Takes over at the given steps with action 0.5; emits ``event`` at ``event_step`` of episode 0."""

    def __init__(self, cfg: ScriptConfig):
        self.cfg = cfg

    def reset(self, env, episode):
        self.t, self.episode = 0, episode

    def command(self, obs, policy_action):
        t, self.t = self.t, self.t + 1
        events = frozenset({self.cfg.event} if (self.episode, t) == (0, self.cfg.event_step) else ())
        return TeleopCommand(np.full_like(policy_action, 0.5), t in self.cfg.takeover_steps, events)


def test_wrapper_executes_the_device_action_and_numbers_the_bursts():
    env = InterventionWrapper(PointReachEnv(horizon=8), Scripted(ScriptConfig(takeover_steps=(1, 2, 5))))
    env.reset(seed=0)
    infos = [env.step(np.full(3, -0.1, np.float32))[4] for _ in range(8)]
    assert [i["is_intervention"] for i in infos] == [False, True, True, False, False, True, False, False]
    assert [i["intervention_id"] for i in infos] == [-1, 0, 0, -1, -1, 1, -1, -1]
    np.testing.assert_allclose(infos[1]["executed_action"], 0.5)
    np.testing.assert_allclose(infos[0]["executed_action"], -0.1)
    assert infos[-1]["interventions"] == 2 and infos[-1]["intervention_steps"] == 3


def test_wrapper_events_end_the_episode():
    env = InterventionWrapper(PointReachEnv(horizon=50), Scripted(ScriptConfig(event_step=2)))
    env.reset(seed=0)
    results = [env.step(np.zeros(3, np.float32)) for _ in range(3)]
    _, _, terminated, truncated, info = results[-1]
    assert truncated and not terminated and info["is_success"] and info["teleop_events"] == ["success"]


# --- replay: discarding a re-recorded episode ---


def _add(buf: ReplayBuffer, n: int, start: float, close: bool) -> None:
    for t in range(n):
        s = {"state": np.array([start + t], np.float32)}
        s2 = {"state": np.array([start + t + 1], np.float32)}
        buf.add(s, np.zeros(1), 0.0, s2, False, close and t == n - 1)


def test_discard_open_episode_restores_the_buffer():
    buf = ReplayBuffer(10, {"state": (1,)}, n_step=1)
    _add(buf, 3, 0.0, close=True)  # episode A, closed
    _add(buf, 2, 100.0, close=False)  # episode B, open
    assert len(buf) == 5 and buf.discard_open_episode() == 2
    assert len(buf) == 3 and not buf.episode_open and buf.num_sampleable == 3
    states = buf.sample(64, np.random.default_rng(0))["obs/state"].numpy().ravel()
    assert set(states) == {0.0, 1.0, 2.0}
    _add(buf, 2, 200.0, close=True)  # the freed slots are reused
    assert len(buf) == 5 and buf.num_sampleable == 5 and buf.discard_open_episode() == 0


# --- the trainer: both buffers, online only, re-record, algorithms ---

HIL_RUN = {
    "algo": "rlpd",
    "teleop": "simulated",
    "train.env_steps": 240,
    "train.eval_every": 100_000,
    "algo.warmup_env_steps": 40,
    "algo.batch_size": 16,
    "algo.utd": 1,
    "algo.num_critics": 2,
    "teleop.no_progress_steps": 3,
}


@pytest.mark.smoke
@pytest.mark.parametrize("into_prior", [True, False])
def test_trainer_stores_interventions_in_both_buffers(tmp_path, into_prior):
    from robot_rl.trainer import Trainer
    from tests.conftest import make_train_config

    cfg = make_train_config(tmp_path / "run", **{**HIL_RUN, "teleop.into_prior": str(into_prior).lower()})
    trainer = Trainer(cfg)
    trainer.run()
    online = trainer.online_buffer.state_dict()["fields"]
    prior = trainer.prior_buffer.state_dict()["fields"]
    n_interventions = int(online["is_intervention"].sum())
    assert n_interventions > 0 and len(trainer.online_buffer) == 240  # every step, human or policy
    demo_steps = int(prior["is_demo"].sum())
    assert demo_steps > 0 and not prior["is_intervention"][prior["is_demo"]].any()
    # both buffers: the prior holds the demos plus exactly the intervention steps, flagged
    assert int(prior["is_intervention"].sum()) == (n_interventions if into_prior else 0)
    assert len(trainer.prior_buffer) == demo_steps + (n_interventions if into_prior else 0)
    rows = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert "train/intervention_rate" in rows and "train/interventions" in rows


@pytest.mark.smoke
def test_rerecord_discards_the_episode(tmp_path, monkeypatch):
    from robot_rl.core.registry import Entry
    from robot_rl.trainer import Trainer
    from tests.conftest import make_train_config

    # registered for this test only (the registry contract tests expect a YAML per device)
    monkeypatch.setitem(TELEOP._entries, "scripted_test", Entry("scripted_test", Scripted, ScriptConfig))
    cfg = make_train_config(tmp_path / "run", **{**HIL_RUN, "teleop": "simulated", "train.env_steps": 30})
    # episode 1 (PointReach horizon 50): takeover at steps 0-4, re-record at step 9 -> nothing kept
    cfg = dataclasses.replace(
        cfg, teleop=ScriptConfig(takeover_steps=(0, 1, 2, 3, 4), event_step=9, event="rerecord")
    )
    trainer = Trainer(cfg)
    trainer.run()
    online = trainer.online_buffer.state_dict()["fields"]
    # 30 env steps: the first episode's 10 steps were discarded, the second one's 20 kept (cut by the budget)
    assert trainer.env_step == 30 and len(trainer.online_buffer) == 20
    assert int(online["is_intervention"].sum()) == 5  # the second episode's own burst only
    assert int(trainer.prior_buffer.state_dict()["fields"]["is_intervention"].sum()) == 5
    assert "train/rerecorded_steps" in (tmp_path / "run" / "metrics.jsonl").read_text()


def test_teleop_with_a_residual_agent_is_refused(tmp_path):
    from robot_rl.core.errors import ConfigError
    from robot_rl.trainer import Trainer
    from tests.conftest import make_train_config

    cfg = make_train_config(tmp_path / "run", algo="residual", teleop="simulated")
    with pytest.raises(ConfigError, match="algo=residual acts in another space. Use algo="):
        Trainer(cfg)
