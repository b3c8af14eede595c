"""`sime-data`: command-line access to a trajectory store."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd
from .cli_store import accept_store_anywhere, resolve_store
from .console import console, err_console, human_bytes, print_frame
from .errors import StoreError
from .sql_sandbox import INTERACTIVE_MAX_ROWS, INTERACTIVE_TIMEOUT_S

def _open(args: argparse.Namespace):
    from .store import open_store

    return open_store(args.store)


def _open_or_create(args: argparse.Namespace):
    """Open the store an import writes into, creating it (and saying so) when nothing is there yet."""
    from .errors import StoreNotFoundError
    from .store import open_store

    try:
        return open_store(args.store)
    except StoreNotFoundError:
        local = None if "://" in str(args.store) else Path(args.store)
        if local is not None and local.is_dir() and any(local.iterdir()):
            raise  # a directory with other files in it is not where a new store should appear
    store = open_store(args.store, create=True)
    console.print(f"created a new store at {store.location}", highlight=False)
    return store


# ---------------------------------------------------------------------- commands
def cmd_init(args: argparse.Namespace) -> int:
    """Create a new store."""
    from .store import init_store

    store = init_store(args.store)
    console.print(f"created store at {store.location} (format {store.root_meta.schema_version})")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """Summarise a store: counts, keys and shapes, disk size, success rates."""
    from .summary import store_summary

    summary = store_summary(_open(args))
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return 0
    console.print(f"[bold]store[/bold] {summary['location']}  format {summary['schema_version']}  "
                  f"disk {human_bytes(summary['disk_bytes'])}")
    console.print(f"episodes {summary['n_episodes']}  frames {summary['n_frames']}  segments {summary['n_segments']}  "
                  f"versions {summary['n_versions']}")
    if summary["by_group"]:
        print_frame(pd.DataFrame(summary["by_group"]), title="episodes by source / task / round")
    if summary["keys"]:
        print_frame(pd.DataFrame(summary["keys"]), title="arrays (per-step shape and dtype)")
    return 0


def cmd_sql(args: argparse.Namespace) -> int:
    """Run a read-only SQL query (time-limited, row-capped, stopped by Ctrl-C) and print the result."""
    import warnings

    store = _open(args)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            frame = store.sql(args.query, timeout_s=args.timeout or None, max_rows=args.max_result_rows or None)
        except KeyboardInterrupt:
            err_console.print("[red]error:[/red] query interrupted (Ctrl-C); it was stopped and nothing was changed",
                              highlight=False)
            return 130
        finally:
            for warning in caught:
                err_console.print(f"[yellow]warning:[/yellow] {warning.message}", highlight=False)
    if args.csv:
        frame.to_csv(sys.stdout, index=False)
    elif args.json:
        print(frame.to_json(orient="records", date_format="iso"))
    else:
        print_frame(frame, max_rows=args.max_rows)
    return 0


def cmd_versions(args: argparse.Namespace) -> int:
    """List, show, diff or create versions."""
    store = _open(args)
    if args.action == "list":
        frame = store.versions()
        if frame.empty:
            console.print("no versions yet")
        else:
            frame["parents"] = frame["parents"].map(lambda p: ", ".join(p))
            frame["created_at"] = frame["created_at"].dt.strftime("%Y-%m-%d %H:%M")
            print_frame(frame[["name", "parents", "n_episodes", "n_frames", "success_rate", "created_at", "message"]],
                        max_rows=10_000)
    elif args.action == "show":
        version = store.version(args.name)
        console.print(version.describe())
        if args.episodes:
            print_frame(version.manifest, max_rows=args.max_rows)
    elif args.action == "diff":
        diff = store.diff_versions(args.a, args.b)
        console.print(diff.summary())
        if diff.added:
            console.print("added:   " + " ".join(diff.added[: args.max_rows]))
        if diff.removed:
            console.print("removed: " + " ".join(diff.removed[: args.max_rows]))
        if len(diff.changed):
            print_frame(diff.changed, title="re-trimmed", max_rows=args.max_rows)
    elif args.action == "create":
        if bool(args.from_query) == bool(args.episodes_list):
            raise StoreError("versions create needs exactly one of --from-query SQL or --episodes ID [ID ...]")
        if args.from_query:
            version = store.create_version_from_query(args.name, args.from_query, parents=args.parent or (),
                                                      message=args.message)
        else:
            version = store.create_version(args.name, args.episodes_list, parents=args.parent or (),
                                           message=args.message)
        console.print(version.describe())
    return 0


def cmd_import_robomimic(args: argparse.Namespace) -> int:
    """Import a robomimic HDF5 file as episodes plus versions."""
    from .robomimic_io import import_robomimic

    result = import_robomimic(_open_or_create(args), args.file, task=args.task, source=args.source, version=args.version,
                              progress=not args.quiet)
    if result.already_imported:
        console.print(f"{args.file} was imported before (same content, sha256) as version {result.version}: "
                      "nothing was written")
        return 0
    console.print(f"imported {len(result.episode_ids)} episodes ({result.n_frames} frames); "
                  f"versions: {', '.join(result.versions)}")
    return 0


def cmd_export_robomimic(args: argparse.Namespace) -> int:
    """Export a version to a robomimic-layout HDF5 file."""
    from .robomimic_io import export_robomimic

    result = export_robomimic(_open(args), args.version, args.out, overwrite=args.overwrite, progress=not args.quiet)
    console.print(f"wrote {result.n_demos} demos ({result.n_frames} frames) to {result.path}")
    return 0


def cmd_export_lerobot(args: argparse.Namespace) -> int:
    """Export a version as a LeRobot v3.0 dataset directory."""
    from .lerobot_io import export_lerobot

    result = export_lerobot(_open(args), args.version, args.out_dir, fps=args.fps, video=not args.images,
                            overwrite=args.overwrite, progress=not args.quiet)
    console.print(result.summary(), highlight=False)
    return 0


def cmd_import_lerobot(args: argparse.Namespace) -> int:
    """Import a LeRobot v3.0 (or v2.1) dataset directory as episodes plus one version."""
    from .lerobot_io import import_lerobot

    result = import_lerobot(_open_or_create(args), args.dir, version=args.version, task=args.task,
                            source=args.source, progress=not args.quiet)
    console.print(result.summary(), highlight=False)
    return 0


def cmd_export_replay_buffer(args: argparse.Namespace) -> int:
    """Export a version as a Diffusion Policy replay buffer (zarr: data/<key> + meta/episode_ends)."""
    from .replay_buffer_io import export_replay_buffer

    result = export_replay_buffer(_open(args), args.version, args.out, keys=args.keys, overwrite=args.overwrite,
                                  progress=not args.quiet)
    mapping = ", ".join(f"{store_key} -> {key}" for key, store_key in result.keys.items())
    console.print(f"wrote {result.n_episodes} episodes ({result.n_frames} frames) to {result.path}; keys: {mapping}",
                  highlight=False)
    return 0


def cmd_import_replay_buffer(args: argparse.Namespace) -> int:
    """Import a Diffusion Policy replay buffer as episodes plus one version."""
    from .replay_buffer_io import import_replay_buffer

    result = import_replay_buffer(_open_or_create(args), args.path, task=args.task, version=args.version,
                                  source=args.source, progress=not args.quiet)
    if result.already_imported:
        console.print(f"{args.path} was imported before (same content) as version {result.version}: nothing was "
                      "written", highlight=False)
        return 0
    console.print(f"imported {len(result.episode_ids)} episodes ({result.n_frames} frames) as version "
                  f"{result.version}", highlight=False)
    return 0


def cmd_export_video(args: argparse.Namespace) -> int:
    """Write mp4s of a version's episodes (trims applied) or of one episode, or one grid video of them."""
    from .video_export import export_video, find_renderer

    store = _open(args)
    result = export_video(store, args.target, args.out_dir, grid=args.grid, fps=args.fps, camera=args.camera,
                          columns=args.columns, renderer=find_renderer(), overwrite=args.overwrite,
                          max_grid=args.max_grid, progress=not args.quiet)
    what = "grid video" if args.grid else f"video{'s' if len(result.paths) != 1 else ''}"
    console.print(f"wrote {len(result.paths)} {what} of {len(result.episodes)} episode(s) ({sum(result.frames)} "
                  f"frames, camera {result.camera}, {result.fps:g} fps) to {args.out_dir}", highlight=False)
    for path in result.paths[:10]:
        console.print(f"  {path}", highlight=False)
    if len(result.paths) > 10:
        console.print(f"  ... {len(result.paths) - 10} more", highlight=False)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Check every committed row, version and chunk; exit 1 on damage."""
    from .verify import verify

    if args.deep and args.no_chunks:
        raise StoreError("--deep reads every chunk; it cannot be combined with --no-chunks")
    report = verify(_open(args), check_chunks=not args.no_chunks, deep=args.deep, progress=not args.quiet)
    console.print(report.summary())
    for problem in report.problems:
        err_console.print(f"[red]problem[/red] {problem}")
    return 0 if report.ok else 1


def cmd_gc(args: argparse.Namespace) -> int:
    """Remove frames of crashed writers that no committed episode references (refuses on a damaged store)."""
    from .gc import gc

    store = _open(args)
    if args.force and not args.dry_run:
        # forced past verify's findings: show what would go first, then ask (or require --yes when not interactive)
        preview = gc(store, dry_run=True, force=True, ignore_locks=args.ignore_locks)
        _print_gc(preview, listing=True)
        if not preview.listing:
            return 0
        if not args.yes:
            if not sys.stdin.isatty():
                err_console.print("[red]error:[/red] gc --force removes the files listed above; rerun with --yes to "
                                  "confirm (nothing was removed)", highlight=False)
                return 1
            if input("remove them? [y/N] ").strip().lower() not in ("y", "yes"):
                console.print("nothing removed")
                return 1
    report = gc(store, dry_run=args.dry_run, force=args.force, ignore_locks=args.ignore_locks)
    _print_gc(report, listing=args.dry_run or args.verbose)
    return 0


def _print_gc(report: Any, listing: bool) -> None:
    """gc's problems ignored, its listing (when asked) and its summary line."""
    for problem in report.problems_ignored:
        err_console.print(f"[yellow]problem (ignored: --force)[/yellow] {problem}", highlight=False)
    if listing:
        for line in report.listing:
            console.print(("would remove " if report.dry_run else "removed ") + line, highlight=False)
    console.print(report.summary(), highlight=False)


def cmd_compact(args: argparse.Namespace) -> int:
    """Merge the store's episode row files into one."""
    rows = _open(args).compact()
    console.print(f"compacted {rows} episode rows" if rows else "nothing to compact")
    return 0


def cmd_quickstart(args: argparse.Namespace) -> int:
    """Build an example store and tour it."""
    from .quickstart import run_quickstart

    run_quickstart(args.store)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    """Upgrade the store's on-disk format in place (copy-on-write, then switch)."""
    from migrations.runner import migrate

    applied = migrate(args.store, keep_backup=not args.no_backup, progress=lambda text: console.print(text))
    console.print(f"applied: {', '.join(applied)}" if applied else "store already up to date")
    return 0


def cmd_select(args: argparse.Namespace) -> int:
    """Preview or save an inter-demo selection of a rollout version."""
    from .selection import create_selection_version, preview_thresholds, select

    store = _open(args)
    threshold = None if args.rule == "success" else args.threshold
    chosen = select(store, args.version, args.rule, threshold, args.seed)
    print_frame(chosen.per_state, title=f"per initial state ({args.version})", max_rows=args.max_rows)
    print_frame(preview_thresholds(store, args.version), title="what each threshold keeps")
    if not args.name:
        console.print(f"{chosen.describe()}; save it with --name NEW [--base TRAINING_VERSION]")
        return 0
    version = create_selection_version(store, args.name, args.version, args.rule, threshold, base=args.base,
                                       seed=args.seed, message=args.message)
    console.print(f"created version {version.name}: {version.n_episodes} episodes, {version.n_frames} frames "
                  f"({version.message})")
    return 0


# ---------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The sime-data argument parser."""
    parser = argparse.ArgumentParser(prog="sime-data", description="Versioned trajectory store for SIME.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what is done")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: Callable[[argparse.Namespace], int], help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--store", "-s", default=os.environ.get("SIME_STORE") or None, required=not os.environ.get("SIME_STORE"),
                       help="store directory or fsspec URL (default: $SIME_STORE)")
        p.set_defaults(func=func)
        return p

    add("init", cmd_init, "create a new, empty store")
    p = sub.add_parser("quickstart", help="build an example store (toy demos, rollouts, versions) and tour it")
    p.add_argument("--store", "-s", default=os.environ.get("SIME_STORE", "sime_store"),
                   help="where to build it (default: ./sime_store)")
    p.set_defaults(func=cmd_quickstart)
    p = add("info", cmd_info, "counts, array keys and shapes, disk size, success rates")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = add("sql", cmd_sql, "run a read-only SQL query over episodes, versions, version_episodes")
    p.add_argument("query")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true", help="print CSV")
    fmt.add_argument("--json", action="store_true", help="print JSON records")
    p.add_argument("--max-rows", type=int, default=50, help="rows to print as a table (default 50)")
    p.add_argument("--timeout", type=float, default=INTERACTIVE_TIMEOUT_S, metavar="S",
                   help=f"stop the query after S seconds (default {INTERACTIVE_TIMEOUT_S:g}; 0 = no limit)")
    p.add_argument("--max-result-rows", type=int, default=INTERACTIVE_MAX_ROWS, metavar="N",
                   help=f"refuse results of more than N rows (default {INTERACTIVE_MAX_ROWS:,}; 0 = no cap)")

    p = add("versions", cmd_versions, "list, show, diff or create versions")
    vsub = p.add_subparsers(dest="action", required=True)
    vsub.add_parser("list", help="all versions")
    show = vsub.add_parser("show", help="one version's details")
    show.add_argument("name")
    show.add_argument("--episodes", action="store_true", help="also print the manifest")
    diff = vsub.add_parser("diff", help="what version B adds/removes/re-trims relative to A")
    diff.add_argument("a")
    diff.add_argument("b")
    create = vsub.add_parser("create", help="create a version from a query or a list of episode ids")
    create.add_argument("name")
    create.add_argument("--from-query", help="SQL returning episode_id (and optionally frame_start, frame_stop)")
    create.add_argument("--episodes", dest="episodes_list", nargs="+", help="episode ids")
    create.add_argument("--parent", action="append", help="parent version (repeatable)")
    create.add_argument("--message", "-m", default="")
    for q in (show, diff):
        q.add_argument("--max-rows", type=int, default=50)
    p.set_defaults(max_rows=50)

    p = add("select", cmd_select, "inter-demo selection: keep successful rollouts of initial states with a success "
                                  "rate below a threshold (preview, or save with --name)")
    p.add_argument("version", help="rollout version to select from")
    p.add_argument("--rule", choices=["sr_lss", "success", "random"], default="sr_lss",
                   help="sr_lss: successes of states with SR < threshold; success: all successes; random: as many "
                        "successes as sr_lss keeps, drawn at random (default sr_lss)")
    p.add_argument("--threshold", type=float, default=0.5, help="success-rate threshold in [0, 1.01] (default 0.5)")
    p.add_argument("--name", help="save the selection as this new version")
    p.add_argument("--base", help="add the selection to this (training) version instead of saving it alone")
    p.add_argument("--seed", type=int, default=0, help="seed of the random rule")
    p.add_argument("--message", "-m", default="")
    p.add_argument("--max-rows", type=int, default=20)

    p = add("import-robomimic", cmd_import_robomimic, "import a robomimic HDF5 file (each filter key becomes a version)")
    p.add_argument("file")
    p.add_argument("--task", help="task name (default: env_args' env_name)")
    p.add_argument("--version", help="name of the version holding all demos (default: file stem)")
    p.add_argument("--source", default="import")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p = add("export-robomimic", cmd_export_robomimic, "export a version to a robomimic HDF5 file (trims applied)")
    p.add_argument("version")
    p.add_argument("out")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p = add("export-lerobot", cmd_export_lerobot,
            "export a version as a LeRobot v3.0 dataset (trims applied; cameras as mp4 or PNG images)")
    p.add_argument("version")
    p.add_argument("out_dir")
    p.add_argument("--fps", type=int, default=20, help="frames per second recorded in the dataset (default 20)")
    media = p.add_mutually_exclusive_group()
    media.add_argument("--video", action="store_true", help="cameras as mp4 videos, several episodes per file (default)")
    media.add_argument("--images", action="store_true", help="cameras as PNG images inside the parquet files (lossless)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p = add("import-lerobot", cmd_import_lerobot,
            "import a LeRobot v3.0 or v2.1 dataset directory (all-or-nothing; creates the store if missing)")
    p.add_argument("dir")
    p.add_argument("--version", help="name of the version holding the episodes (default: the directory name)")
    p.add_argument("--task", help="store task name of every imported episode (default: the dataset's own tasks)")
    p.add_argument("--source", default="lerobot")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p = add("export-replay-buffer", cmd_export_replay_buffer,
            "export a version as a Diffusion Policy replay buffer (zarr; a path ending in .zip writes a zip store)")
    p.add_argument("version")
    p.add_argument("out")
    p.add_argument("--keys", nargs="+", help="store keys to export (default: all)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p = add("import-replay-buffer", cmd_import_replay_buffer,
            "import a Diffusion Policy replay buffer (zarr v2/v3 directory or .zarr.zip; creates the store if missing)")
    p.add_argument("path")
    p.add_argument("--task", help="task name recorded with the episodes")
    p.add_argument("--version", help="name of the version holding the episodes (default: the buffer's name)")
    p.add_argument("--source", default="replay_buffer")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p = add("export-video", cmd_export_video,
            "write mp4s of a version's episodes (trims applied) or of one episode, one per episode or a grid; "
            "frames stored, or rendered from simulator states")
    p.add_argument("target", metavar="VERSION_OR_EPISODE", help="a version name or an episode id")
    p.add_argument("out_dir")
    p.add_argument("--grid", action="store_true", help="one video with the episodes tiled side by side")
    p.add_argument("--columns", type=int, help="grid columns (default: about the square root of the count)")
    p.add_argument("--max-grid", type=int, default=64, help="most episodes in one grid (default 64)")
    p.add_argument("--camera", help="camera key, e.g. obs/agentview_image (default: the first episode's first)")
    p.add_argument("--fps", type=float, help="frames per second (default: the episode's own, else 20)")
    p.add_argument("--overwrite", action="store_true", help="replace existing files")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p = add("verify", cmd_verify, "check every referenced chunk and row; exit 1 on damage")
    p.add_argument("--no-chunks", action="store_true", help="skip reading array chunks (metadata only)")
    p.add_argument("--deep", action="store_true",
                   help="also compare every chunk file with the crc32c recorded at commit (reads all data)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p = add("gc", cmd_gc, "remove unreferenced frames of crashed writers (refuses while verify finds damage)")
    p.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    p.add_argument("--force", action="store_true",
                   help="run even though verify finds damage: lists what would go first, then asks (frames that "
                        "rows, checksum records or versions name are never removed)")
    p.add_argument("--yes", "-y", action="store_true", help="with --force: do not ask before removing")
    p.add_argument("--ignore-locks", action="store_true",
                   help="treat every writer as dead (only when you know none runs, e.g. object-store writers of a "
                        "crashed machine inside their heartbeat grace period)")
    add("compact", cmd_compact, "merge episode row files into one (faster catalog loads)")
    p = add("migrate", cmd_migrate, "upgrade the store format (copy-on-write; keeps a backup)")
    p.add_argument("--no-backup", action="store_true", help="delete the pre-migration copy afterwards")
    accept_store_anywhere(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `sime-data`."""
    parser = build_parser()
    args = parser.parse_args(argv)
    resolve_store(parser, args)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except StoreError as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False)
        return 2
    except (OSError, KeyError, ValueError, ImportError) as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
