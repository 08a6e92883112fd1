"""Hardware profiles: microphone-array geometries and channel maps, one TOML file per array.

A profile says what a capture device delivers (sample rate, channel count), which of its channels
are microphones, and where each microphone sits, in metres, in the array frame (x forward, y left,
z up; azimuth counter-clockwise from +x). The shipped profiles live next to this file as
``<id>.toml``; users can pass any other TOML file of the same schema by path.

Examples
--------
>>> from doascope.hardware_profiles import load_profile
>>> p = load_profile("respeaker_usb_v2")
>>> p.n_mics, p.geometry, round(p.aperture, 3)
(4, 'planar', 0.064)
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

import numpy as np

from doascope import ProfileError

import tomllib

__all__ = ["MicGroup", "Profile", "load_profile", "list_profiles", "profile_from_dict", "match_device"]

REQUIRED_KEYS = ("name", "sample_rate", "channels", "mic_channels", "positions")
OPTIONAL_KEYS = ("device_match", "reference", "room", "groups")
GROUP_KEYS = ("name", "position", "yaw", "mics")

# Two microphones closer than this are almost surely a copy-paste error in the table (as in
# ODAS's delta1010lt.cfg); real capsules are several millimetres across.
_MIN_SPACING_M = 1e-3
# Larger coordinates mean millimetres were given instead of metres; 50 m still admits
# distributed microphones in a hall.
_MAX_COORD_M = 50.0
# Singular values below this (metres) count as zero when deciding linear/planar/3-D: published
# tables round to 0.1 mm at best, far above float noise, so a tight tolerance is safe.
_RANK_TOL_M = 1e-6


@dataclass(frozen=True, eq=False)
class MicGroup:
    """One compact array among several in a room (a ``[[groups]]`` table of a profile).

    Attributes
    ----------
    name : str
        Label of the array ("north wall").
    position : np.ndarray
        (3,) float64 origin of the array's own frame in the room frame, metres.
    yaw : float
        Rotation of the array's frame about the vertical, degrees counter-clockwise: its +x axis
        points at room azimuth ``yaw``.
    offsets : np.ndarray
        (mics, 3) float64 microphone positions in the array's own frame, metres.
    indices : tuple of int
        Which microphones of the profile (rows of ``Profile.positions``) belong to this array.
    """

    name: str
    position: np.ndarray
    yaw: float
    offsets: np.ndarray
    indices: tuple[int, ...]

    @property
    def rotation(self) -> np.ndarray:
        """(3, 3) rotation from the array's frame to the room frame."""
        a = np.radians(self.yaw)
        c, s = np.cos(a), np.sin(a)
        return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])

    @property
    def positions(self) -> np.ndarray:
        """(mics, 3) microphone positions in the room frame, metres."""
        return self.position + self.offsets @ self.rotation.T


@dataclass(frozen=True, eq=False)  # eq=False: array fields make field-wise == ambiguous
class Profile:
    """One microphone array as a capture device delivers it.

    Attributes
    ----------
    id : str
        File stem for a shipped profile (``"respeaker_usb_v2"``), else the path as given.
    name : str
        Human-readable array name.
    sample_rate : int
        Sample rate the device delivers, Hz.
    channels : int
        Number of channels the device delivers.
    mic_channels : tuple of int
        0-based device channels that are microphones, in the order of `positions`.
    positions : np.ndarray
        (mics, 3) float64, microphone positions in metres; read-only.
    device_match : str or None
        Case-insensitive substring of the sound device's name that identifies this array.
    reference : str or None
        Where the geometry comes from and where azimuth 0 is on the physical board.
    room : np.ndarray or None
        (3, 2) float64 search volume ``[[xmin, xmax], [ymin, ymax], [zmin, zmax]]`` in metres for
        distributed microphones placed in a room frame; None for a compact array.
    groups : tuple of MicGroup
        For several compact arrays in one room: each array's placement and microphones (their
        room-frame positions, in group order, make up `positions`); empty otherwise.
    path : str or None
        File the profile was read from.
    """

    id: str
    name: str
    sample_rate: int
    channels: int
    mic_channels: tuple[int, ...]
    positions: np.ndarray
    device_match: str | None = None
    reference: str | None = None
    room: np.ndarray | None = None
    path: str | None = None
    groups: tuple[MicGroup, ...] = ()

    @property
    def n_mics(self) -> int:
        """Number of microphones."""
        return len(self.mic_channels)

    @property
    def geometry(self) -> str:
        """``"linear"``, ``"planar"`` or ``"3d"``: the rank of the centred positions.

        A linear array resolves only the angle to its axis, a planar one cannot tell up from
        down; estimators choose their search grid from this.
        """
        s = np.linalg.svd(self.positions - self.centre, compute_uv=False)
        rank = int(np.count_nonzero(s > _RANK_TOL_M * max(1.0, s[0])))
        return {1: "linear", 2: "planar"}.get(rank, "3d")

    @property
    def aperture(self) -> float:
        """Largest distance between two microphones, m."""
        d = self.positions[:, None, :] - self.positions[None, :, :]
        return float(np.sqrt((d**2).sum(-1)).max())

    @property
    def centre(self) -> np.ndarray:
        """(3,) float64 mean microphone position, m."""
        return self.positions.mean(axis=0)


def _fail(source: str, key: str, problem: str) -> ProfileError:
    end = "" if problem.endswith("?") else "."
    return ProfileError(f"In hardware profile {source}, '{key}' {problem}{end}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)  # TOML true is a bool, not 1


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _positive_int(data: dict, key: str, source: str) -> int:
    value = data[key]
    if not _is_int(value) or value <= 0:
        raise _fail(source, key, f"must be a positive integer, not {value!r}")
    return value


def _number_table(value, rows: int | None, cols: int, key: str, what: str,
                  source: str) -> np.ndarray:
    """Check a list of `rows` (any number if None) lists of `cols` finite numbers.

    Returns
    -------
    np.ndarray
        (rows, cols) float64.
    """
    if not isinstance(value, list) or (rows is not None and len(value) != rows):
        raise _fail(source, key, f"must be {what}")
    for i, row in enumerate(value):
        if not isinstance(row, list) or len(row) != cols or not all(map(_is_number, row)):
            raise _fail(source, key, f"must be {what}, but entry {i} is {row!r}")
    table = np.array(value, dtype=np.float64).reshape(len(value), cols)
    if not np.isfinite(table).all():
        raise _fail(source, key, "contains NaN or infinity")
    return table


def profile_from_dict(data: dict, *, source: str = "<dict>") -> Profile:
    """Validate a parsed profile and build a :class:`Profile`.

    Parameters
    ----------
    data : dict
        The profile's keys as TOML gives them (see DESIGN.md, "Contracts").
    source : str
        Where `data` came from, named in every error message; also the profile's ``id``.

    Returns
    -------
    Profile

    Raises
    ------
    doascope.ProfileError
        With one sentence naming `source` and the offending key.
    """
    if not isinstance(data, dict):
        raise ProfileError(f"Hardware profile {source} must be a table of keys, "
                           f"not {type(data).__name__}.")
    known = REQUIRED_KEYS + OPTIONAL_KEYS
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = (f"did you mean '{close[0]}'?" if close
                    else "allowed keys are " + ", ".join(known))
            raise _fail(source, key, f"is not a profile key; {hint}")
    if "groups" in data:
        if "positions" in data:
            raise _fail(source, "groups", "cannot be given together with 'positions': the groups' "
                        "microphones are the positions")
        groups, group_positions = _groups(data["groups"], source)
    else:
        groups, group_positions = (), None
    missing = [k for k in REQUIRED_KEYS if k not in data and not (k == "positions" and groups)]
    if missing:
        names = ", ".join(f"'{k}'" for k in missing)
        raise ProfileError(f"Hardware profile {source} lacks the required key(s) {names}.")

    name = data["name"]
    if not isinstance(name, str) or not name.strip():
        raise _fail(source, "name", "must be a non-empty string")
    sample_rate = _positive_int(data, "sample_rate", source)
    channels = _positive_int(data, "channels", source)

    mic_channels = data["mic_channels"]
    if not isinstance(mic_channels, list) or not all(map(_is_int, mic_channels)):
        raise _fail(source, "mic_channels", f"must be a list of integers, not {mic_channels!r}")
    for ch in mic_channels:
        if not 0 <= ch < channels:
            raise _fail(source, "mic_channels", f"lists channel {ch}, outside 0..{channels - 1} "
                        f"(channels are 0-based and the device has {channels})")
    dupes = sorted({ch for ch in mic_channels if mic_channels.count(ch) > 1})
    if dupes:
        raise _fail(source, "mic_channels", f"lists channel(s) {dupes} more than once")

    if groups:
        positions = group_positions
        if len(positions) != len(mic_channels):
            raise _fail(source, "groups", f"hold {len(positions)} microphones but 'mic_channels' has "
                        f"{len(mic_channels)}; they must match one to one, in group order")
    else:
        positions = _number_table(data["positions"], None, 3, "positions",
                                  "a list of [x, y, z] positions in metres", source)
    if len(positions) != len(mic_channels):
        raise _fail(source, "positions", f"has {len(positions)} entries but 'mic_channels' has "
                    f"{len(mic_channels)}; they must match one to one")
    if len(positions) < 2:
        raise _fail(source, "positions", "must give at least 2 microphones to localize anything")
    if np.abs(positions).max() > _MAX_COORD_M:
        raise _fail(source, "positions", f"has a coordinate beyond {_MAX_COORD_M:g} m; "
                    "positions are in metres, not millimetres")
    dist = np.sqrt(((positions[:, None] - positions[None, :]) ** 2).sum(-1))
    close_pairs = np.argwhere(np.triu(dist < _MIN_SPACING_M, k=1))
    if len(close_pairs):
        i, j = close_pairs[0]
        raise _fail(source, "positions", f"places microphones {i} and {j} (0-based) within 1 mm "
                    "of each other")
    positions.setflags(write=False)

    for key in ("device_match", "reference"):
        if key in data and not isinstance(data[key], str):
            raise _fail(source, key, f"must be a string, not {data[key]!r}")

    room = None
    if "room" in data:
        room = _number_table(data["room"], 3, 2, "room",
                             "[[xmin, xmax], [ymin, ymax], [zmin, zmax]] in metres", source)
        if not (room[:, 0] < room[:, 1]).all():
            raise _fail(source, "room", "must give each axis as [min, max] with min < max")
        room.setflags(write=False)
        outside = np.any((positions < room[:, 0] - 1e-9) | (positions > room[:, 1] + 1e-9), axis=1)
        if outside.any():
            key = "groups" if groups else "positions"
            raise _fail(source, key, f"places microphone {int(np.argmax(outside))} (0-based) at "
                        f"{positions[int(np.argmax(outside))].round(3).tolist()}, outside the 'room'")

    return Profile(id=source, name=name, sample_rate=sample_rate, channels=channels,
                   mic_channels=tuple(mic_channels), positions=positions,
                   device_match=data.get("device_match"), reference=data.get("reference"),
                   room=room, groups=groups)


def _groups(value, source: str) -> tuple[tuple[MicGroup, ...], np.ndarray]:
    """Validate ``[[groups]]`` tables; returns the groups and their mics' room-frame positions."""
    if not isinstance(value, list) or not value or not all(isinstance(g, dict) for g in value):
        raise _fail(source, "groups", "must be one or more [[groups]] tables, each with 'position', "
                    "'mics' and optionally 'name' and 'yaw'")
    groups, start = [], 0
    for n, g in enumerate(value):
        key = f"groups[{n}]"
        for k in g:
            if k not in GROUP_KEYS:
                close = difflib.get_close_matches(k, GROUP_KEYS, n=1)
                hint = f"did you mean '{close[0]}'?" if close else "allowed keys are " + ", ".join(GROUP_KEYS)
                raise _fail(source, f"{key}.{k}", f"is not a group key; {hint}")
        for k in ("position", "mics"):
            if k not in g:
                raise _fail(source, key, f"lacks '{k}'")
        name = g.get("name", f"array {n}")
        if not isinstance(name, str) or not name.strip():
            raise _fail(source, f"{key}.name", "must be a non-empty string")
        yaw = g.get("yaw", 0.0)
        if not _is_number(yaw) or not np.isfinite(yaw):
            raise _fail(source, f"{key}.yaw", f"must be a number of degrees, not {yaw!r}")
        position = _number_table([g["position"]], 1, 3, f"{key}.position",
                                 "one [x, y, z] room position in metres", source)[0]
        offsets = _number_table(g["mics"], None, 3, f"{key}.mics",
                                "a list of [x, y, z] microphone offsets in metres, in the group's frame", source)
        if len(offsets) < 2:
            raise _fail(source, f"{key}.mics", "must give at least 2 microphones")
        for arr in (position, offsets):
            arr.setflags(write=False)
        groups.append(MicGroup(name=name, position=position, yaw=float(yaw) % 360.0, offsets=offsets,
                               indices=tuple(range(start, start + len(offsets)))))
        start += len(offsets)
    return tuple(groups), np.concatenate([g.positions for g in groups])


def _read(path: Path, id: str) -> Profile:
    source = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProfileError(f"Hardware profile file {source} does not exist.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"Hardware profile file {source} cannot be read: {exc}.") from None
    except tomllib.TOMLDecodeError as exc:
        # The parser's message carries "(at line N, column M)".
        raise ProfileError(f"Hardware profile file {source} is not valid TOML: {exc}.") from None
    return replace(profile_from_dict(data, source=source), id=id, path=source)


def _shipped() -> dict[str, Path]:
    """Shipped profile ids mapped to their files, sorted by id."""
    folder = resources.files(__name__)
    files = [Path(str(f)) for f in folder.iterdir() if f.name.endswith(".toml")]
    return {f.stem: f for f in sorted(files, key=lambda f: f.stem)}


def load_profile(name_or_path: str | os.PathLike) -> Profile:
    """Load a shipped profile by id, or any profile TOML file by path.

    Parameters
    ----------
    name_or_path : str or os.PathLike
        A shipped id such as ``"respeaker_usb_v2"`` (see :func:`list_profiles`), or a path to a
        ``.toml`` file.

    Returns
    -------
    Profile

    Raises
    ------
    doascope.ProfileError
        If the name is neither a shipped id nor an existing file, or the file is invalid.
    """
    text = os.fspath(name_or_path)
    shipped = _shipped()
    if text in shipped:
        return _read(shipped[text], id=text)
    path = Path(text)
    if path.suffix.lower() == ".toml" or path.exists() or os.sep in text or "/" in text:
        return _read(path, id=text)
    raise ProfileError(f"No hardware profile named '{text}'; give a path to a .toml file or one of "
                       f"the shipped profiles: {', '.join(shipped)}.")


def list_profiles(*, rooms: bool = False) -> list[Profile]:
    """Shipped profiles, sorted by id: the compact arrays, and with ``rooms=True`` also the
    distributed-microphone profiles (those with a ``room``, for position mode)."""
    profiles = [_read(path, id=pid) for pid, path in _shipped().items()]
    return [p for p in profiles if rooms or p.room is None]


def match_device(device_name: str) -> Profile | None:
    """The first shipped profile (by id) whose ``device_match`` occurs in `device_name`.

    Parameters
    ----------
    device_name : str
        A sound device name as sounddevice reports it, e.g.
        ``"ReSpeaker 4 Mic Array (UAC1.0): USB Audio (hw:2,0)"``. Case is ignored.

    Returns
    -------
    Profile or None
        None when no shipped profile matches.
    """
    lowered = device_name.lower()
    for profile in list_profiles():
        if profile.device_match and profile.device_match.lower() in lowered:
            return profile
    return None
