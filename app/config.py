"""A command's whole configuration, in four typed sections: analysis, input, tracker, outputs.

:func:`from_args` is the one place where parsed command-line arguments become settings; every
command (``locate``, ``run``, ``serve``, ``batch``, ``eval``) starts from it, and the GUI and the
Python API build the same sections from their own controls. The analysis defaults, the per-mode
defaults and their checks belong to :mod:`doascope.config`; the input and output sections are
here because they touch the world (devices, files). The parser's defaults are all ``None`` ("not
given"), so a value a user typed is always kept, even when it equals a default.

Like the parser, this module imports neither numpy nor any kernel: a wrong option costs one line
and no start-up time.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from doascope import ParameterError
from doascope.config import AnalysisConfig, SettingError, parse_track_timeout

DEFAULT_SPEED = 1.0
"""Replay speed of --file/--sim (1: real time)."""


@dataclass(frozen=True)
class InputConfig:
    """Where audio comes from: a device (default: the system's), a file, or a simulated room."""

    device: int | str | None = None
    file: str | None = None
    sim: str | None = None
    loop: bool = False
    speed: float = DEFAULT_SPEED
    fast: bool = False                 # replay as fast as the analysis goes
    duration: float | None = None      # stop after this many seconds of audio

    def __post_init__(self):
        if sum(x is not None for x in (self.device, self.file, self.sim)) > 1:
            raise ParameterError("give one input: --device, --file or --sim")
        if not (_finite(self.speed) and self.speed > 0):
            raise ParameterError(f"--speed must be a positive factor (1 is real time; --fast for as fast as "
                                 f"possible), got {self.speed:g}")
        if self.duration is not None and not (_finite(self.duration) and self.duration > 0):
            raise ParameterError(f"--duration must be a positive number of seconds, got {self.duration:g}")

    @property
    def replay_speed(self) -> float:
        """Speed for a file or scene source: 0 means as fast as possible."""
        return 0.0 if self.fast else self.speed


@dataclass(frozen=True)
class TrackerConfig:
    """What a user sets of the tracker; the tracker's own defaults (dsp/tracker.py) fill the rest."""

    timeout: float | None = None       # seconds a silent talker keeps its id (death_time)

    def __post_init__(self):
        if self.timeout is not None:
            try:
                parse_track_timeout(self.timeout)
            except ParameterError as exc:
                raise SettingError("tracker", str(exc)) from None

    def params(self) -> dict:
        """Keyword arguments of either tracker (Tracker, PositionTracker)."""
        return {} if self.timeout is None else {"death_time": float(self.timeout)}


@dataclass(frozen=True)
class OutputConfig:
    """Where results go. ``output``: locate's table or run's frames (``-``: stdout); ``record``: raw audio."""

    output: str | None = None
    format: str = "jsonl"
    plot: str | None = None
    record: str | None = None

    def check(self) -> None:
        """That every file can be written, before the work whose result goes there."""
        check_writable(self.output, "--output")
        check_writable(self.plot, "--plot")
        check_writable(self.record, "--record")


@dataclass(frozen=True)
class Config:
    """One command's settings."""

    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    input: InputConfig = field(default_factory=InputConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    outputs: OutputConfig = field(default_factory=OutputConfig)

    def check(self, profile=None) -> None:
        """What can be checked before any work: the band against the profile's rate, the output files."""
        if profile is not None:
            self.analysis.check_rate(profile.sample_rate, profile=profile.id)
        self.outputs.check()


def analysis_from_args(args, tracker: TrackerConfig | None = None) -> AnalysisConfig:
    """The AnalysisConfig of the analysis options (cli.add_analysis_options); None means not given."""
    g = lambda name: getattr(args, name, None)  # noqa: E731  (not every command has every option)
    tracker = tracker if tracker is not None else tracker_from_args(args)
    return AnalysisConfig.given(method=g("method"), n_sources=g("sources"), band=g("band"), nfft=g("nfft"),
                                hop=g("hop"), frames_per_block=g("block"), grid=g("grid"),
                                resolution=g("resolution"), smoothing=g("smoothing"),
                                min_separation=g("min_separation"), weights=g("weights"), mode=g("mode"),
                                search=g("search"), tracker=tracker.params())


def tracker_from_args(args) -> TrackerConfig:
    return TrackerConfig(timeout=getattr(args, "track_timeout", None))


def input_from_args(args) -> InputConfig:
    g = lambda name: getattr(args, name, None)  # noqa: E731
    return InputConfig(device=g("device"), file=g("file"), sim=g("sim"), loop=bool(g("loop")),
                       speed=DEFAULT_SPEED if g("speed") is None else g("speed"), fast=bool(g("fast")),
                       duration=g("duration"))


def from_args(args) -> Config:
    """The whole configuration of a parsed command line (argparse.Namespace)."""
    g = lambda name: getattr(args, name, None)  # noqa: E731
    tracker = tracker_from_args(args)
    return Config(analysis=analysis_from_args(args, tracker), input=input_from_args(args), tracker=tracker,
                  outputs=OutputConfig(output=g("output"),
                                       format=g("format") or "jsonl", plot=g("plot"), record=g("record")))


def check_writable(path: str | None, option: str) -> None:
    """That ``path`` can be written, before the work whose result goes there."""
    if not path or path == "-":
        return
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ParameterError(f"cannot write {option} {path}: it is a folder; give a file name")
    if not os.path.isdir(folder):
        raise ParameterError(f"cannot write {option} {path}: there is no folder {folder}")
    target = path if os.path.exists(path) else folder
    if not os.access(target, os.W_OK):
        raise ParameterError(f"cannot write {option} {path}: permission denied")


def _finite(value) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
