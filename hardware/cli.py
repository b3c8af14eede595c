"""`sime-hw`: check a rig, record teleoperated demos, evaluate a policy on it, clean data, import real recordings."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import numpy as np
from sime_data.cli_store import accept_store_anywhere, resolve_store

from .errors import HardwareError


def _store(path: str | None, create: bool = True):
    import sime_data

    location = path or os.environ.get("SIME_STORE")
    if not location:
        raise HardwareError("give --store PATH (or set $SIME_STORE)")
    return sime_data.open_store(location, create=create)


def _print(msg: str) -> None:
    print(msg, flush=True)


def cmd_teleop(args: argparse.Namespace) -> int:
    """Record teleoperated demonstrations."""
    from .config import load_rig_config
    from .recorder import record_teleop
    from .rig import Rig

    config = load_rig_config(args.config)
    store = _store(args.store)
    with Rig(config, teleop=True) as rig:
        result = record_teleop(rig, store, episodes=args.episodes, task=args.task, max_steps=args.max_steps,
                               operator=args.operator, on_event=_print)
    if args.version and result.episode_ids:
        store.create_version(args.version, result.episode_ids, message=f"teleop demos on rig {config.name}")
    _print(f"recorded {len(result.episode_ids)} episode(s), discarded {result.discarded}"
           + (f"; version {args.version}" if args.version and result.episode_ids else ""))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate a checkpoint on the rig."""
    from sime_policy.policy.exploration import Exploration

    from .config import load_rig_config
    from .evaluation import EvalSettings, evaluate_policy
    from .rig import Rig

    config = load_rig_config(args.config)
    store = _store(args.store)
    exploration = Exploration(args.explore, noise_scale=args.noise_scale, image_noise_scale=args.image_noise_scale,
                              tau1=args.tau1, tau2=args.tau2, eta=args.eta)
    settings = EvalSettings(ensemble=args.ensemble, k=args.k, tau=args.tau, replan_every=args.replan,
                            max_rot_step=args.max_rot_step, max_steps=args.max_steps,
                            async_inference=args.async_inference, seed=args.seed, scene=args.scene,
                            round=args.round, branch=args.branch)
    with Rig(config, teleop=False) as rig:
        result = evaluate_policy(rig, store, args.checkpoint, exploration=exploration, episodes=args.episodes,
                                 settings=settings, task=args.task, on_event=_print)
    if args.version and result.episode_ids:
        store.create_version(args.version, result.episode_ids, message=f"real-world evaluation on rig {config.name}")
    marked = [s for s in result.successes if s is not None]
    rate = f"{sum(marked)}/{len(marked)} successful" if marked else "no success marks"
    _print(f"evaluated {len(result.episode_ids)} episode(s): {rate}; discarded {result.discarded}")
    for phase, ms in sorted(result.times.median_ms().items()):
        _print(f"  {phase:>13}: {ms:7.2f} ms median")
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    """Create a cleaned version."""
    from .cleaning import StaticThresholds, clean_version

    store = _store(args.store, create=False)
    version = clean_version(store, args.version, args.name,
                            StaticThresholds(args.pos_eps, args.rot_eps, args.grip_eps, args.grip_width_eps), drop_failed=args.drop_failed,
                            key=args.key)
    _print(f"created {version.name}: {len(version.episode_ids)} episode(s), {version.n_frames} frames")
    _print(f"  {version.message}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """Import real-world recording folders."""
    from .import_real import import_recordings

    names = {}
    max_width = args.gripper_max_width
    if args.config:
        from .config import load_rig_config

        config = load_rig_config(args.config)
        names = {c.serial: c.name for c in config.cameras if c.serial}
        max_width = max_width or config.arm.max_gripper_width
    store = _store(args.store)
    ids = import_recordings(store, args.dirs, task=args.task, camera_names=names,
                            max_gripper_width=max_width or 0.085, version=args.version)
    _print(f"imported {len(ids)} recording(s)" + (f" as version {args.version}" if args.version else ""))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Connect each configured device once and report what it says (exit 1 when any fails)."""
    from .config import load_rig_config
    from .rig import Rig

    config = load_rig_config(args.config)
    rig = Rig(config, teleop=True)
    failed = 0
    if rig.world is not None:
        rig.world.acquire()
    try:
        for device in rig.devices:
            label = f"{device.kind:>12} {device.name:<8} {type(device).__name__:<22}"
            try:
                with device:
                    detail = ""
                    if device.kind == "arm":
                        state = device.state()
                        detail = f"tcp {np.round(state.tcp_pose, 3).tolist()} gripper {state.gripper_width:.3f} m"
                    elif device.kind == "camera":
                        frame, intr = device.read(), device.intrinsics()
                        detail = (f"{frame.color.shape[1]}x{frame.color.shape[0]} fx={intr.fx:.1f}"
                                  + ("" if frame.depth is None else f", depth median {np.median(frame.depth)} units"))
                _print(f"{label} ok  {detail}")
            except HardwareError as exc:
                failed += 1
                _print(f"{label} FAILED: {exc}")
    finally:
        if rig.world is not None:
            rig.world.release()
    _print(f"{len(rig.devices) - failed}/{len(rig.devices)} device(s) ok")
    return 1 if failed else 0


def cmd_fields(args: argparse.Namespace) -> int:
    """Print every field a rig YAML file may set: path, type, default and meaning."""
    from sime_policy.settings import field_table

    from .config import RigConfig

    rows = field_table(RigConfig)
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for path, kind, default, text in rows:
        _print(f"{path:<{widths[0]}}  {kind:<{widths[1]}}  {default:<{widths[2]}}  {text}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The sime-hw argument parser."""
    parser = argparse.ArgumentParser(prog="sime-hw", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check", help="validate the rig config and try every device once")
    p.add_argument("--config", required=True, help="rig YAML (see hardware/configs/)")
    p.set_defaults(fn=cmd_check)

    p = sub.add_parser("fields", help="list every field a rig config file may set, with its type, default and meaning")
    p.set_defaults(fn=cmd_fields)

    p = sub.add_parser("teleop", help="record teleoperated demonstrations into the store")
    p.add_argument("--config", required=True, help="rig YAML (see hardware/configs/)")
    p.add_argument("--store", help="store path or URL (default $SIME_STORE)")
    p.add_argument("--task", help="task name recorded with the episodes (default: the config's)")
    p.add_argument("--episodes", type=int, default=1)
    p.add_argument("--max-steps", type=int, help="steps per episode before it is saved anyway (default: config)")
    p.add_argument("--operator", help="who teleoperated (stored in meta)")
    p.add_argument("--version", help="also create this version from the recorded episodes")
    p.set_defaults(fn=cmd_teleop)

    p = sub.add_parser("eval", help="run a policy on the rig; the operator marks success/failure")
    p.add_argument("--checkpoint", required=True, help="checkpoint file or run directory")
    p.add_argument("--config", required=True)
    p.add_argument("--store")
    p.add_argument("--task")
    p.add_argument("--episodes", type=int, default=1)
    p.add_argument("--max-steps", type=int)
    p.add_argument("--explore", default="none", choices=["none", "sime", "cads", "action_noise", "ddim_eta"])
    p.add_argument("--noise-scale", type=float, default=0.0)
    p.add_argument("--image-noise-scale", type=float)
    p.add_argument("--tau1", type=float, default=0.0)
    p.add_argument("--tau2", type=float, default=1.0)
    p.add_argument("--eta", type=float, default=0.0)
    p.add_argument("--ensemble", default="new", choices=["new", "old", "avg", "act", "hato"])
    p.add_argument("--k", type=float, default=0.01, help="act weights exp(-k * age)")
    p.add_argument("--tau", type=float, default=0.5, help="hato weights tau ** age")
    p.add_argument("--replan", type=int, help="steps between predictions (default: the policy's n_action_steps; "
                                              "half of it with --async-inference)")
    p.add_argument("--max-rot-step", type=float, help="limit the commanded turn per step (radians)")
    p.add_argument("--async-inference", action="store_true",
                   help="predict in a background thread so the loop keeps its rate (chunks are applied late)")
    p.add_argument("--seed", type=int, default=233)
    p.add_argument("--scene", help="label of the initial scene (stored as init_state_id; trials count per scene)")
    p.add_argument("--round", type=int)
    p.add_argument("--branch")
    p.add_argument("--version", help="also create this version from the evaluated episodes")
    p.set_defaults(fn=cmd_eval)

    p = sub.add_parser("clean", help="new version without near-static frames (and failed episodes)")
    p.add_argument("--store")
    p.add_argument("--version", required=True, help="base version")
    p.add_argument("--name", required=True, help="name of the new version")
    p.add_argument("--pos-eps", type=float, default=0.002, help="metres")
    p.add_argument("--rot-eps", type=float, default=0.01, help="radians")
    p.add_argument("--grip-eps", type=float, default=0.1, help="gripper command units (with --key actions)")
    p.add_argument("--grip-width-eps", type=float, default=0.002,
                   help="metres of measured gripper opening (with --key obs/tcp_pose)")
    p.add_argument("--key", default="actions", help="judge motion on the commanded actions (default) or the measured obs/tcp_pose + gripper width")
    p.add_argument("--drop-failed", action="store_true")
    p.set_defaults(fn=cmd_clean)

    p = sub.add_parser("import-real", help="import real-world recording folders (cam_<serial>/, tcp/, ...)")
    p.add_argument("--store")
    p.add_argument("--task", default="real")
    p.add_argument("--config", help="rig YAML: names cameras by serial and gives the gripper width")
    p.add_argument("--gripper-max-width", type=float, help="metres (default 0.085, Robotiq 2F-85)")
    p.add_argument("--version", help="also create this version from the imported episodes")
    p.add_argument("dirs", nargs="+", help="recording folders, or folders holding them")
    p.set_defaults(fn=cmd_import)
    accept_store_anywhere(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (errors print one line, no traceback)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    resolve_store(parser, args)
    try:
        return int(args.fn(args) or 0)
    except KeyboardInterrupt:
        print("interrupted: the episode in progress was not saved", file=sys.stderr)
        return 130
    except HardwareError as exc:
        print(f"sime-hw: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - store/policy errors: one clear line
        from sime_data.errors import StoreError

        if isinstance(exc, (StoreError, ValueError, FileNotFoundError)):
            print(f"sime-hw: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
