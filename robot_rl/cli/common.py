"""Hydra plumbing shared by the entry points: schema registration, override checks, error reporting.

Hydra lives only in ``robot_rl/cli``. Every group option (``configs/<group>/<name>.yaml``) extends a
dataclass schema stored in the ConfigStore under ``schema/<group>/<name>``; YAML only overrides.
The composed config is converted with ``OmegaConf.to_object`` into frozen dataclasses before any
library code sees it. User errors print one line (``error: ...``) and exit with status 2.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

GROUPS = ("task", "policy", "algo", "reward", "logger", "experiment")


def config_dir() -> Path:
    import robot_rl.configs

    return Path(robot_rl.configs.__file__).parent


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


def register_schemas() -> None:
    """Store every dataclass schema in hydra's ConfigStore (idempotent)."""
    from hydra.core.config_store import ConfigStore

    from robot_rl.algos import ALGOS
    from robot_rl.config import LoggerConfig, TaskConfig, TrainConfig
    from robot_rl.policies import POLICIES
    from robot_rl.rewards import REWARDS
    from robot_rl.teleop import TELEOP

    cs = ConfigStore.instance()
    cs.store(name="schema_train", node=_writable(TrainConfig))
    cs.store(group="schema/task", name="task", node=_writable(TaskConfig))
    cs.store(group="schema/logger", name="logger", node=_writable(LoggerConfig))
    for group, registry in (("policy", POLICIES), ("algo", ALGOS), ("reward", REWARDS), ("teleop", TELEOP)):
        for name in registry.names():
            cs.store(group=f"schema/{group}", name=name, node=_writable(registry.config_cls(name)))


def _writable(cls: type) -> Any:
    """Our config dataclasses are frozen; OmegaConf would make their nodes read-only, which forbids
    YAML and command-line overrides. The node keeps its type, so ``to_object`` still builds the
    frozen dataclass (and runs its validation)."""
    from omegaconf import OmegaConf

    node = OmegaConf.structured(cls)
    _clear_readonly(node)
    return node


def _clear_readonly(node: Any) -> None:
    from omegaconf import DictConfig, ListConfig

    node._set_flag("readonly", None)
    if isinstance(node, (DictConfig, ListConfig)) and not node._is_none() and not node._is_missing():
        keys = range(len(node)) if isinstance(node, ListConfig) else list(node.keys())
        for key in keys:
            _clear_readonly(node._get_node(key))


def check_overrides(argv: list[str]) -> None:
    """Fail early, in one line, on ``group=<unknown option>`` (hydra's own message is a traceback)."""
    for arg in argv:
        if "=" not in arg or arg.startswith(("-", "+", "~", "hydra.")):
            continue
        key, value = arg.split("=", 1)
        if key in GROUPS and value not in ("null", "") and "," not in value:
            options = group_options(key)
            if value not in options:
                raise UserError(f"unknown {key} {value!r}; valid options: {', '.join(options)}")


class UserError(Exception):
    """Bad input from the command line; printed as one line."""


def user_errors() -> tuple[type[BaseException], ...]:
    from omegaconf.errors import OmegaConfBaseException

    from robot_rl.core.errors import BundleError, ConfigError, DataError
    from robot_rl.core.registry import UnknownNameError

    return (
        UserError,
        ConfigError,
        BundleError,
        DataError,
        UnknownNameError,
        OmegaConfBaseException,
        FileNotFoundError,
    )


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def to_dataclass(cfg: Any) -> Any:
    """DictConfig -> frozen dataclasses (the only place hydra's types meet library code)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.to_object(cfg)
    except OmegaConfBaseException as err:
        # __post_init__ validation errors arrive wrapped; show the original one-line message
        cause = err.__cause__ or err
        raise UserError(str(cause).splitlines()[0]) from err


def hydra_entry(
    config_name: str, register: Callable[[], None] | None = None
) -> Callable[[Callable[[Any], Any]], Callable[[], None]]:
    """Decorator turning ``fn(cfg: DictConfig)`` into a console-script ``main()`` with clean errors."""

    def decorator(fn: Callable[[Any], Any]) -> Callable[[], None]:
        @functools.wraps(fn)
        def main() -> None:
            import hydra

            register_schemas()
            if register is not None:
                register()
            try:
                check_overrides(sys.argv[1:])
            except UserError as err:
                fail(str(err))

            @hydra.main(version_base=None, config_path=str(config_dir()), config_name=config_name)
            def task(cfg: Any) -> None:
                try:
                    fn(cfg)
                except user_errors() as err:
                    fail(str(err).splitlines()[0] if str(err) else type(err).__name__)

            task()

        return main

    return decorator


def compose(config_name: str, overrides: dict[str, Any]) -> Any:
    """The frozen dataclass config that ``<entry point> key=value ...`` would build (no hydra run dir,
    no logging setup): used by benchmarks and tests that drive the library directly."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        # "~group" (any value) deletes a group from the defaults, as on the command line
        argv = [k if k.startswith("~") else f"{k}={v}" for k, v in overrides.items()]
        cfg = hydra_compose(config_name, overrides=argv)
    return to_dataclass(cfg)
