"""``robot-rl-bag``: rosbag2 (MCAP) bags <-> episode stores (docs/data.md §5; no rclpy needed).

    robot-rl-bag import <bag> --out <store> [--lerobot <dir>]   a bag -> episodes (-> LeRobot v3)
    robot-rl-bag export <store> --out <bag>                     episodes -> a bag for ros2 bag / Foxglove
    robot-rl-bag info <bag>                                     topics, types, counts, what would import

Bad input prints one line ``error: ...`` and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robot-rl-bag",
        description="rosbag2 (MCAP) bags <-> robot_rl episode stores (docs/data.md, 'rosbag2 (MCAP)').",
    )
    sub = parser.add_subparsers(dest="command", metavar="{import,export,info}")
    imp = sub.add_parser(
        "import",
        help="a bag (ours or `ros2 bag record` of the contract topics) -> an episode store",
        description="Resample a bag to control ticks (one per /robot_rl/executed_action) and append its "
        "complete episodes to an episode store; a cut bag imports every complete episode.",
    )
    imp.add_argument("bag", help="bag folder (metadata.yaml + .mcap or .db3) or an .mcap file")
    imp.add_argument("--out", required=True, help="episode store (created when missing, else appended to)")
    imp.add_argument("--lerobot", default="", help="also export the store as a LeRobotDataset v3 folder")
    imp.add_argument("--state-topic", default="/robot_rl/observation/state", help="JointState state topic")
    imp.add_argument(
        "--joint-names", default="", help="comma-separated: the state is these joints' positions"
    )
    imp.add_argument(
        "--cameras", default=None, help="comma-separated camera names to import (default: all in the bag)"
    )
    imp.add_argument("--no-cameras", action="store_true", help="import no camera images")
    imp.add_argument("--source", default="", help="episodes' source (default: the recorder's)")
    imp.add_argument(
        "--reward-source",
        default="auto",
        choices=("auto", "sim", "classifier", "vlm", "human", "none"),
        help="default auto: the recorder's, or sim when the bag has /robot_rl/reward",
    )
    imp.add_argument("--min-steps", type=int, default=1, help="shorter episodes are skipped")
    imp.add_argument("--fps", type=float, default=None, help="store fps (default: the bag's control rate)")
    imp.add_argument("--env-id", default=None, help="store env id (default: the bag's)")
    exp = sub.add_parser("export", help="an episode store -> a rosbag2 MCAP bag folder")
    exp.add_argument("store", help="episode store")
    exp.add_argument("--out", required=True, help="bag folder to create (must not exist)")
    exp.add_argument("--fps", type=float, default=None, help="timeline rate (default: the store's, else 10)")
    info = sub.add_parser("info", help="topics, message types and counts of a bag; what an import would do")
    info.add_argument("bag", help="bag folder or .mcap file")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        sys.exit(2)
    from robot_rl.core.errors import DataError

    try:
        _run(args)
    except (DataError, FileNotFoundError, NotADirectoryError, ImportError) as err:
        print(f"error: {str(err).splitlines()[0] if str(err) else type(err).__name__}", file=sys.stderr)
        sys.exit(2)


def _run(args: argparse.Namespace) -> None:
    from pathlib import Path

    from robot_rl.core.errors import DataError
    from robot_rl.data import rosbag

    if args.command == "export":
        if not Path(args.store).is_dir():
            raise DataError(f"{args.store} is not an episode store (no such folder)")
        from robot_rl.data.episode_store import EpisodeStore

        store = EpisodeStore(args.store)
        out = rosbag.export_bag(store, args.out, fps=args.fps)
        print(f"exported {len(store)} episodes ({int(store.lengths().sum())} steps) -> {out}")
        return
    if not rosbag.is_bag(args.bag):
        raise DataError(f"{args.bag} is not a rosbag2 bag (no metadata.yaml, .mcap or .db3)")
    if args.command == "info":
        contents = rosbag.read_bag(args.bag)
        for topic, msgtype, count in rosbag.iter_topics_summary(contents):
            print(f"{topic}  {msgtype}  {count}")
        if contents.custom:
            print("robot_rl: " + ", ".join(f"{k}={v}" for k, v in sorted(contents.custom.items())))
        _, report = rosbag.bag_to_records(contents)
        print(report.line().replace("imported", "would import", 1))
        return
    if args.min_steps < 1:
        raise DataError(f"--min-steps must be >= 1, got {args.min_steps}")
    if args.fps is not None and not args.fps > 0:
        raise DataError(f"--fps must be > 0, got {args.fps}")
    cameras = () if args.no_cameras else (None if args.cameras is None else _names(args.cameras))
    options = rosbag.ImportOptions(
        state_topic=args.state_topic,
        joint_names=_names(args.joint_names),
        cameras=cameras,
        source=args.source,
        reward_source=args.reward_source,
        min_steps=args.min_steps,
    )
    report = rosbag.import_bag(args.bag, args.out, options, fps=args.fps, env_id=args.env_id)
    print(report.line() + f" -> {args.out}")
    if args.lerobot:
        from robot_rl.data.lerobot import export_lerobot

        print(f"LeRobotDataset v3 -> {export_lerobot(args.out, args.lerobot)}")


if __name__ == "__main__":
    main()
