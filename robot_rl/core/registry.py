"""Explicit name -> component registries (algorithms, policies, tasks, rewards, teleop devices).

The registry name equals the module file name and the hydra config option name
(``robot_rl/algos/residual.py`` <-> ``"residual"`` <-> ``configs/algo/residual.yaml``).
Modules register themselves on import; ``Registry.get`` imports the module lazily, so looking up a
name never requires importing every optional dependency of every other entry.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A name that is not registered; the message lists the valid ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    target: T
    config_cls: type | None


class Registry(Generic[T]):
    """A plain name -> (object, config dataclass) table.

    Args:
        kind: what the registry holds, used in error messages ("algorithm", "policy", ...).
        known: name -> dotted module that registers it on import. Lets ``names()`` list entries
            before their module is imported and keeps lookups lazy (a name's optional
            dependencies are imported only when that name is used).
    """

    def __init__(self, kind: str, known: Mapping[str, str] | None = None):
        self.kind = kind
        self._known = dict(known or {})
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, config_cls: type | None = None) -> Callable[[T], T]:
        """Decorator: ``@ALGOS.register("sac", SACConfig)`` on a class or factory."""

        def decorator(target: T) -> T:
            existing = self._entries.get(name)
            if existing is not None and existing.target is not target:
                raise ValueError(f"{self.kind} {name!r} is already registered to {existing.target!r}")
            self._entries[name] = Entry(name, target, config_cls)
            return target

        return decorator

    def names(self) -> list[str]:
        return sorted(set(self._known) | set(self._entries))

    def _load(self, name: str) -> Entry[T]:
        if name not in self._entries and name in self._known:
            importlib.import_module(self._known[name])
        if name not in self._entries:
            raise UnknownNameError(f"unknown {self.kind} {name!r}; valid: {', '.join(self.names())}")
        return self._entries[name]

    def get(self, name: str) -> T:
        return self._load(name).target

    def config_cls(self, name: str) -> type | None:
        return self._load(name).config_cls

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._known

    def build(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self.get(name)(*args, **kwargs)  # type: ignore[operator]
