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

    return AnalysisConfig(method=args.method, n_sources=args.sources, band=tuple(args.band), nfft=args.nfft,
                          hop=args.hop, frames_per_block=args.block, grid=args.grid, resolution=args.resolution,
                          smoothing=args.smoothing, min_separation=args.min_separation, weights=args.weights)


def build_localizer(args, profile: Profile):
    """The offline Localizer (non-overlapping blocks) the analysis options describe, for ``profile``."""
    from doascope.app.engine import build_localizer as build

    return build(analysis_config(args), profile, profile.sample_rate)


def cmd_profiles(args) -> int:
    profiles = list_profiles()
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
    Console(width=max(Console().width, 120)).print(table)
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


def block_record(result) -> dict:
    """The DESIGN.md `locate` record of one block."""
    return {"t": round(result.t, 4), "sources": [p.as_dict() for p in result.peaks]}


def cmd_locate(args) -> int:
    from doascope.app.audio import read_recording

    profile = load_profile(args.profile)
    localizer = build_localizer(args, profile)
    audio, fs = read_recording(args.file, profile)
    if audio.shape[0] < localizer.block_samples:
        raise ParameterError(f"{args.file} is shorter ({audio.shape[0] / fs:.3f} s) than one analysis block "
                             f"({localizer.block_samples / fs:.3f} s)")
    track: list[tuple[float, float, float]] = []
    with _open_output(args.output) as out:
        if args.format == "csv":
            out.write("t,rank,azimuth,elevation,power\n")
        for res in localizer.locate(audio, fs):
            if args.format == "jsonl":
                out.write(json.dumps(block_record(res)) + "\n")
            else:
                if not res.peaks:
                    out.write(f"{res.t:.4f},,,,\n")
                for rank, p in enumerate(res.peaks):
                    out.write(f"{res.t:.4f},{rank},{p.azimuth:.2f},{p.elevation:.2f},{p.power:.4f}\n")
            track.extend((res.t, p.azimuth, p.power) for p in res.peaks)
    if args.plot:
        from doascope.app.plots import azimuth_plot

        azimuth_plot(track, args.plot, title=f"{args.file} - {profile.name} - {args.method}",
                     duration=audio.shape[0] / fs)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0
