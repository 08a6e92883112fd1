"""The live web page that ``doascope serve`` answers on its WebSocket port.

A browser that asks the service's port for ``/`` with a plain HTTP GET gets ``index.html`` (shipped
in the package, self-contained: no CDN, nothing fetched at run time); the page then opens a
WebSocket to the same port and draws what every other client gets: ``meta``, then one ``doa`` per
frame (with the spectrum, to which it subscribes). ``/grid.json`` tells it the direction of every
point of the current search grid, which the wire's ``meta`` only summarises. When the service needs
a token, the page and the grid need it too, in the URL (``/?token=...``), which the page passes on
to its WebSocket.
"""

from __future__ import annotations

import json
from functools import cache
from http import HTTPStatus
from importlib import resources

PAGE_PATHS = ("/", "/index.html")
GRID_PATH = "/grid.json"


@cache
def page_template() -> str:
    return resources.files("doascope.app.net.web").joinpath("index.html").read_text(encoding="utf-8")


def page(methods) -> bytes:
    """The page, with the methods the service offers filled in (its control form lists them)."""
    config = json.dumps({"methods": list(methods)}).replace("</", "<\\/")
    return page_template().replace("/*DOASCOPE_CONFIG*/{}", config, 1).encode("utf-8")


def grid_directions(engine) -> dict:
    """The current search grid's points, in the order of a ``doa`` message's spectrum."""
    if engine.config.mode == "position":
        return {"kind": "room"}  # the map's layout is in meta: room, resolution
    g = engine.localizer.estimator.grid
    return {"kind": g.kind, "azimuth": [round(a, 2) for a in g.azimuth.tolist()],
            "elevation": [round(e, 2) for e in g.elevation.tolist()]}


def _respond(connection, status: int, body: bytes, content_type: str):
    response = connection.respond(status, "")
    response.body = body
    for name, value in (("Content-Type", content_type), ("Content-Length", str(len(body))),
                        ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff")):
        if name in response.headers:  # websockets' Headers add a value on assignment: replace it
            del response.headers[name]
        response.headers[name] = value
    return response


REFUSED = """<!doctype html><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>doascope: token needed</title><body style="font-family:sans-serif;margin:2em">
<h1>doascope: access refused</h1><p id="refused">This service needs its token: open this page as
<code>http://HOST:PORT/?token=...</code> with the token given to <code>doascope serve --token</code>.</p>
"""


def answer(service, connection, request, *, authorised: bool):
    """The HTTP response to a request that is not a WebSocket handshake."""
    path = request.path.partition("?")[0]
    if path not in (*PAGE_PATHS, GRID_PATH):
        return _respond(connection, HTTPStatus.NOT_FOUND, b"not found: the live page is at /\n",
                        "text/plain; charset=utf-8")
    if not authorised:
        return _respond(connection, HTTPStatus.UNAUTHORIZED, REFUSED.encode(), "text/html; charset=utf-8")
    if path == GRID_PATH:
        body = json.dumps(grid_directions(service.engine), separators=(",", ":")).encode()
        return _respond(connection, HTTPStatus.OK, body, "application/json")
    from doascope.dsp.estimators import available_methods

    return _respond(connection, HTTPStatus.OK, page(available_methods()), "text/html; charset=utf-8")
