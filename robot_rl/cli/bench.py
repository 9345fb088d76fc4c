"""``robot-rl-bench <name> [args]``: run a benchmark from ``benchmarks/`` (installed as
``robot_rl.benchmarks``). Each benchmark module exposes ``run(argv) -> int`` with its own ``--help``;
results go to ``docs/benchmarks.md`` by hand, with the command that printed them.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys


def available() -> list[str]:
    import robot_rl.benchmarks

    return sorted(
        m.name for m in pkgutil.iter_modules(robot_rl.benchmarks.__path__) if not m.name.startswith("_")
    )


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    names = available()
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: robot-rl-bench <benchmark> [options]  (robot-rl-bench <benchmark> --help: its options)")
        print("benchmarks: " + ", ".join(names))
        sys.exit(0 if argv else 2)
    name, rest = argv[0], argv[1:]
    if name not in names:
        print(f"error: unknown benchmark {name!r}; valid: {', '.join(names)}", file=sys.stderr)
        sys.exit(2)
    module = importlib.import_module(f"robot_rl.benchmarks.{name}")
    sys.exit(module.run(rest))


if __name__ == "__main__":
    main()
