"""Property-based fuzzing (hypothesis) of what comes from outside: profile TOML files, audio file
headers, and the messages WebSocket/TCP clients send. Whatever the input, the result is a valid
object or one DoascopeError sentence: never another exception, never a hang.

Derandomized and small (tens of examples each), so that CI runs the same cases every time in seconds.
"""

from __future__ import annotations

import io
import json
import os
import string
import tempfile

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="pip install 'doascope[test]' (hypothesis)")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from doascope import DoascopeError  # noqa: E402

FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

# ---------------------------------------------------------------------------------------------
# Profile TOML

_KEYS = ["name", "sample_rate", "channels", "mic_channels", "positions", "device_match", "reference", "room",
         "groups", "c"]

_scalars = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
                     st.text(string.printable, max_size=12), st.booleans())
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=5), max_leaves=20)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if v != v else ("inf" if v == float("inf") else "-inf" if v == float("-inf") else repr(v))
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string is JSON's string syntax for printable text
    return "[" + ", ".join(_toml_value(x) for x in v) + "]"


def _valid_profile() -> dict:
    return {"name": "fuzz", "sample_rate": 16000, "channels": 4, "mic_channels": [0, 1, 2, 3],
            "positions": [[-0.03, 0.0, 0.0], [0.0, -0.03, 0.0], [0.03, 0.0, 0.0], [0.0, 0.03, 0.0]]}


@st.composite
def _profiles(draw):
    data = _valid_profile()
    for key in draw(st.lists(st.sampled_from(_KEYS), max_size=4)):
        if draw(st.booleans()) and key in data:
            del data[key]
        else:
            data[key] = draw(_values)
    return "\n".join(f"{k} = {_toml_value(v)}" for k, v in data.items()) + "\n"


def _load(text: str | bytes):
    from doascope.hardware_profiles import load_profile

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "p.toml")
        with open(path, "wb") as fh:
            fh.write(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
        try:
            prof = load_profile(path)
        except DoascopeError as exc:
            assert str(exc).strip() and "\n" not in str(exc).strip(), str(exc)
            return None
    assert prof.n_mics >= 1 and prof.sample_rate > 0
    assert np.all(np.isfinite(np.asarray(prof.positions)))
    return prof


@FUZZ
@given(_profiles())
def test_fuzzed_profile_toml_loads_or_is_one_error(text):
    _load(text)


@FUZZ
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300)))
def test_arbitrary_bytes_as_a_profile_are_one_error(data):
    _load(data)


def test_the_fuzzers_valid_profile_loads():
    assert _load("\n".join(f"{k} = {_toml_value(v)}" for k, v in _valid_profile().items())) is not None


# ---------------------------------------------------------------------------------------------
# Audio headers


def _audio_bytes(fmt: str) -> bytes:
    import soundfile as sf

    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    sf.write(buf, (0.1 * rng.standard_normal((4000, 4))).astype(np.float32), 16000, format=fmt,
             subtype="PCM_16")
    return buf.getvalue()


_GOOD = {fmt: _audio_bytes(fmt) for fmt in ("WAV", "FLAC")}


@st.composite
def _damaged_headers(draw):
    fmt = draw(st.sampled_from(sorted(_GOOD)))
    data = bytearray(_GOOD[fmt])
    for _ in range(draw(st.integers(1, 8))):  # overwrite bytes of the header (and a little beyond)
        at = draw(st.integers(0, 80))
        data[at] = draw(st.integers(0, 255))
    cut = draw(st.one_of(st.none(), st.integers(0, len(data))))  # and maybe truncate
    return bytes(data[:cut] if cut is not None else data)


def _read(data: bytes):
    from doascope.app.runtime.audio import read_raw
    from doascope.hardware_profiles import load_profile

    prof = load_profile("respeaker_4mic_hat")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "a.wav")
        with open(path, "wb") as fh:
            fh.write(data)
        try:
            audio, mic_map = read_raw(path, prof)
        except DoascopeError as exc:
            assert str(exc).strip() and "\n" not in str(exc).strip(), str(exc)
            return None
    assert audio.dtype == np.float32 and audio.ndim == 2 and np.all(np.isfinite(audio))
    return audio


@FUZZ
@given(_damaged_headers())
def test_damaged_audio_headers_read_or_are_one_error(data):
    _read(data)


@FUZZ
@given(st.binary(max_size=400))
def test_arbitrary_bytes_as_audio_are_one_error(data):
    assert _read(data) is None


# ---------------------------------------------------------------------------------------------
# Client messages (WebSocket and TCP share the parser and the handler)

_json = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20),
                               st.floats(allow_nan=False), st.text(max_size=10)),
                     lambda inner: st.one_of(st.lists(inner, max_size=4),
                                             st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                     max_leaves=15)
_settable = st.dictionaries(st.sampled_from(["method", "band", "sources", "smoothing", "min_separation"]),
                            st.one_of(_json, st.sampled_from(["music", "srp-phat", "nope"]),
                                      st.lists(st.floats(-1e5, 1e5), min_size=2, max_size=2)),
                            min_size=1, max_size=3)
_messages = st.one_of(
    st.text(max_size=200),
    _json.map(json.dumps),
    st.builds(lambda t, rest: json.dumps({"type": t, **rest}),
              st.sampled_from(["control", "subscribe", "ping", "token", "nope"]),
              st.dictionaries(st.sampled_from(["set", "spectrum", "token"]), _json, max_size=2)),
    _settable.map(lambda s: json.dumps({"type": "control", "set": s})),
)


@pytest.fixture(scope="module")
def engine():
    from doascope.app.runtime.engine import AnalysisConfig, Engine
    from doascope.app.runtime.sources import ArraySource
    from doascope.hardware_profiles import load_profile

    prof = load_profile("respeaker_4mic_hat")
    src = ArraySource(np.zeros((16000, prof.channels), np.float32), prof.sample_rate, prof.mic_channels)
    return Engine(src, prof, AnalysisConfig())  # never started: configure() validates and queues


@FUZZ
@given(msg=_messages)
def test_fuzzed_client_messages_are_applied_or_one_error(engine, msg):
    from doascope.app.net import protocol

    try:
        parsed = protocol.parse_client_message(msg)
        if parsed["type"] == "control":
            engine.configure(**protocol.control_changes(parsed))
    except DoascopeError as exc:
        assert str(exc).strip(), msg
