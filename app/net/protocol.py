"""The wire format of the localization service (schema version 1; app/net/schemas/stream.schema.json).

Server -> client, one JSON object per message (a WebSocket text message, or a line on TCP):
``meta`` first on every connection, then one ``doa`` per engine frame, ``ack``/``error`` replies to
control messages. Client -> server (a WebSocket message, or a line on TCP): ``control`` (change
method, band, sources, smoothing, min_separation), ``subscribe`` (the spatial spectrum, off by
default) and ``ping``. ODAS consumers get ODAS's own SST/SSL objects instead (see :func:`odas_sst`,
:func:`odas_ssl`).
"""

from __future__ import annotations

import base64
import json
import math

import numpy as np

from doascope import ParameterError

VERSION = 1
AXES = "array frame, metres: x forward, y left, z up; azimuth degrees counter-clockwise from +x in [0, 360); " \
       "elevation degrees above the x-y plane"
ROOM_AXES = "room frame, metres: x, y along the floor from a corner, z up; tracks and peaks are positions"
MAX_CLIENT_MESSAGE = 64 * 1024  # bytes; control messages are tiny
ODAS_SLOTS = 4                  # ODAS sends a fixed number of source slots per message


def meta(engine, profile, cfg=None) -> dict:
    """The first message on a connection; ``cfg`` overrides the engine's settings (just changed)."""
    cfg = (cfg or engine.config).resolved(engine.fs)   # the mode's defaults filled in, as they run
    if cfg.mode == "position":
        # Positions in the room frame: tracks and peaks carry x, y, z in metres, and the spectrum
        # (on request) is the top-down response map over the room.
        room = np.asarray(profile.room, float)
        from doascope.app.runtime.engine import ROOM_MAP_SPACING as step

        nx, ny = (int(round((hi - lo) / step)) for lo, hi in room[:2])
        grid = {"kind": "room", "points": nx * ny, "resolution": step, "room": room.tolist(),
                "description": f"room map {nx} x {ny} at {step:g} m, search: {cfg.search}"}
        axes = ROOM_AXES
    else:
        g = engine.localizer.estimator.grid
        grid = {"kind": g.kind, "points": len(g), "resolution": g.resolution, "description": g.describe()}
        axes = AXES
    return {"v": VERSION, "type": "meta", "profile": profile.id, "name": profile.name, "fs": engine.fs,
            "nfft": engine.nfft, "hop": engine.hop, "step": engine.step, "method": cfg.method, "mode": cfg.mode,
            "sources": cfg.n_sources, "band": list(cfg.band), "smoothing": cfg.smoothing,
            "mics": np.round(profile.positions, 5).tolist(), "axes": axes, "grid": grid}


def doa(frame, *, spectrum: bool = False) -> dict:
    msg = {"v": VERSION, "type": "doa", "seq": frame.seq, "t": round(frame.t, 4), "wall": round(frame.wall, 3),
           "xruns": frame.xruns, "overruns": frame.overruns, "method": frame.method,
           "tracks": [tr.as_dict() for tr in frame.tracks], "peaks": [p.as_dict() for p in frame.peaks],
           "levels": levels(frame)}
    if frame.status:
        msg["status"] = frame.status
    if spectrum:
        msg["spectrum"] = encode_spectrum(frame.spectrum)
    return msg


LEVEL_FLOOR_DB = -120.0  # dBFS reported for digital silence


def levels(frame) -> dict:
    """Input levels of the newest hop per microphone, dB full scale (0 dBFS: |sample| = 1)."""
    def db(x):
        return [round(max(LEVEL_FLOOR_DB, 20.0 * math.log10(v)) if v > 0 else LEVEL_FLOOR_DB, 1) for v in x.tolist()]
    return {"rms": db(frame.rms), "peak": db(frame.peak_level)}


def encode_spectrum(s: np.ndarray) -> dict:
    """The spectrum as 8-bit levels between its min and max, base64: 360 points in 480 bytes."""
    lo, hi = float(np.min(s)), float(np.max(s))
    q = np.zeros(s.shape, np.uint8) if hi <= lo else np.round((s - lo) / (hi - lo) * 255).astype(np.uint8)
    return {"encoding": "u8-base64", "min": round(lo, 6), "max": round(hi, 6), "points": int(s.size),
            "data": base64.b64encode(q.tobytes()).decode("ascii")}


def decode_spectrum(enc: dict) -> np.ndarray:
    q = np.frombuffer(base64.b64decode(enc["data"]), np.uint8).astype(np.float32)
    return enc["min"] + q / 255.0 * (enc["max"] - enc["min"])


def odas_sst(frame) -> dict:
    """ODAS's tracked-sources object: fixed slots, id 0 for an empty one."""
    src = [{"id": tr.id, "tag": "dynamic", "x": round(tr.x, 3), "y": round(tr.y, 3), "z": round(tr.z, 3),
            "activity": round(tr.activity, 3)} for tr in frame.tracks[:ODAS_SLOTS]]
    src += [{"id": 0, "tag": "", "x": 0.0, "y": 0.0, "z": 0.0, "activity": 0.0}] * (ODAS_SLOTS - len(src))
    return {"timeStamp": frame.seq, "src": src}


def odas_ssl(frame) -> dict:
    """ODAS's potential-sources object: the peaks as unit vectors with their energy E."""
    from doascope.dsp.grids import unit_vectors

    src = []
    for p in frame.peaks[:ODAS_SLOTS]:
        # ODAS sends unit vectors; in position mode doascope's x, y, z are metres in the room.
        x, y, z = (p.x, p.y, p.z) if frame.mode == "position" else unit_vectors(p.azimuth, p.elevation)
        src.append({"x": round(float(x), 3), "y": round(float(y), 3), "z": round(float(z), 3),
                    "E": round(max(0.0, min(1.0, p.power)), 3)})
    src += [{"x": 0.0, "y": 0.0, "z": 0.0, "E": 0.0}] * (ODAS_SLOTS - len(src))
    return {"timeStamp": frame.seq, "src": src}


def error(text: str, *, about: str | None = None) -> dict:
    msg = {"v": VERSION, "type": "error", "error": text}
    if about:
        msg["about"] = about
    return msg


def _no_constants(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _is_number(v) -> bool:
    """A finite int or float that fits a float (JSON's 1e400 is inf; 10**400 overflows a float)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


_CONTROL_KEYS = {"method": "method", "band": "band", "sources": "n_sources", "smoothing": "smoothing",
                 "min_separation": "min_separation"}


def parse_client_message(text) -> dict:
    """Validate a client message; returns it as a dict or raises ParameterError with a sentence."""
    if isinstance(text, bytes):
        raise ParameterError("send JSON text messages, not binary ones")
    if len(text) > MAX_CLIENT_MESSAGE:
        raise ParameterError(f"message too large ({len(text)} bytes; at most {MAX_CLIENT_MESSAGE})")
    try:
        msg = json.loads(text, parse_constant=_no_constants)
    except (ValueError, RecursionError):
        raise ParameterError("the message is not valid JSON") from None
    if isinstance(msg, dict) and "type" not in msg and "token" in msg:
        return {"type": "token"}  # a TCP client's token line, sent to a server that needs none
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ParameterError('a message must be a JSON object with a "type"')
    kind = msg["type"]
    if kind == "subscribe":
        if not isinstance(msg.get("spectrum", False), bool):
            raise ParameterError('"spectrum" must be true or false')
        return msg
    if kind == "control":
        changes = msg.get("set")
        if not isinstance(changes, dict) or not changes:
            raise ParameterError('a control message needs "set": {"method": ..., "band": [lo, hi], '
                                 '"sources": k, "smoothing": a}')
        unknown = set(changes) - set(_CONTROL_KEYS)
        if unknown:
            raise ParameterError(f"cannot set {', '.join(sorted(unknown))}; settable: {', '.join(_CONTROL_KEYS)}")
        return msg
    if kind == "ping":
        return msg
    raise ParameterError(f"unknown message type {kind!r} (use control, subscribe or ping)")


def control_changes(msg: dict) -> dict:
    """Engine.configure keyword arguments from a validated control message. Only the JSON types are
    checked here; the values' ranges are doascope.config.AnalysisConfig's, whose error
    :func:`setting_message` words with the message's own key."""
    out = {}
    for key, value in msg["set"].items():
        if key == "method":
            if not isinstance(value, str):
                raise ParameterError('"method" must be a string')
        elif key == "band":
            if (not isinstance(value, list) or len(value) != 2
                    or not all(_is_number(v) for v in value)):
                raise ParameterError('"band" must be [fmin, fmax] in Hz')
            value = (float(value[0]), float(value[1]))
        elif key == "sources":
            from doascope.config import source_count

            try:
                value = source_count(value)
            except ParameterError as exc:
                raise ParameterError(f'"sources": {exc}') from None
        elif not _is_number(value):
            raise ParameterError(f'"{key}" must be a number')
        out[_CONTROL_KEYS[key]] = value
    return out


def setting_message(exc) -> str:
    """A doascope.config.SettingError worded with the control message's key (``"band": ...``)."""
    key = {v: k for k, v in _CONTROL_KEYS.items()}.get(exc.setting, exc.setting)
    return f'"{key}": {exc.detail}'


def describe(msg: dict) -> str:
    """A service message (meta, doa, or anything else) as one line of text, as `doascope listen` prints it."""
    if msg.get("type") == "meta":
        return (f"meta: {msg.get('name')} ({msg.get('profile')}), {msg.get('fs')} Hz, method {msg.get('method')}, "
                f"{len(msg.get('mics', []))} mics, grid {msg.get('grid', {}).get('description')}")
    if msg.get("type") == "doa":
        tracks = "  ".join(_track(t) for t in msg.get("tracks", [])) or "-"
        return f"t={msg['t']:8.3f} seq={msg['seq']:6d}  tracks: {tracks}"
    return json.dumps(msg)


def _track(t: dict) -> str:
    if "azimuth" in t:
        return f"#{t['id']} {t['azimuth']:6.1f}/{t['elevation']:5.1f} ({t['activity']:.2f})"
    return f"#{t['id']} ({t['x']:.2f}, {t['y']:.2f}, {t['z']:.2f}) m ({t['activity']:.2f})"  # position mode


def dumps(msg: dict) -> str:
    return json.dumps(msg, separators=(",", ":"), allow_nan=False)


def schema() -> dict:
    """The JSON Schema of every message the service sends (app/net/schemas/stream.schema.json)."""
    from importlib import resources

    return json.loads(resources.files("doascope.app.net").joinpath("schemas/stream.schema.json").read_text())
