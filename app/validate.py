"""Checks of the command-line options, made before any work starts.

Each failure is a :class:`doascope.ParameterError` whose sentence names the option as the user
typed it, so a wrong value costs one line and no time: nothing is simulated, opened or bound first.
"""

from __future__ import annotations

import math
import os
import socket

from doascope import ParameterError


def _finite(value) -> bool:
    return value is not None and math.isfinite(float(value))


def _positive(args, name: str, option: str, what: str) -> None:
    value = getattr(args, name, None)
    if value is not None and not (_finite(value) and value > 0):
        raise ParameterError(f"{option} must be a positive number of {what}, got {value:g}")


def check_analysis_options(args, profile=None) -> None:
    """The options of cli.add_analysis_options (all but --sources, which the analysis checks);
    with ``profile``, also the band against its Nyquist frequency."""
    _positive(args, "resolution", "--resolution", "degrees")
    resolution = getattr(args, "resolution", None)
    if resolution is not None and resolution > 90:
        raise ParameterError(f"--resolution is the grid spacing in degrees, at most 90, got {resolution:g}")
    block = getattr(args, "block", None)
    if block is not None and block < 1:
        raise ParameterError(f"--block is the number of STFT frames per block, at least 1, got {block}")
    nfft, hop = getattr(args, "nfft", None), getattr(args, "hop", None)
    if nfft is not None and nfft < 16:
        raise ParameterError(f"--nfft must be at least 16 samples, got {nfft}")
    if hop is not None and not (1 <= hop <= (nfft or hop)):
        raise ParameterError(f"--hop must be 1 to --nfft samples, got {hop}")
    smoothing = getattr(args, "smoothing", None)
    if smoothing is not None and not (_finite(smoothing) and 0 <= smoothing < 1):
        raise ParameterError(f"--smoothing must be at least 0 and below 1, got {smoothing:g}")
    sep = getattr(args, "min_separation", None)
    if sep is not None and not (_finite(sep) and 0 <= sep <= 180):
        raise ParameterError(f"--min-separation must be 0 to 180 degrees, got {sep:g}")
    band = getattr(args, "band", None)
    if band is not None and profile is not None:
        nyquist = profile.sample_rate / 2
        if band[1] > nyquist:
            raise ParameterError(f"--band {band[0]:g}:{band[1]:g} goes above {nyquist:g} Hz, the Nyquist frequency "
                                 f"of profile '{profile.id}' ({profile.sample_rate} Hz)")


def check_input_options(args) -> None:
    """--speed, --loop and --duration of run/serve/gui inputs."""
    speed = getattr(args, "speed", None)
    if speed is not None and not (_finite(speed) and speed > 0):
        raise ParameterError(f"--speed must be a positive factor (1 is real time; --fast for as fast as possible), "
                             f"got {speed:g}")
    _positive(args, "duration", "--duration", "seconds")


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


def check_run_options(args, profile=None) -> None:
    """Everything `doascope run` can check before simulating or opening anything."""
    check_analysis_options(args, profile)
    check_input_options(args)
    check_writable(getattr(args, "output", None), "--output")
    check_writable(getattr(args, "record", None), "--record")


def check_ports_free(host: str, ports) -> None:
    """That nothing listens on ``host``:PORT for each given port, before a scene is simulated or a
    file read for the service (which would only find out afterwards)."""
    for option, port in ports:
        if port is None:
            continue
        if not 0 <= port <= 65535:
            raise ParameterError(f"{option} must be 0 to 65535, got {port}")
        if port == 0:
            continue
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except socket.gaierror as exc:
            raise ParameterError(f"--host {host}: {exc.strerror}") from None
        family, kind, proto, _, addr = infos[0]
        with socket.socket(family, kind, proto) as s:
            # As the servers will bind: SO_REUSEADDR, so a port in TIME_WAIT is not taken for busy.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(addr)
            except OSError as exc:
                raise ParameterError(f"{option} {port}: cannot listen on {host}: {exc.strerror or exc}") from None
