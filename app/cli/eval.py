"""``doascope eval``: score the localization of a labelled recording against its ground truth.

The truth is a CSV with a header and one row per source per time: ``time, azimuth[, elevation]``
(degrees, the array frame) or ``time, x, y, z`` (metres; in DOA mode they become directions from
the array's origin). A row whose coordinates are empty says that no source is active at that time.
Other columns (a source id, say) are ignored. Scores are those of :mod:`doascope.dsp.evaluation`.
"""

from __future__ import annotations

import csv
import json
import math
import sys

from doascope import ParameterError

# numpy is imported inside the functions: `doascope --help` imports this module to register `eval`.

DEG_THRESHOLDS = (5.0, 10.0, 20.0)
M_THRESHOLDS = (0.25, 0.5, 1.0)
_ALIASES = {"t": "time", "time_s": "time", "az": "azimuth", "el": "elevation"}


def register(subparsers) -> None:
    """Add the ``eval`` subcommand to the CLI's subparsers."""
    from doascope.app.cli.options import add_analysis_options

    p = subparsers.add_parser("eval", help="score localization of a labelled recording against its truth "
                                           "(LOCATA-style: MAE, accuracy, recall, precision, OSPA)")
    p.add_argument("recording", help="the recording (any audio file `locate` reads), or `locate`'s JSONL output")
    p.add_argument("--truth", required=True, metavar="TRUTH.csv",
                   help="CSV with a header: time,azimuth[,elevation] or time,x,y,z; one row per source per time")
    add_analysis_options(p)
    p.add_argument("--gate", type=float, default=None, metavar="D",
                   help="an estimate this close to a true source detects it, and OSPA's cut-off "
                        "(default 30 degrees; 1 m in position mode)")
    p.add_argument("--tolerance", type=float, default=None, metavar="S",
                   help="a block is scored against the truth rows within S seconds of its centre "
                        "(default half the larger of the truth's time step and a block)")
    p.add_argument("--json", action="store_true", help="print the scores as one JSON object")
    p.add_argument("--plot", metavar="PNG", default=None, help="draw truth and estimates over time to this PNG")


def read_truth(path: str) -> tuple[str, np.ndarray, list[np.ndarray]]:
    """(kind, times, coordinates per time) from a truth CSV: kind is "azimuth", "direction" (azimuth
    and elevation) or "position"; coordinates[i] is (sources, 1 | 2 | 3) for times[i] (sorted)."""
    import numpy as np

    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise ParameterError(f"cannot read {path}: {exc.strerror or exc}") from None
    rows = [r for r in rows if r and any(c.strip() for c in r) and not r[0].lstrip().startswith("#")]
    if not rows:
        raise ParameterError(f"{path} is empty: the truth needs a header and rows")
    header = [_ALIASES.get(h.strip().lower(), h.strip().lower()) for h in rows[0]]
    if "time" not in header:
        raise ParameterError(f"{path}: the header needs a 'time' column (and azimuth[, elevation] or x, y, z), "
                             f"got {', '.join(rows[0])}")
    if {"x", "y", "z"} <= set(header):
        kind, cols = "position", ("x", "y", "z")
    elif "azimuth" in header:
        kind, cols = ("direction", ("azimuth", "elevation")) if "elevation" in header else ("azimuth", ("azimuth",))
    else:
        raise ParameterError(f"{path}: the header needs azimuth[, elevation] or x, y, z columns")
    it = header.index("time")
    ic = [header.index(c) for c in cols]
    groups: dict[float, list[tuple[float, ...]]] = {}
    for line, r in enumerate(rows[1:], start=2):
        try:
            t = float(r[it])
            cells = [r[i].strip() if i < len(r) else "" for i in ic]
            values = tuple(float(c) for c in cells) if any(cells) else None
        except (ValueError, IndexError):
            raise ParameterError(f"{path} line {line}: expected numbers, got {','.join(r)}") from None
        if not math.isfinite(t) or (values and not all(math.isfinite(v) for v in values)):
            raise ParameterError(f"{path} line {line}: NaN or infinite value")
        groups.setdefault(t, [])
        if values:
            groups[t].append(values)
    times = np.array(sorted(groups))
    coords = [np.array(groups[t], float).reshape(-1, len(cols)) for t in times]
    return kind, times, coords


def read_estimates_jsonl(path: str) -> list[tuple[float, list[dict]]]:
    """(t, sources) per block from `doascope locate`'s JSONL output."""
    out = []
    try:
        with open(path, encoding="utf-8") as fh:
            for line_no, line in enumerate(fh, start=1):
                if line.strip():
                    rec = json.loads(line)
                    out.append((float(rec["t"]), list(rec["sources"])))
    except OSError as exc:
        raise ParameterError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (ValueError, KeyError, TypeError):
        raise ParameterError(f"{path} line {line_no} is not a `doascope locate` JSON record") from None
    return out


def run_estimates(recording: str, config, profile) -> tuple[list[tuple[float, list[dict]]], float]:
    """Localize ``recording`` with ``config`` (an AnalysisConfig): (t, sources) per block, and a
    block's length (s)."""
    from doascope.app.api import one_blas_thread
    from doascope.app.runtime.audio import read_recording
    from doascope.dsp.analysis import build_localizer

    loc = build_localizer(config, profile, profile.sample_rate)
    audio, fs = read_recording(recording, profile)
    if audio.shape[0] < loc.block_samples:
        raise ParameterError(f"{recording} is shorter than one analysis block ({loc.block_samples / fs:.3f} s)")
    position = config.mode == "position"
    with one_blas_thread():
        blocks = [(r.t, [s.as_dict() for s in (r.sources if position else r.peaks)]) for r in loc.locate(audio, fs)]
    return blocks, loc.block_samples / fs


def align(block_times: np.ndarray, truth_times: np.ndarray, tolerance: float) -> np.ndarray:
    """For each block, the index of the truth time nearest its centre if within ``tolerance`` seconds,
    -1 if the block lies inside the truth's span but no truth row is that close (no source active),
    and -2 if it lies outside the span (not scored).

    >>> import numpy as np
    >>> align(np.array([0.0, 0.5, 1.0, 3.0]), np.array([0.4, 1.1]), 0.2)
    array([-2,  0,  1, -2])
    """
    import numpy as np

    idx = np.searchsorted(truth_times, block_times)
    lo = np.clip(idx - 1, 0, len(truth_times) - 1)
    hi = np.clip(idx, 0, len(truth_times) - 1)
    nearest = np.where(np.abs(truth_times[lo] - block_times) <= np.abs(truth_times[hi] - block_times), lo, hi)
    close = np.abs(truth_times[nearest] - block_times) <= tolerance
    inside = (block_times >= truth_times[0] - tolerance) & (block_times <= truth_times[-1] + tolerance)
    return np.where(close, nearest, np.where(inside, -1, -2))


def cmd_eval(args) -> int:
    import numpy as np

    from doascope.app.config import analysis_from_args
    from doascope.dsp import evaluation as ev
    from doascope.dsp.grids import directions
    from doascope.hardware_profiles import load_profile

    config = analysis_from_args(args)
    profile = load_profile(args.profile)
    config.check_rate(profile.sample_rate, profile=profile.id)
    position = config.mode == "position"
    kind, t_truth, truth = read_truth(args.truth)
    if position and kind != "position":
        raise ParameterError("position mode is scored against x, y, z truth; the truth file has directions")
    if args.recording.lower().endswith(".jsonl"):
        blocks = read_estimates_jsonl(args.recording)
        block_s = float(np.median(np.diff([b[0] for b in blocks]))) if len(blocks) > 1 else 0.0
    else:
        blocks, block_s = run_estimates(args.recording, config, profile)
    if not blocks:
        raise ParameterError(f"no blocks to score in {args.recording}")
    if kind == "position" and not position:   # directions from the array's origin
        truth = [np.stack(directions(c), axis=1) if len(c) else np.zeros((0, 2)) for c in truth]
        kind = "direction"
    step = float(np.median(np.diff(t_truth))) if len(t_truth) > 1 else 0.0
    tolerance = args.tolerance if args.tolerance is not None else 0.5 * max(step, block_s)
    b_times = np.array([b[0] for b in blocks])
    which = align(b_times, t_truth, tolerance)
    estimated_elevation = any(s.get("elevation", 0.0) for _, srcs in blocks for s in srcs)
    great_circle = kind == "direction" and estimated_elevation
    unit = "m" if position else "deg"
    gate = args.gate if args.gate is not None else (1.0 if position else 30.0)

    def distances(i):
        tr = truth[which[i]] if which[i] >= 0 else np.zeros((0, 3 if position else 2))
        est = blocks[i][1]
        if position:
            return ev.position_distances(tr, [[s["x"], s["y"], s["z"]] for s in est])
        if great_circle:
            return ev.direction_distances(tr[:, 0], tr[:, 1], [s["azimuth"] for s in est],
                                          [s.get("elevation", 0.0) for s in est])
        return ev.azimuth_distances(tr[:, 0], [s["azimuth"] for s in est])

    scored = [i for i in range(len(blocks)) if which[i] != -2]
    if not scored:
        raise ParameterError(f"no block of {args.recording} falls within the truth's times "
                             f"({t_truth[0]:.2f}-{t_truth[-1]:.2f} s)")
    s = ev.score((distances(i) for i in scored), thresholds=M_THRESHOLDS if position else DEG_THRESHOLDS,
                 gate=gate)
    compared = "position" if position else ("direction (great circle)" if great_circle else "azimuth")
    if args.json:
        print(json.dumps(dict(s.as_dict(), unit=unit, compared=compared, tolerance=tolerance)))
    else:
        _print_scores(s, unit, compared, args)
    if args.plot:
        from doascope.app.plots import eval_plot

        eval_plot([(b_times[i], blocks[i][1]) for i in range(len(blocks))], t_truth, truth, args.plot,
                  position=position, title=f"{args.recording} - {profile.name} - {config.method}")
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def _print_scores(s, unit: str, compared: str, args) -> None:
    from rich.console import Console
    from rich.table import Table

    def pct(x):
        return "-" if math.isnan(x) else f"{100 * x:.1f} %"

    def num(x):
        return "-" if math.isnan(x) else f"{x:.2f} {unit}"

    table = Table(title=f"{args.recording} against {args.truth} ({compared}; {s.blocks} blocks, {s.truths} true "
                        f"sources, {s.estimates} estimates)", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("MAE of detections", num(s.mae))
    for x, v in s.accuracy.items():
        table.add_row(f"accuracy within {x:g} {unit}", pct(v))
    table.add_row(f"recall (detected within {s.gate:g} {unit})", pct(s.recall))
    table.add_row("precision", pct(s.precision))
    table.add_row(f"OSPA (cut-off {s.cutoff:g} {unit}, mean over blocks)", num(s.ospa))
    Console(width=max(Console().width, 100)).print(table)
