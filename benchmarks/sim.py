"""Simulation-speed benchmark: env steps per second of our tasks vs robosuite and gymnasium-robotics.

``robot-rl-bench sim [--steps N] [--tasks reach,push,...] [--no-peers] [--out result.json] [--markdown]``

What is measured (single process, one env at a time):

- each of our tasks (``robot_rl/Reach-v0``, ``Push-v0``, ``Lift-v0``, ``PegInsert-v0``) with its
  defaults (state observations, default control rate); a task whose module cannot be imported yet
  is skipped with a note;
- peers, in the same run: robosuite ``Lift`` (Panda, default OSC_POSE controller, 20 Hz, no
  renderer, no camera observations), raw (``robosuite.make`` + ``env.step``) and through our
  adapter (``robot_rl/robosuite-Lift-v0``); gymnasium-robotics ``FetchPickAndPlace-v4``.

Method: uniform random actions from a seeded generator (drawn before timing); after ``reset`` and
``--warmup`` untimed steps, ``--repeats`` timed blocks of ``--steps`` steps each; only the
``env.step`` calls are timed (``time.perf_counter`` around each call; episode resets between
blocks or at episode ends are not timed). ``steps/s`` is the median over the blocks.
``x realtime`` = steps/s ÷ control rate (simulated seconds per wall second), which compares envs
with different control rates fairly.

Fraction of wall time in ``mujoco.mj_step`` (physics): during the timed blocks ``mujoco.mj_step``,
``mj_step1`` and ``mj_step2`` are replaced by wrappers that accumulate ``perf_counter`` time around
the real calls (our tasks and gymnasium-robotics call ``mujoco.mj_step``; robosuite's default
``lite_physics`` splits each physics step into ``mj_step1`` + controller + ``mj_step2``, and only
the two MuJoCo halves are counted). The fraction is that time ÷ the timed ``env.step`` time (median
over blocks); ``mj_step/step`` is the number of physics steps per env step. The wrappers cost
well under 1 µs per call against tens of µs per physics step, so they barely change ``steps/s``.
The rest of the step is Python: controller, observation assembly, reward, success check.
If no such call is seen (an env that imported the function by name) the fraction is reported as
n/a rather than guessed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

OUR_TASKS: dict[str, str] = {
    "reach": "robot_rl/Reach-v0",
    "push": "robot_rl/Push-v0",
    "lift": "robot_rl/Lift-v0",
    "peg_insert": "robot_rl/PegInsert-v0",
}
PEERS = ("robosuite", "robosuite-adapter", "fetch")
FETCH_ID = "FetchPickAndPlace-v4"
ROBOSUITE_HZ = 20


@dataclass
class Row:
    """One benchmarked environment."""

    name: str
    group: str  # "ours" or "peer"
    status: str = "ok"  # "ok", "skipped" or "error"
    note: str = ""
    control_hz: float | None = None
    steps_per_s: float | None = None  # median over repeats
    repeats_steps_per_s: list[float] = field(default_factory=list)
    mj_step_fraction: float | None = None  # median over repeats
    mj_steps_per_env_step: float | None = None
    realtime_factor: float | None = None
    vs_fetch: float | None = None
    vs_robosuite: float | None = None


class _StepTimer:
    """Accumulates the time spent inside ``mujoco.mj_step`` while :meth:`patched` is active."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0
        self.substeps = 0

    @contextlib.contextmanager
    def patched(self) -> Iterator[_StepTimer]:
        import mujoco

        originals = {name: getattr(mujoco, name) for name in ("mj_step", "mj_step1", "mj_step2")}
        perf = time.perf_counter
        step, step1, step2 = originals["mj_step"], originals["mj_step1"], originals["mj_step2"]

        def timed_mj_step(model: Any, data: Any, nstep: int = 1) -> None:
            t0 = perf()
            step(model, data, nstep)
            self.seconds += perf() - t0
            self.calls += 1
            self.substeps += nstep

        def timed_mj_step1(model: Any, data: Any) -> None:
            t0 = perf()
            step1(model, data)
            self.seconds += perf() - t0
            self.calls += 1

        def timed_mj_step2(model: Any, data: Any) -> None:
            t0 = perf()
            step2(model, data)
            self.seconds += perf() - t0
            self.calls += 1
            self.substeps += 1  # step1 + step2 = one physics step

        mujoco.mj_step, mujoco.mj_step1, mujoco.mj_step2 = timed_mj_step, timed_mj_step1, timed_mj_step2
        try:
            yield self
        finally:
            for name, fn in originals.items():
                setattr(mujoco, name, fn)


def _measure(
    make: Callable[[], tuple[Any, Callable[[np.ndarray], bool], Callable[[int], None], Any]],
    row: Row,
    steps: int,
    warmup: int,
    repeats: int,
    seed: int,
) -> None:
    """Time ``repeats`` blocks of ``steps`` env steps; fill ``row`` in place.

    ``make()`` returns ``(env, step_fn, reset_fn, action_space)``: ``step_fn(action) -> done``,
    ``reset_fn(seed)``.
    """
    env, step_fn, reset_fn, space = make()
    try:
        rng = np.random.default_rng(seed)
        low = np.broadcast_to(np.asarray(space.low, dtype=np.float64), space.shape)
        high = np.broadcast_to(np.asarray(space.high, dtype=np.float64), space.shape)
        actions = rng.uniform(low, high, size=(warmup + steps * repeats, *space.shape)).astype(space.dtype)
        reset_fn(seed)
        k = 0
        for _ in range(warmup):
            if step_fn(actions[k]):
                reset_fn(seed + k)
            k += 1
        perf = time.perf_counter
        rates, fractions, substeps = [], [], []
        for r in range(repeats):
            reset_fn(seed + 1000 + r)
            timer = _StepTimer()
            total = 0.0
            with timer.patched():
                for _ in range(steps):
                    t0 = perf()
                    done = step_fn(actions[k])
                    total += perf() - t0
                    k += 1
                    if done:
                        reset_fn(seed + k)  # not timed
            rates.append(steps / total)
            if timer.calls:
                fractions.append(timer.seconds / total)
                substeps.append(timer.substeps / steps)
        row.repeats_steps_per_s = [round(x, 1) for x in rates]
        row.steps_per_s = statistics.median(rates)
        if fractions:
            row.mj_step_fraction = statistics.median(fractions)
            row.mj_steps_per_env_step = statistics.median(substeps)
        else:
            row.note = (row.note + "; " if row.note else "") + "no mujoco.mj_step call seen: fraction n/a"
        if row.control_hz:
            row.realtime_factor = row.steps_per_s / row.control_hz
    finally:
        with contextlib.suppress(Exception):
            env.close()


def _gym_maker(env_id: str, **kwargs: Any) -> Callable[[], tuple[Any, Any, Any, Any]]:
    def make() -> tuple[Any, Any, Any, Any]:
        import gymnasium as gym

        env = gym.make(env_id, disable_env_checker=True, **kwargs)

        def step(action: np.ndarray) -> bool:
            _, _, terminated, truncated, _ = env.step(action)
            return bool(terminated or truncated)

        def reset(seed: int) -> None:
            env.reset(seed=seed)

        return env, step, reset, env.action_space

    return make


def _control_hz(env: Any) -> float | None:
    """Control rate of a gymnasium env: ``control_hz`` attribute, else ``1 / dt``, else render_fps."""
    u = env.unwrapped
    for attr in ("control_hz", "control_freq"):
        if getattr(u, attr, None):
            return float(getattr(u, attr))
    dt = getattr(u, "dt", None)
    if dt:
        return 1.0 / float(dt)
    fps = env.metadata.get("render_fps")
    return float(fps) if fps else None


def _robosuite_maker() -> tuple[Any, Any, Any, Any]:
    import gymnasium as gym

    from robot_rl.sim.robosuite_adapter import _import_robosuite

    suite = _import_robosuite()
    env = suite.make(
        "Lift",
        robots="Panda",
        has_renderer=False,
        has_offscreen_renderer=False,
        use_camera_obs=False,
        control_freq=ROBOSUITE_HZ,
        ignore_done=True,
        hard_reset=False,
    )
    low, high = env.action_spec
    space = gym.spaces.Box(np.asarray(low, np.float32), np.asarray(high, np.float32), dtype=np.float32)

    def step(action: np.ndarray) -> bool:
        env.step(action)
        return False

    def reset(seed: int) -> None:
        env.rng.bit_generator.state = np.random.default_rng(seed).bit_generator.state
        env.reset()

    return env, step, reset, space


def _try_row(row: Row, measure: Callable[[], None], skip_on_import_error: bool) -> None:
    try:
        measure()
    except ImportError as exc:
        if not skip_on_import_error:
            raise
        row.status, row.note = "skipped", f"not available: {exc}"
    except Exception as exc:
        row.status, row.note = "error", f"{type(exc).__name__}: {exc}"


def _parse_list(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if text.strip().lower() == "none":
        return []
    bad = [t for t in items if t not in allowed]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown {what} {bad}; allowed: {', '.join(allowed)} (or 'none')")
    return items


def _fmt(x: float | None, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


def markdown_table(rows: list[Row]) -> str:
    """Render results as a markdown table."""
    lines = [
        "| env | control Hz | steps/s (median) | x realtime | mj_step share | mj_step/step "
        "| vs Fetch | vs robosuite | note |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        if r.status != "ok":
            lines.append(f"| {r.name} | | | | | | | | {r.status}: {r.note} |")
            continue
        share = None if r.mj_step_fraction is None else 100 * r.mj_step_fraction
        lines.append(
            f"| {r.name} | {_fmt(r.control_hz, '.0f')} | {_fmt(r.steps_per_s, '.0f')} "
            f"| {_fmt(r.realtime_factor, '.1f')} | {_fmt(share, '.0f')}{'%' if share is not None else ''} "
            f"| {_fmt(r.mj_steps_per_env_step, '.0f')} | {_fmt(r.vs_fetch, '.2f')} "
            f"| {_fmt(r.vs_robosuite, '.2f')} | {r.note} |"
        )
    return "\n".join(lines)


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="robot-rl-bench sim",
        description="Env steps/s of robot_rl tasks vs robosuite Lift and gymnasium-robotics Fetch "
        "(single process, state observations, random actions).",
    )
    p.add_argument("--steps", type=int, default=None, help="timed steps per repeat (default 1000)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps before timing (default 50)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats; median reported (default 3)")
    p.add_argument(
        "--tasks",
        type=lambda s: _parse_list(s, tuple(OUR_TASKS), "task"),
        default=list(OUR_TASKS),
        help=f"comma-separated tasks of ours ({','.join(OUR_TASKS)}) or 'none'; default all",
    )
    p.add_argument(
        "--peers",
        type=lambda s: _parse_list(s, PEERS, "peer"),
        default=list(PEERS),
        help=f"comma-separated peers ({','.join(PEERS)}) or 'none'; default all",
    )
    p.add_argument(
        "--include-peers", dest="include_peers", action="store_true", default=True, help="run peers (default)"
    )
    p.add_argument("--no-peers", dest="include_peers", action="store_false", help="benchmark our tasks only")
    p.add_argument("--seed", type=int, default=0, help="seed of the random actions and resets")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON to this path")
    p.add_argument("--markdown", action="store_true", help="print the results as a markdown table")
    p.add_argument("--quick", action="store_true", help="tiny run for tests: 30 steps, 5 warm-up, 1 repeat")
    return p


def run(argv: list[str] | None = None) -> int:
    """Run the simulation-speed benchmark.

    Args:
        argv: command-line arguments (without the program name); ``None`` reads ``sys.argv``.

    Returns:
        0 on success (skipped, not-yet-available tasks included), 1 if an available env errored,
        2 on bad arguments.
    """
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    steps = args.steps if args.steps is not None else (30 if args.quick else 1000)
    warmup = args.warmup if args.warmup is not None else (5 if args.quick else 50)
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    if steps <= 0 or warmup < 0 or repeats <= 0:
        print("robot-rl-bench sim: --steps and --repeats must be > 0, --warmup >= 0", file=sys.stderr)
        return 2
    peers = args.peers if args.include_peers else []
    started = time.perf_counter()
    rows: list[Row] = []

    try:
        from robot_rl.envs import register_envs

        register_envs()
    except ImportError as exc:  # pragma: no cover - robot_rl itself is installed with this module
        print(f"robot-rl-bench sim: cannot register robot_rl envs: {exc}", file=sys.stderr)
        return 1

    def gym_row(name: str, group: str, env_id: str, skip_import: bool, **kwargs: Any) -> Row:
        row = Row(name=name, group=group)

        def measure() -> None:
            maker = _gym_maker(env_id, **kwargs)

            def make_and_rate() -> tuple[Any, Any, Any, Any]:
                env, step, reset, space = maker()
                row.control_hz = _control_hz(env)
                return env, step, reset, space

            _measure(make_and_rate, row, steps, warmup, repeats, args.seed)

        _try_row(row, measure, skip_on_import_error=skip_import)
        return row

    for task in args.tasks:
        rows.append(gym_row(OUR_TASKS[task], "ours", OUR_TASKS[task], skip_import=True))

    if "robosuite" in peers:
        row = Row(name="robosuite Lift (raw)", group="peer", control_hz=ROBOSUITE_HZ)
        _try_row(
            row,
            lambda row=row: _measure(_robosuite_maker, row, steps, warmup, repeats, args.seed),
            skip_on_import_error=True,
        )
        rows.append(row)
    if "robosuite-adapter" in peers:
        rows.append(
            gym_row("robot_rl/robosuite-Lift-v0 (adapter)", "peer", "robot_rl/robosuite-Lift-v0", True)
        )
    if "fetch" in peers:
        try:
            import gymnasium as gym
            import gymnasium_robotics

            gym.register_envs(gymnasium_robotics)
            rows.append(gym_row(f"gymnasium-robotics {FETCH_ID}", "peer", FETCH_ID, True))
        except ImportError as exc:
            rows.append(Row(f"gymnasium-robotics {FETCH_ID}", "peer", "skipped", f"not available: {exc}"))

    fetch = next((r for r in rows if r.name.endswith(FETCH_ID) and r.steps_per_s), None)
    rs = next((r for r in rows if r.name == "robosuite Lift (raw)" and r.steps_per_s), None)
    for r in rows:
        if r.steps_per_s:
            r.vs_fetch = r.steps_per_s / fetch.steps_per_s if fetch else None
            r.vs_robosuite = r.steps_per_s / rs.steps_per_s if rs else None

    wall = time.perf_counter() - started
    result = {
        "benchmark": "sim",
        "command": "robot-rl-bench sim " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "versions": _versions(),
        },
        "settings": {"steps": steps, "warmup": warmup, "repeats": repeats, "seed": args.seed},
        "wall_s": round(wall, 1),
        "results": [asdict(r) for r in rows],
    }
    if args.markdown:
        print(markdown_table(rows))
    else:
        for r in rows:
            if r.status == "ok":
                share = "n/a" if r.mj_step_fraction is None else f"{100 * r.mj_step_fraction:.0f}%"
                rt = _fmt(r.realtime_factor, ".1f")
                print(
                    f"{r.name:45s} {r.steps_per_s:9.0f} steps/s  x{rt:>6s} realtime"
                    f"  mj_step {share:>4s}  vs Fetch {_fmt(r.vs_fetch, '.2f'):>5s}"
                    f"  vs robosuite {_fmt(r.vs_robosuite, '.2f'):>5s}"
                )
            else:
                print(f"{r.name:45s} {r.status}: {r.note}")
    print(f"(wall time {wall:.1f} s; {steps} steps x {repeats} repeats after {warmup} warm-up steps)")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 1 if any(r.status == "error" for r in rows) else 0


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for dist in ("mujoco", "robosuite", "gymnasium", "gymnasium-robotics", "numpy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(run())
