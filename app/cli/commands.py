"""Offline subcommands: ``profiles`` and ``locate``."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager

from doascope import ParameterError
from doascope.app.runtime.offline import block_record, localizer_for, require_one_block
from doascope.hardware_profiles import list_profiles, load_profile


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


def cmd_locate(args) -> int:
    from doascope.app.cli.startup import release as release_gc
    from doascope.app.runtime.audio import read_recording
    from doascope.app.config import from_args

    config = from_args(args)
    profile = load_profile(args.profile)
    config.check(profile)
    position = config.analysis.mode == "position"
    localizer = localizer_for(config.analysis, profile)
    release_gc()  # set-up done: the collector back on for the analysis (see doascope.app.cli.startup)
    audio, fs = read_recording(args.file, profile)
    require_one_block(args.file, audio.shape[0], fs, localizer)
    columns = ("x", "y", "z", "power") if position else ("azimuth", "elevation", "power")
    track: list[tuple[float, float, float]] = []
    with _open_output(config.outputs.output or "-") as out:
        if config.outputs.format == "csv":
            out.write(",".join(("t", "rank") + columns) + "\n")
        for res in localizer.locate(audio, fs):
            found = res.sources if position else res.peaks
            if config.outputs.format == "jsonl":
                out.write(json.dumps(block_record(res.t, found)) + "\n")
            else:
                if not found:
                    out.write(f"{res.t:.4f}" + "," * (len(columns) + 1) + "\n")
                for rank, s in enumerate(found):
                    d = s.as_dict()
                    out.write(f"{res.t:.4f},{rank}," + ",".join(str(d[k]) for k in columns) + "\n")
            if not position:
                track.extend((res.t, p.azimuth, p.power) for p in found)
    plot = config.outputs.plot
    if plot and position:
        print("doascope: --plot draws azimuths; it is ignored in position mode", file=sys.stderr)
    elif plot:
        from doascope.app.plots import azimuth_plot

        azimuth_plot(track, plot, title=f"{args.file} - {profile.name} - {config.analysis.method}",
                     duration=audio.shape[0] / fs)
        print(f"wrote {plot}", file=sys.stderr)
    return 0
