"""Task registry and gymnasium id registration (string entry points: nothing heavy is imported).

``TASKS`` maps a task name (= config option ``task=<name>`` = module file) to the environment
class; the built-in MuJoCo tasks live in ``robot_rl.sim.tasks`` and need the ``sim`` extra.
``point_reach`` is a pure-numpy point mass used by fast tests of the training machinery.
"""

from __future__ import annotations

from robot_rl.core.registry import Registry

# task name -> gymnasium id
ENV_IDS: dict[str, str] = {
    "point_reach": "robot_rl/PointReach-v0",
    "reach": "robot_rl/Reach-v0",
    "push": "robot_rl/Push-v0",
    "lift": "robot_rl/Lift-v0",
    "peg_insert": "robot_rl/PegInsert-v0",
}

# gymnasium id -> "module:Class" entry point
_ENTRY_POINTS: dict[str, str] = {
    "robot_rl/PointReach-v0": "robot_rl.envs.point_reach:PointReachEnv",
    "robot_rl/Reach-v0": "robot_rl.sim.tasks.reach:ReachEnv",
    "robot_rl/Push-v0": "robot_rl.sim.tasks.push:PushEnv",
    "robot_rl/Lift-v0": "robot_rl.sim.tasks.lift:LiftEnv",
    "robot_rl/PegInsert-v0": "robot_rl.sim.tasks.peg_insert:PegInsertEnv",
}
ROBOSUITE_TASKS = ("Lift", "Can", "Square")

TASKS: Registry[type] = Registry(
    "task", known={name: _ENTRY_POINTS[env_id].split(":")[0] for name, env_id in ENV_IDS.items()}
)


def register_envs() -> None:
    """Register every robot_rl gymnasium id (idempotent). ``import robot_rl`` calls it; without that
    import, ``gymnasium.make("robot_rl.envs:robot_rl/Lift-v0")`` imports this module first."""
    import gymnasium

    for env_id, entry_point in _ENTRY_POINTS.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point=entry_point, disable_env_checker=True)
    for task in ROBOSUITE_TASKS:
        env_id = f"robot_rl/robosuite-{task}-v0"
        if env_id not in gymnasium.registry:
            gymnasium.register(
                id=env_id,
                entry_point="robot_rl.sim.robosuite_adapter:RobosuiteEnv",
                kwargs={"task": task},
                disable_env_checker=True,
            )


def expert_action(env, noise: float = 0.0, hesitation: float = 0.0):
    """The scripted expert's next action for ``env`` (any wrapper around a robot_rl task)."""
    return env.unwrapped.expert_action(noise=noise, hesitation=hesitation)
