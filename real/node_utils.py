"""Shared rclpy plumbing of the robot_rl nodes: typed parameters, QoS profiles, the console-script main.

Every node reads its parameters once, in its constructor (our "configure" step), through
:func:`declare`: a bad value raises :class:`ConfigError`, which :func:`run_node` turns into one log
line and exit status 2 before any control step runs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from robot_rl.core.optional import require


class ConfigError(ValueError):
    """A bad node parameter (or a missing/incompatible input named by one)."""


_TYPES: dict[type, tuple[str, Callable[[Any], bool]]] = {
    bool: ("bool", lambda v: isinstance(v, bool)),
    int: ("integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    float: ("double", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)),
    str: ("string", lambda v: isinstance(v, str)),
}


def declare(node: Any, name: str, kind: type, default: Any, description: str, array: bool = False) -> Any:
    """Declare a read-only parameter of ``kind`` (bool/int/float/str, or a list of it) and return its value.

    Integers are accepted where doubles are expected (``-p low:=[-1,-1]``); an empty list on the
    command line leaves the default.
    """
    from rcl_interfaces.msg import ParameterDescriptor

    type_name, check = _TYPES[kind]
    type_name = f"{type_name} array" if array else type_name
    desc = ParameterDescriptor(
        description=f"{description} ({type_name})", read_only=True, dynamic_typing=True
    )
    value = node.declare_parameter(name, None if array and not default else default, desc).value
    if value is None:
        value = default
    if array:
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise ConfigError(f"parameter {name!r} must be a {type_name}, got {value!r}")
        value = list(value)
        if not all(check(v) for v in value):
            raise ConfigError(f"parameter {name!r} must be a {type_name}, got {value!r}")
        return [kind(v) for v in value]
    if not check(value):
        raise ConfigError(f"parameter {name!r} must be a {type_name}, got {value!r}")
    return kind(value)


def choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(f"parameter {name!r} is {value!r}; allowed: {', '.join(allowed)}")
    return value


def positive(name: str, value: float) -> float:
    if not value > 0:
        raise ConfigError(f"parameter {name!r} must be > 0, got {value}")
    return value


# Episode boundaries announced by the robot side (the sim bridge): std_msgs/Header, ``frame_id`` is
# ``start`` | ``terminated`` | ``truncated``, ``stamp`` the stamp of that first/last observation.
EPISODE_EVENT_TOPIC = "/robot_rl/episode_event"
# ...and the first observation of an episode carries header.frame_id "episode_start:<reset seed>" on the
# state topic, so a policy resets its chunk queue before acting on it in whatever order they arrive
EPISODE_START_FRAME = "episode_start"


# --- QoS (ECOSYSTEM §3 item 2) -------------------------------------------------------------------


def sensor_qos(depth: int = 5) -> Any:
    """Sensor streams (joint states, images): keep-last ``depth``, best effort (reads reliable
    publishers too)."""
    from rclpy.qos import QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy

    return QoSProfile(
        history=QoSHistoryPolicy.KEEP_LAST, depth=depth, reliability=QoSReliabilityPolicy.BEST_EFFORT
    )


def command_qos(depth: int = 1) -> Any:
    """Commands and actions: reliable, keep-last ``depth``, volatile."""
    from rclpy.qos import QoSDurabilityPolicy, QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy

    return QoSProfile(
        history=QoSHistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=QoSReliabilityPolicy.RELIABLE,
        durability=QoSDurabilityPolicy.VOLATILE,
    )


def latched_qos(depth: int = 1) -> Any:
    """Static info (the task text): reliable + transient local, so late joiners get the last value.
    Subscribers of event streams (episode events) pass a larger ``depth``: with 1, an event that
    arrives while the previous one is still queued would replace it."""
    from rclpy.qos import QoSDurabilityPolicy, QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy

    return QoSProfile(
        history=QoSHistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=QoSReliabilityPolicy.RELIABLE,
        durability=QoSDurabilityPolicy.TRANSIENT_LOCAL,
    )


def stamp_to_s(stamp: Any) -> float:
    return float(stamp.sec) + 1e-9 * float(stamp.nanosec)


def stamp_from_s(t: float) -> Any:
    """Seconds -> builtin_interfaces/Time (the inverse of :func:`stamp_to_s`)."""
    from builtin_interfaces.msg import Time

    sec = int(t)
    return Time(sec=sec, nanosec=min(round((t - sec) * 1e9), 999_999_999))


# --- main ------------------------------------------------------------------------------------------


_POLL_S = 0.1  # how often the executor loop looks at the stop flag when no callback is ready


class _StopSignals:
    """SIGINT / SIGTERM handling of :func:`run_node`, installed instead of rclpy's own handlers.

    rclpy's handlers shut the context down at the first signal, under the executor: a message
    already delivered but not yet taken is lost, the executor raises wherever it is, and after them
    Python's default handler raises ``KeyboardInterrupt`` at any point of the teardown when a second
    SIGINT comes (a terminal's Ctrl-C reaches every process of the group, a supervisor may send its
    own): the recorder lost the episode it was saving in ``close()`` in 1 run of 3. Here:

    - while the node is being built, a signal aborts it (``KeyboardInterrupt``: nothing to save yet);
    - while it spins, the first SIGINT or SIGTERM only sets :attr:`received`; the executor loop sees
      it between callbacks (at most :data:`_POLL_S` later) and stops spinning;
    - from then on (drain, ``close()``, destruction, interpreter exit) a SIGINT is ignored, and a
      SIGTERM, like any second SIGTERM, ends the process at once: it is the supervisor's escalation
      (``ros2 launch`` and ``robot-rl-launch`` send it 5 s after the SIGINT).
    """

    def __init__(self) -> None:
        import signal

        self.received: list[int] = []
        self.phase = "starting"  # starting | running | stopping
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self)

    def __call__(self, signum: int, _frame: Any) -> None:
        import os
        import signal

        first = not self.received
        self.received.append(signum)
        if signum == signal.SIGTERM and (self.phase == "stopping" or not first):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
        elif self.phase == "starting" and first:
            raise KeyboardInterrupt

    def stopping(self) -> None:
        """From here on the kernel applies the rules (ignore SIGINT, die on SIGTERM), so they hold
        even while the interpreter is inside a long C call (DDS teardown) and cannot run a handler."""
        import signal

        self.phase = "stopping"
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def run_node(name: str, factory: Callable[[], Any], threads: int = 0, argv: list[str] | None = None) -> None:
    """Console-script body: init rclpy, build the node (exit 2 with one line on ConfigError), spin
    until SIGINT / SIGTERM (or until the context is shut down), then tear the node down once:
    process what it already received for ``shutdown_drain_s`` seconds if the node sets that attribute
    (the recorder: the steps published before the Ctrl-C belong to its episode), call its
    ``close()``, destroy it. Signals during the teardown cannot interrupt it (see
    :class:`_StopSignals`); a node stops within :data:`_POLL_S` of the signal plus its teardown.

    ``threads=0`` (the default) spins a SingleThreadedExecutor: ready callbacks run in
    subscription-creation order, one at a time (the recorder relies on it to order messages that
    arrive together). A node whose callback groups need parallel threads sets ``executor_threads``
    (it overrides ``threads``). rclpy's MultiThreadedExecutor costs far more CPU per callback and
    can delay a timer by hundreds of ms (ros2/rclpy#1223; measured here as late watchdog holds and
    dropped policy actions in the command mux), so nodes whose callbacks share one group never use it.
    """
    require("rclpy", f"the {name} node")
    import time

    import rclpy
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    args = sys.argv if argv is None else argv
    if any(a in ("-h", "--help") for a in args[1:]) and "--ros-args" not in args:
        print(f"usage: {args[0]} --ros-args [-p name:=value ...] [-r from:=to ...]\n{factory.__doc__ or ''}")
        return
    stop = _StopSignals()
    node = None
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
        try:
            node = factory()
        except ConfigError as err:
            print(f"[{name}] error: {err}", file=sys.stderr, flush=True)
            sys.exit(2)
        stop.phase = "running"
        threads = int(getattr(node, "executor_threads", threads))
        executor = MultiThreadedExecutor(num_threads=threads) if threads > 0 else SingleThreadedExecutor()
        executor.add_node(node)
        while not stop.received and rclpy.ok():
            executor.spin_once(timeout_sec=_POLL_S)
        stop.stopping()
        drain_s = float(getattr(node, "shutdown_drain_s", 0.0))
        t_end = time.monotonic() + drain_s
        while rclpy.ok() and (left := t_end - time.monotonic()) > 0:
            executor.spin_once(timeout_sec=left)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        stop.stopping()
        if node is not None:
            close = getattr(node, "close", None)
            if close is not None:
                close()
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
