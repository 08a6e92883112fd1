"""One typed configuration owns every analysis default, the per-mode defaults and the checks
(doascope.config, doascope.app.config): the parser's defaults are "not given", a value a user typed
is kept even when it equals a DOA default, and an error names the option the user typed."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from doascope import ParameterError
from doascope.app.cli.main import build_parser, main
from doascope.config import (DEFAULT_BAND, DEFAULT_FRAMES_PER_BLOCK, DEFAULT_SMOOTHING, AnalysisConfig,
                             SettingError, default_nfft, position_defaults)
from doascope.dsp.analysis import build_localizer
from doascope.dsp._checks import band_bins
from doascope.hardware_profiles import load_profile

ROOM = "room_walls_6mic"
ARRAY = "respeaker_usb_v2"


def _config(*argv: str):
    from doascope.app.config import from_args

    return from_args(build_parser().parse_args(["locate", "x.wav", *argv]))


def test_parser_defaults_are_not_given():
    """Every analysis and input option defaults to None: the configuration applies the defaults."""
    args = build_parser().parse_args(["run", "-p", ARRAY])
    for name in ("method", "sources", "band", "nfft", "hop", "block", "grid", "resolution", "smoothing",
                 "min_separation", "weights", "mode", "search", "speed", "track_timeout"):
        assert getattr(args, name) is None, name
    cfg = _config("-p", ARRAY).analysis
    assert cfg == AnalysisConfig()


def test_doa_and_position_defaults_come_from_the_config():
    doa = AnalysisConfig().resolved(16000)
    assert (doa.nfft, doa.hop, doa.frames_per_block, doa.smoothing, doa.band) == (
        512, 256, DEFAULT_FRAMES_PER_BLOCK, DEFAULT_SMOOTHING, DEFAULT_BAND)
    pos = AnalysisConfig(mode="position").resolved(16000)
    assert (pos.nfft, pos.frames_per_block, pos.smoothing, pos.band, pos.search) == (
        2048, 2, 0.7, (200.0, 7000.0), "coarse-to-fine")
    assert AnalysisConfig(mode="position").resolved(8000).band == (200.0, 3600.0)   # 0.45 fs below 7 kHz
    assert default_nfft(48000) == 2048 and position_defaults(48000)["nfft"] == 8192


def test_explicit_doa_values_are_kept_in_position_mode():
    """`--smoothing 0.5 --block 8 --band 300:3500` equal the DOA defaults; position mode keeps them."""
    prof = load_profile(ROOM)
    fs = prof.sample_rate
    given = _config("-p", ROOM, "--mode", "position", "--smoothing", "0.5", "--block", "8",
                    "--band", "300:3500").analysis
    loc = build_localizer(given, prof, fs)
    assert loc.smoothing == 0.5 and loc.frames_per_block == 8
    np.testing.assert_array_equal(loc.bins, band_bins((300.0, 3500.0), fs, loc.nfft))
    defaults = build_localizer(_config("-p", ROOM, "--mode", "position").analysis, prof, fs)
    assert defaults.smoothing == 0.7 and defaults.frames_per_block == 2
    np.testing.assert_array_equal(defaults.bins, band_bins((200.0, 7000.0), fs, defaults.nfft))


@pytest.mark.parametrize("argv, option", [
    (["--smoothing", "1.5"], "--smoothing"),
    (["--smoothing", "nan"], "--smoothing"),
    (["--block", "0"], "--block"),
    (["--nfft", "8"], "--nfft"),
    (["--nfft", "512", "--hop", "600"], "--hop"),
    (["--min-separation", "200"], "--min-separation"),
    (["--resolution", "0"], "--resolution"),
    (["--resolution", "120"], "--resolution"),
    (["--sources", "12"], "--sources"),
    (["--sources", "many"], "--sources"),
    (["--band", "300:9000"], "--band"),     # above the profile's Nyquist frequency
    (["--band", "0:0"], "--band"),
])
def test_an_error_names_the_option_typed(capsys, tmp_path, argv, option):
    wav = tmp_path / "never-read.wav"   # the settings are refused before the file is opened
    try:
        code = main(["locate", str(wav), "-p", ARRAY, *argv])
    except SystemExit as exc:           # refused by the parser's type (the config's parse_band)
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert option in err and "Traceback" not in err


def test_track_timeout_and_speed_errors_name_their_option(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "-p", ARRAY, "--track-timeout", "-1"])
    assert exc.value.code == 2 and "--track-timeout" in capsys.readouterr().err
    assert main(["run", "-p", ARRAY, "--sim", "two-talkers", "--speed", "0"]) == 2
    assert "--speed" in capsys.readouterr().err


def test_setting_errors_name_the_option_and_the_api_names_its_keyword():
    with pytest.raises(SettingError, match=r"^--smoothing: "):
        AnalysisConfig(smoothing=1.0)
    with pytest.raises(SettingError, match=r"^--block: "):
        AnalysisConfig(frames_per_block=0)
    with pytest.raises(SettingError, match=r"^--mode: "):
        AnalysisConfig(mode="sideways")
    import doascope

    x = np.zeros((16000, 4), np.float32)
    with pytest.raises(ParameterError, match=r"^smoothing: "):
        doascope.locate(x, ARRAY, smoothing=1.5)
    with pytest.raises(ParameterError, match=r"^sources: "):
        doascope.locate(x, ARRAY, sources=0)
    with pytest.raises(ParameterError, match=r"^band: "):
        doascope.Localizer(ARRAY, band=(300.0, 9000.0))


def test_values_are_normalised():
    cfg = AnalysisConfig(n_sources="auto", band=[300, 3500], nfft=np.int64(1024), smoothing=np.float32(0.25))
    assert cfg.n_sources == 4 and cfg.band == (300.0, 3500.0) and type(cfg.nfft) is int
    assert cfg.smoothing == 0.25 and type(cfg.smoothing) is float


def test_input_and_output_sections():
    from doascope.app.config import InputConfig

    cfg = _config("-p", ARRAY, "--output", "-", "--format", "csv")
    assert cfg.outputs.output == "-" and cfg.outputs.format == "csv"
    run = build_parser().parse_args(["run", "-p", ARRAY, "--file", "x.wav", "--fast", "--track-timeout", "3"])
    from doascope.app.config import from_args

    c = from_args(run)
    assert c.input.file == "x.wav" and c.input.replay_speed == 0.0 and c.input.speed == 1.0
    assert c.tracker.params() == {"death_time": 3.0} and c.analysis.tracker == {"death_time": 3.0}
    with pytest.raises(ParameterError, match="--speed"):
        InputConfig(speed=-1.0)


def test_help_quotes_the_defaults_of_the_config():
    """The help texts read the defaults from doascope.config (no second copy to drift)."""
    out = subprocess.run([sys.executable, "-m", "doascope.app.cli.main", "locate", "--help"], capture_output=True,
                         text=True, check=True).stdout
    text = " ".join(out.split())
    assert f"default {DEFAULT_BAND[0]:g}:{DEFAULT_BAND[1]:g}" in text
    assert f"default {DEFAULT_SMOOTHING:g}; position mode 0.7" in text
    assert json.dumps(DEFAULT_FRAMES_PER_BLOCK) in text


def test_service_control_checks_are_the_configs_and_name_the_message_key():
    """A control message's values are checked by AnalysisConfig (through Engine.configure); the reply
    names the message's own key, and a good change is applied to the requested settings."""
    import asyncio

    from doascope.app.runtime.engine import Engine
    from doascope.app.net.server import Service
    from doascope.app.runtime.sources import ArraySource

    pytest.importorskip("websockets")
    prof = load_profile("respeaker_4mic_hat")
    src = ArraySource(np.zeros((16000, prof.channels), np.float32), prof.sample_rate, prof.mic_channels)
    service = Service(Engine(src, prof, AnalysisConfig()), prof)   # never started: configure() validates

    def reply(settings: dict) -> dict:
        text = json.dumps({"type": "control", "set": settings})
        return json.loads(asyncio.run(service.handle_control(None, text)))

    for settings, key in (({"smoothing": 1.5}, '"smoothing": '), ({"band": [3000, 300]}, '"band": '),
                          ({"min_separation": 400}, '"min_separation": ')):
        answer = reply(settings)
        assert answer["type"] == "error" and answer["error"].startswith(key), answer
    assert reply({"smoothing": 0.25, "band": [200, 4000]})["type"] == "ack"
    assert service.engine._requested.smoothing == 0.25 and service.engine._requested.band == (200.0, 4000.0)
