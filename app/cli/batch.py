"""``doascope batch``: its options and the command (the corpus machinery is doascope.app.batch)."""

from __future__ import annotations

import os

from doascope import ParameterError
from doascope.app.batch.corpus import (Job, LocalPool, Summary, collect_inputs, config_options, job_info,
                                       run_batch)
from doascope.app.cli.options import add_analysis_options
from doascope.app.config import analysis_from_args


def job_options(args) -> dict:
    """The analysis settings a task carries, from the command line: every AnalysisConfig field but
    the tracker's (None: the mode's default); the profile and the method may also come per file from
    a manifest."""
    return config_options(analysis_from_args(args))


def register(subparsers) -> None:
    """Add the ``batch`` subcommand to the CLI's subparsers."""
    p = subparsers.add_parser("batch", help="localize whole corpora into one Parquet table (local cores or Ray)")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="audio files, folders (searched recursively), or CSV manifests with the columns "
                        "file, profile and optionally method (paths relative to the manifest)")
    add_analysis_options(p)
    for action in p._actions:   # a manifest may name the profile of every file
        if action.dest == "profile":
            action.required = False
            action.help = "profile of every file not given one by a manifest"
    p.add_argument("--out", "-o", required=True, metavar="RESULTS.parquet", help="the Parquet table to write")
    p.add_argument("--resume", action="store_true",
                   help="continue the table: skip work already in it for the same file content and settings "
                        "(--chunk-minutes included); failed work is tried again")
    p.add_argument("--jobs", "-j", type=int, default=None,
                   help="local worker processes (default: one per CPU core)")
    p.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="run the tasks on an existing Ray cluster (its address, or 'auto'); every node must "
                        "see the inputs at the same paths")
    p.add_argument("--chunk-minutes", type=float, default=10.0,
                   help="files longer than this are analysed in chunks of it, in parallel (default 10)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def cmd_batch(args) -> int:
    from rich.console import Console

    from doascope.app.batch.table import ResultTable

    if args.chunk_minutes <= 0:
        raise ParameterError(f"--chunk-minutes must be positive, got {args.chunk_minutes}")
    if args.jobs is not None and args.jobs < 1:
        raise ParameterError(f"--jobs must be at least 1, got {args.jobs}")
    options = job_options(args)

    def with_method(profile: str, method: str | None) -> Job:
        o = dict(options, method=method or options["method"])
        return Job(profile, tuple(sorted(o.items())))

    default = with_method(args.profile, None) if args.profile else None
    if default is not None:   # the command line's own profile and options: refused up front, in one line
        job_info(default, 60 * args.chunk_minutes)
    items = collect_inputs(args.inputs, default, with_method)
    table = ResultTable(args.out, resume=args.resume)
    console = Console(stderr=True, soft_wrap=True)
    if args.ray:
        from doascope.app.batch.ray import RayPool

        executor = RayPool(args.ray)
        where = f"the Ray cluster at {args.ray} ({executor.capacity} CPUs)"
    else:
        jobs = args.jobs or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
        executor = LocalPool(jobs)
        where = f"{jobs} local worker{'s' if jobs > 1 else ''}"
    console.print(f"batch: {len(items)} files on {where} -> {args.out}")
    try:
        with BatchProgress(console, len(items), enabled=not args.no_progress) as progress:
            summary = run_batch(items, table, executor=executor, resume=args.resume,
                                chunk_seconds=60 * args.chunk_minutes, progress=progress)
    finally:
        executor.close()
    print_summary(console, summary, args.out)
    return 1 if summary.failed else 0


def print_summary(console, s: Summary, out: str) -> None:
    done = s.files - s.skipped
    console.print(f"batch: {done} files analysed ({s.chunks} tasks, {s.reruns} chunks re-run from their "
                  f"predecessor's state), {s.skipped} already in the table, {s.failed} failed")
    rate = s.audio_hours_per_hour
    console.print(f"batch: {s.audio_seconds / 3600:.3f} h of audio in {s.wall:.1f} s on {s.workers} "
                  f"worker{'s' if s.workers != 1 else ''}: {rate:.{0 if rate >= 10 else 1}f} audio-hours per "
                  f"wall-hour; {out} holds {s.rows} rows")
    for line in s.errors[:10]:
        console.print(f"  failed: {line}", markup=False, highlight=False)
    if len(s.errors) > 10:
        console.print(f"  ... and {len(s.errors) - 10} more (rows with an error in {out})")


class BatchProgress:
    """A rich progress bar over audio seconds, with files and audio hours done and an ETA."""

    def __init__(self, console, files: int, *, enabled: bool = True):
        self.enabled = enabled and console.is_terminal
        self.files_total = files
        self.files_done = 0
        self.seconds_total = 0.0
        self.seconds_done = 0.0
        if self.enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._p = Progress(TextColumn("batch"), BarColumn(), TextColumn("{task.fields[files]}"),
                               TextColumn("{task.fields[hours]}"), TimeElapsedColumn(), TextColumn("ETA"),
                               TimeRemainingColumn(), console=console, transient=False)
            self._task = self._p.add_task("batch", total=None, files="", hours="")

    def __enter__(self):
        if self.enabled:
            self._p.start()
            self._refresh()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self._refresh()
            self._p.stop()

    def _refresh(self) -> None:
        if self.enabled:
            self._p.update(self._task, total=max(self.seconds_total, 1e-9), completed=self.seconds_done,
                           files=f"{self.files_done}/{self.files_total} files",
                           hours=f"{self.seconds_done / 3600:.2f}/{self.seconds_total / 3600:.2f} h audio")

    def add(self, *, seconds: float) -> None:
        self.seconds_total += seconds
        self._refresh()

    def skip(self) -> None:
        self.files_done += 1
        self._refresh()

    def advance(self, *, seconds: float, file_done: bool) -> None:
        self.seconds_done += seconds
        self.files_done += file_done
        self._refresh()
