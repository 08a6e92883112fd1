"""Checks that the service's ports are free, made before any work starts.

The settings' own checks belong to their typed sections (doascope.config.AnalysisConfig,
doascope.app.config); each failure is a :class:`doascope.ParameterError` whose sentence names the
option as the user typed it, so a wrong value costs one line and no time: nothing is simulated,
opened or bound first.
"""

from __future__ import annotations

import socket

from doascope import ParameterError


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
