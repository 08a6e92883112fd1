"""The command-line options every localizing command shares, kept apart from the parser of
doascope.app.cli.main so that a command module (batch, eval, demo) adds them without importing the CLI
(which imports every command: a cycle).

Every default is None ("not given"): :class:`doascope.config.AnalysisConfig` owns the defaults, those
of position mode, and the checks (doascope.app.config turns the parsed options into it); the help
texts quote the defaults from there. Nothing here imports numpy, numba or scipy.
"""

from __future__ import annotations

import argparse

from doascope import DoascopeError


def _parsed_by(parse):
    """An argparse type from a doascope.config parser (its ParameterError becomes argparse's one line)."""
    def convert(text):
        try:
            return parse(text)
        except DoascopeError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    convert.__name__ = parse.__name__
    return convert


def add_analysis_options(p: argparse.ArgumentParser) -> None:
    """Options shared by every command that localizes (locate, run, serve, batch, eval).

    Every default is None ("not given"): doascope.config.AnalysisConfig owns the defaults (and
    those of position mode) and the checks; the help quotes them from there."""
    # Plain tables, not the estimator registry: the help must not load numpy, numba or scipy.
    from doascope import config as c
    from doascope.methods import method_names

    pos = c.position_defaults(16000)
    p.add_argument("--profile", "-p", required=True, help="shipped profile id (see `doascope profiles`) or a TOML path")
    p.add_argument("--method", "-m", default=None, metavar="M",
                   help=f"DOA method: {', '.join(method_names())} (default {c.DEFAULT_METHOD})")
    p.add_argument("--sources", "-k", default=None, metavar="K",
                   help=f"report at most K sources (1-{c.MAX_SOURCES}), or auto for up to {c.AUTO_SOURCES}; a peak is "
                        f"reported only when it passes the source-presence test (default {c.DEFAULT_SOURCES})")
    p.add_argument("--band", type=_parsed_by(c.parse_band), default=None, metavar="FMIN:FMAX",
                   help=f"analysis band in Hz (default {c.DEFAULT_BAND[0]:g}:{c.DEFAULT_BAND[1]:g}; position mode "
                        f"{c.POSITION_BAND_LOW:g}:{c.POSITION_BAND_HIGH:g} or less at low rates)")
    p.add_argument("--nfft", type=int, default=None,
                   help=f"STFT size (default {c.default_nfft(16000)} at 16 kHz, scaled with the rate; position mode "
                        f"{c.POSITION_NFFT_FACTOR}x that)")
    p.add_argument("--hop", type=int, default=None, help="STFT hop (default nfft/2)")
    p.add_argument("--block", type=int, default=None, metavar="FRAMES",
                   help=f"STFT frames per block (default {c.DEFAULT_FRAMES_PER_BLOCK}; position mode "
                        f"{pos['frames_per_block']})")
    p.add_argument("--grid", choices=c.GRIDS, default=None,
                   help="search grid: azimuth circle, sphere (upper half for planar arrays); auto picks by geometry "
                        f"(default {c.DEFAULT_GRID})")
    p.add_argument("--resolution", type=float, default=None, metavar="DEG", help="grid spacing in degrees")
    p.add_argument("--smoothing", type=float, default=None, metavar="A",
                   help="temporal integration across blocks, 0 (none) to <1; delays estimates by A/(1-A) "
                        f"blocks on average (default {c.DEFAULT_SMOOTHING:g}; position mode {pos['smoothing']:g})")
    p.add_argument("--min-separation", type=float, default=None, metavar="DEG",
                   help=f"minimum angle between reported sources (default {c.DEFAULT_MIN_SEPARATION:g})")
    p.add_argument("--weights", default=None, help="network weights for --method dnn")
    p.add_argument("--mode", choices=c.MODES, default=None,
                   help=f"doa: directions (default {c.DEFAULT_MODE}); position: x, y, z in the room for profiles "
                        "with a 'room'")
    p.add_argument("--search", choices=c.SEARCHES, default=None,
                   help=f"position mode: global search (default {c.DEFAULT_SEARCH}); triangulation needs [[groups]]")


def add_input_options(p: argparse.ArgumentParser) -> None:
    """Where audio comes from: a device (default), a file, or a simulated room."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--device", "-d", default=None, help="input device number or part of its name (default: the system's)")
    g.add_argument("--file", "-f", default=None, help="replay a multichannel recording")
    g.add_argument("--sim", default=None, metavar="SCENE",
                   help="a simulated room: two-talkers, crossing, talker-and-fan, circling")
    p.add_argument("--loop", action="store_true", help="replay the file (or scene) forever")
    p.add_argument("--speed", type=float, default=None, help="replay speed for --file/--sim (default 1: real time)")
    p.add_argument("--fast", action="store_true", help="replay as fast as the analysis goes")
    from doascope.config import TRACK_TIMEOUT, parse_track_timeout

    p.add_argument("--track-timeout", type=_parsed_by(parse_track_timeout), default=None, metavar="S",
                   help=f"seconds a silent talker keeps its track id (hidden after 0.5 s; default {TRACK_TIMEOUT:g}): "
                        "a talker who speaks again within the gate gets the same id")


def add_gui_options(p: argparse.ArgumentParser) -> None:
    """The options of `doascope gui` (also what `doascope demo` starts the GUI with)."""
    from doascope import config as c

    p.add_argument("--profile", "-p", default=None, help="profile to start with")
    p.add_argument("--method", "-m", default=None, metavar="M", help=f"DOA method to start with (default {c.DEFAULT_METHOD})")
    p.add_argument("--sources", "-k", type=_parsed_by(c.source_count), default=None, metavar="K",
                   help=f"report at most K sources (1-{c.MAX_SOURCES}), or auto for up to {c.AUTO_SOURCES} "
                        f"(default {c.DEFAULT_SOURCES})")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--device", "-d", default=None, help="start on this input device (number or part of its name)")
    g.add_argument("--file", "-f", default=None, help="start by replaying this multichannel recording")
    g.add_argument("--sim", default=None, metavar="SCENE",
                   help="start on a simulated room: two-talkers, crossing, talker-and-fan, circling "
                        "(the default input; rendering it takes a few seconds)")
    p.add_argument("--tab", default=None, metavar="TITLE", help="open on this tab: Localization, CLIP, Meta-learning")
    p.add_argument("--screenshot", default=None, metavar="PNG", help="with --quit-after: save the window first")
    p.add_argument("--quit-after", type=float, default=None, metavar="S", help="close the window after S seconds")
