"""Offline subcommands: ``profiles`` and ``locate``, and the set-up every localizing command shares."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager

import numpy as np

from doascope import ParameterError
from doascope.hardware_profiles import Profile, list_profiles, load_profile


def default_nfft(fs: int) -> int:
    """About 32 ms, rounded to a power of two: 512 at 16 kHz, 2048 at 48 kHz."""
    return int(2 ** round(np.log2(0.032 * fs)))


def analysis_config(args):
    """The AnalysisConfig the analysis options (see cli.add_analysis_options) describe."""
    from doascope.app.engine import AnalysisConfig

    return AnalysisConfig(method=args.method, n_sources=sources_option(args.sources), band=tuple(args.band), nfft=args.nfft,
                          hop=args.hop, frames_per_block=args.block, grid=args.grid, resolution=args.resolution,
                          smoothing=args.smoothing, min_separation=args.min_separation, weights=args.weights,
                          mode=getattr(args, "mode", "doa"), search=getattr(args, "search", None),
                          tracker=tracker_settings(args))


def sources_option(value) -> int:
    """--sources K (at most K sources) or auto, as a number; an error names the option."""
    from doascope.dsp.extraction import source_count

    try:
        return source_count(value)
    except ParameterError as exc:
        raise ParameterError(f"--sources: {exc}") from None


def tracker_settings(args) -> dict:
    """The tracker settings the options set (--track-timeout), for either tracker."""
    timeout = getattr(args, "track_timeout", None)
    return {} if timeout is None else {"death_time": timeout}


def build_localizer(args, profile: Profile):
    """The offline Localizer (non-overlapping blocks) the analysis options describe, for ``profile``."""
    from doascope.app.engine import build_localizer as build

    return build(analysis_config(args), profile, profile.sample_rate)


def localizer_for(args, profile: Profile):
    """What ``locate`` (and ``batch``) analyse a recording with: the offline Localizer, or in
    position mode the PositionLocalizer, the analysis options describe."""
    if getattr(args, "mode", "doa") == "position":
        return build_position_localizer(args, profile)
    return build_localizer(args, profile)


def require_one_block(path, n_samples: int, fs: int, localizer) -> None:
    """Refuse a recording shorter than one analysis block (it would give no result at all)."""
    if n_samples < localizer.block_samples:
        raise ParameterError(f"{path} is shorter ({n_samples / fs:.3f} s) than one analysis block "
                             f"({localizer.block_samples / fs:.3f} s)")


def cmd_profiles(args) -> int:
    profiles = list_profiles()
    rooms = [p for p in list_profiles(rooms=True) if p.room is not None]
    if args.json:
        for p in profiles:
            print(json.dumps({"id": p.id, "name": p.name, "sample_rate": p.sample_rate, "channels": p.channels,
                              "mics": p.n_mics, "geometry": p.geometry, "aperture_m": round(p.aperture, 4),
                              "device_match": p.device_match}))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Shipped microphone-array profiles (use the id with --profile)")
    table.add_column("id", no_wrap=True)
    for col in ("name", "rate", "ch", "mics", "geometry", "aperture", "device match"):
        table.add_column(col)
    for p in profiles:
        table.add_row(p.id, p.name, f"{p.sample_rate}", f"{p.channels}", f"{p.n_mics}", p.geometry,
                      f"{p.aperture * 100:.1f} cm", p.device_match or "")
    console = Console(width=max(Console().width, 120))
    console.print(table)
    if rooms:
        table = Table(title="Distributed microphones in a room (use with locate --mode position)")
        for col in ("id", "name", "rate", "ch", "mics", "arrays", "room"):
            table.add_column(col, no_wrap=col == "id")
        for p in rooms:
            size = " x ".join(f"{hi - lo:g}" for lo, hi in p.room)
            table.add_row(p.id, p.name, f"{p.sample_rate}", f"{p.channels}", f"{p.n_mics}",
                          f"{len(p.groups)}" if p.groups else "-", f"{size} m")
        console.print(table)
    return 0


@contextmanager
def _open_output(path: str):
    if path == "-":
        yield sys.stdout
    else:
        try:
            fh = open(path, "w", encoding="utf-8")
        except OSError as exc:
            raise ParameterError(f"cannot write {path}: {exc.strerror}") from None
        with fh:
            yield fh


def block_record(t: float, found) -> dict:
    """The DESIGN.md `locate` record of one block: directions (Peak) or positions (SourcePosition)."""
    return {"t": round(t, 4), "sources": [s.as_dict() for s in found]}


def cmd_locate(args) -> int:
    from doascope.app.audio import read_recording

    from doascope.app.validate import check_analysis_options, check_writable

    profile = load_profile(args.profile)
    check_analysis_options(args, profile)
    check_writable(args.output, "--output")
    check_writable(args.plot, "--plot")
    position = getattr(args, "mode", "doa") == "position"
    localizer = localizer_for(args, profile)
    audio, fs = read_recording(args.file, profile)
    require_one_block(args.file, audio.shape[0], fs, localizer)
    columns = ("x", "y", "z", "power") if position else ("azimuth", "elevation", "power")
    track: list[tuple[float, float, float]] = []
    with _open_output(args.output) as out:
        if args.format == "csv":
            out.write(",".join(("t", "rank") + columns) + "\n")
        for res in localizer.locate(audio, fs):
            found = res.sources if position else res.peaks
            if args.format == "jsonl":
                out.write(json.dumps(block_record(res.t, found)) + "\n")
            else:
                if not found:
                    out.write(f"{res.t:.4f}" + "," * (len(columns) + 1) + "\n")
                for rank, s in enumerate(found):
                    d = s.as_dict()
                    out.write(f"{res.t:.4f},{rank}," + ",".join(str(d[k]) for k in columns) + "\n")
            if not position:
                track.extend((res.t, p.azimuth, p.power) for p in found)
    if args.plot and position:
        print("doascope: --plot draws azimuths; it is ignored in position mode", file=sys.stderr)
    elif args.plot:
        from doascope.app.plots import azimuth_plot

        azimuth_plot(track, args.plot, title=f"{args.file} - {profile.name} - {args.method}",
                     duration=audio.shape[0] / fs)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


# --- position mode (distributed microphones) -----------------------------------------------------------

def position_defaults(fs: int) -> dict:
    """Analysis defaults for position mode. Distributed mics are metres apart: inter-mic delays of up
    to ~20 ms need frames of ~128 ms (2048 at 16 kHz) for the PHAT cross-spectra to stay coherent,
    and blocks of two frames with smoothing 0.7 give an estimate every 128 ms."""
    return {"nfft": 4 * default_nfft(fs), "frames_per_block": 2, "smoothing": 0.7, "band": (200.0, min(7000.0, 0.45 * fs))}


def build_position_localizer(args, profile: Profile, *, step: int | None = None):
    """The PositionLocalizer the analysis options describe for a profile with a ``room``."""
    from doascope.dsp.position import PositionLocalizer

    if profile.room is None:
        raise ParameterError(f"profile {profile.id} has no 'room': position mode needs distributed microphones "
                             "in a room frame and the search volume room = [[xmin, xmax], [ymin, ymax], [zmin, zmax]]")
    opts = position_defaults(profile.sample_rate)
    # The shared analysis options keep their DOA defaults in the parser; only values a user changed
    # override the position-mode defaults.
    if getattr(args, "nfft", None):
        opts["nfft"] = args.nfft
    if getattr(args, "block", 8) != 8:
        opts["frames_per_block"] = args.block
    if getattr(args, "smoothing", 0.5) != 0.5:
        opts["smoothing"] = args.smoothing
    if tuple(getattr(args, "band", (300.0, 3500.0))) != (300.0, 3500.0):
        opts["band"] = tuple(args.band)
    search = getattr(args, "search", None) or "coarse-to-fine"
    return PositionLocalizer(profile.positions, room=profile.room, fs=profile.sample_rate,
                             hop=getattr(args, "hop", None), search=search, groups=profile.groups,
                             n_sources=sources_option(args.sources), step=step, **opts)
