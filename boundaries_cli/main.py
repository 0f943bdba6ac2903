"""``boundaries`` console script (the composition root, ARCHITECTURE.md "Packages"): the main job,
ingest, services, operations (dead letters, reconcile, sweep). Argument parsing and building the
objects each command needs live here; the logic lives in the packages it imports."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from rich.console import Console

from boundaries_cli.args import existing_file, parse_crop, video_file
from boundaries_cli.render import segment_table
from config.settings import Settings


def _settings(args) -> Settings:
    overrides = {}
    if getattr(args, "checkpoint", None):
        overrides["checkpoint_path"] = Path(args.checkpoint)
    if getattr(args, "shard_pairs", None):
        overrides["shard_pairs"] = args.shard_pairs
    if getattr(args, "workers", None):
        overrides["local_runner_workers"] = args.workers
    settings = Settings(**overrides)
    if settings.checkpoint_path and not settings.model_version:
        from modal_gpu.checkpoint import model_version_of  # imports torch: only when a checkpoint is used

        settings = settings.model_copy(update={"model_version": model_version_of(settings.checkpoint_path)[0]})
    return settings


def cmd_run(args) -> int:
    from boundaries_cli.main_job import run_main_job

    console = Console()
    settings = _settings(args)
    report = run_main_job(Path(args.video), args.crop, args.anchor, settings, console)
    if report.status != "completed":
        console.print(f"[red]job failed[/red]: {report.error}")
        return 1
    console.print(segment_table(report.segments))
    console.print(f"results database: {report.results_location}", soft_wrap=True)  # one copyable line
    console.print(f"run id:           {report.run_id}")
    console.print(f"model version:    {report.model_version}")
    console.print(f"pairs:            {report.pairs} (frames {report.total_frames})")
    console.print(f"wall time:        {report.wall_s:.1f} s")
    if args.report and report.results_location and Path(report.results_location).is_file():
        from boundaries.eval_report import write_run_timeline

        png = write_run_timeline(Path(report.results_location).read_bytes(), args.report)
        console.print(f"timeline:         {png}")
    return 0


def cmd_migrate(args) -> int:
    from worker.deps import database

    applied = database(Settings()).migrate()
    print(json.dumps({"applied": applied}))
    return 0


def cmd_model_version(args) -> int:
    from modal_gpu.checkpoint import model_version_of

    mv, sha = model_version_of(Path(args.checkpoint))
    print(json.dumps({"model_version": mv, "sha256": sha}))
    return 0


def cmd_eval(args) -> int:
    from boundaries.evaluation import format_report
    from worker.evaluate import evaluate

    result = evaluate(Path(args.video), Path(args.labels), args.crop, args.anchor, checkpoint=args.checkpoint,
                      labels_video=args.labels_video, report_dir=args.report)
    if args.json:
        print(json.dumps(result, default=str))
    else:
        print(f"{result['video']} ({result['model_version']}, {result['pairs']} pairs)")
        print(format_report(result))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="boundaries", description=__doc__)
    p.add_argument("--debug", action="store_true",
                   help="print the traceback of a failure (also BOUNDARIES_DEBUG=1); default: one line")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="the main job: ingest a video and run it through webhook → queue → worker")
    r.add_argument("video", type=video_file, help="a video file PyAV can open (mp4, mkv, webm, ...)")
    r.add_argument("--crop", type=parse_crop, required=True, help="caption band L,T,R,B as fractions")
    r.add_argument("--anchor", choices=("left", "center", "right"), default="center",
                   help="caption text alignment in the band (default: center)")
    r.add_argument("--checkpoint", type=existing_file,
                   help="a user's channel_fusion_lora_spatial checkpoint (needs the gpu extra)")
    r.add_argument("--shard-pairs", type=int, help="pairs per shard")
    r.add_argument("--workers", type=int, help="local runner processes")
    r.add_argument("--report", type=Path, metavar="DIR", help="write the predicted timeline.png here")
    r.set_defaults(func=cmd_run)

    m = sub.add_parser("migrate", help="apply registry migrations (BOUNDARIES_DATABASE_URL, BOUNDARIES_DB_SCHEMA)")
    m.set_defaults(func=cmd_migrate)

    mv = sub.add_parser("model-version", help="print {wandb_run_id}_{sha256[:8]} of a checkpoint")
    mv.add_argument("checkpoint", type=existing_file, help="a channel_fusion_lora_spatial checkpoint (.pt; needs"
                    " the gpu extra: torch)")
    mv.set_defaults(func=cmd_model_version)

    e = sub.add_parser("eval", help="score the production inference path against a label CSV")
    e.add_argument("--video", required=True, type=video_file, help="the video the labels describe")
    e.add_argument("--labels", required=True, type=existing_file, help="CSV with frame,pair_label_prev_to_this[,video]")
    e.add_argument("--labels-video", help="value of the CSV's video column (default: matched by path suffix)")
    e.add_argument("--crop", type=parse_crop, required=True, help="caption band L,T,R,B as fractions")
    e.add_argument("--anchor", choices=("left", "center", "right"), default="center",
                   help="caption text alignment in the band (default: center)")
    e.add_argument("--checkpoint", type=existing_file,
                   help="a channel_fusion_lora_spatial checkpoint (default: the built-in classical detector)")
    e.add_argument("--json", action="store_true", help="print the scores as one JSON object")
    e.add_argument("--report", type=Path, metavar="DIR",
                   help="write timeline.png and a picture per miss / false alarm here")
    e.set_defaults(func=cmd_eval)

    from boundaries_cli import ops
    from boundaries_cli.upload_checkpoint import add_upload_command

    ops.add_commands(sub)
    add_upload_command(sub)

    from boundaries_cli.doctor import add_command as add_doctor_command

    add_doctor_command(sub)

    from boundaries_cli.help_texts import add_settings_epilogs

    add_settings_epilogs(p)  # last: every command is registered by now
    return p


def _debug(args) -> bool:
    return bool(getattr(args, "debug", False)) or os.environ.get("BOUNDARIES_DEBUG", "").lower() in ("1", "true",
                                                                                                  "yes")


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush of a closed pipe raises nothing
    (the SIGPIPE recipe of the ``signal`` module's documentation)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit status. Expected failures print one line on stderr and exit by
    kind (boundaries_cli/exits.py: 65 data, 69 a service down, 78 a setting, 70 a bug, 130 Ctrl-C, 141
    stdout closed); ``--debug`` or ``BOUNDARIES_DEBUG=1`` adds the traceback."""
    from boundaries_cli.exits import EX_BROKEN_PIPE, EX_INTERRUPTED, classify
    from config.logging import configure_logging, log_level

    args = build_parser().parse_args(argv)
    name = " ".join(str(x) for x in (args.command, getattr(args, "dlq_command", None)) if x)
    try:
        configure_logging(log_level(default="WARNING"))  # a bad BOUNDARIES_LOG_LEVEL: one line, 78
        status = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handlers, not at interpreter exit
        return status
    except BrokenPipeError:
        _quiet_stdout()
        return EX_BROKEN_PIPE
    except KeyboardInterrupt:
        print(f"boundaries {name}: interrupted", file=sys.stderr)
        return EX_INTERRUPTED
    except Exception as e:
        failure = classify(e)
        if _debug(args):
            import traceback

            traceback.print_exc()
        print(f"boundaries {name}: error: {failure.message}", file=sys.stderr)
        return failure.code


if __name__ == "__main__":
    sys.exit(main())
