"""Hardware profiles: every shipped file loads with the right shape, and every kind of mistake in
a user's file ends in one ProfileError that names the file and the key."""

import numpy as np
import pytest

from doascope import DoascopeError, ProfileError
from doascope.hardware_profiles import (
    Profile,
    list_profiles,
    load_profile,
    match_device,
    profile_from_dict,
)

# id -> (mics, geometry)
SHIPPED = {
    "azimut_cma": (16, "3d"),
    "matrix_creator": (8, "planar"),
    "matrix_voice": (8, "planar"),
    "minidsp_uma16": (16, "planar"),
    "minidsp_uma8": (7, "planar"),
    "pepper": (4, "planar"),
    "ps3_eye": (4, "linear"),
    "respeaker_4mic_hat": (4, "planar"),
    "respeaker_6mic": (6, "planar"),
    "respeaker_usb_v2": (4, "planar"),
    "respeaker_v1_7mic": (7, "planar"),
    "xmos_7mic": (7, "planar"),
}

# A valid profile as TOML literals, so each bad case changes one value verbatim.
GOOD = {
    "name": '"Test square"',
    "sample_rate": "16000",
    "channels": "6",
    "mic_channels": "[1, 2, 3, 4]",
    "positions": "[[-0.032, 0.0, 0.0], [0.0, -0.032, 0.0], [0.032, 0.0, 0.0], [0.0, 0.032, 0.0]]",
}


def write_toml(tmp_path, fields, name="profile.toml"):
    path = tmp_path / name
    path.write_text("".join(f"{k} = {v}\n" for k, v in fields.items()), encoding="utf-8")
    return path


# --- shipped profiles -------------------------------------------------------------------------

def test_shipped_ids():
    assert [p.id for p in list_profiles()] == sorted(SHIPPED)


@pytest.mark.parametrize("pid", sorted(SHIPPED))
def test_shipped_profile_loads(pid):
    p = load_profile(pid)
    n_mics, geometry = SHIPPED[pid]
    assert isinstance(p, Profile) and p.id == pid and p.path.endswith(f"{pid}.toml")
    assert p.n_mics == n_mics == len(p.mic_channels)
    assert p.geometry == geometry
    assert p.positions.shape == (n_mics, 3) and p.positions.dtype == np.float64
    assert not p.positions.flags.writeable
    assert all(0 <= ch < p.channels for ch in p.mic_channels)
    assert p.sample_rate in (16000, 48000)
    # Every shipped profile cites its source and says where azimuth 0 is.
    assert p.reference and "azimuth 0" in p.reference.lower()
    assert 0.03 < p.aperture < 0.4 and p.room is None


def test_shipped_details():
    usb = load_profile("respeaker_usb_v2")
    assert usb.channels == 6 and usb.mic_channels == (1, 2, 3, 4)
    assert usb.aperture == pytest.approx(0.064)
    np.testing.assert_allclose(usb.centre, 0.0, atol=1e-12)
    assert load_profile("ps3_eye").sample_rate == 16000
    # The corrected acoular UMA-16 layout: Point 1 at +x (the mirrored file has it at -x).
    uma16 = load_profile("minidsp_uma16")
    np.testing.assert_allclose(uma16.positions[0], [0.021, -0.063, 0.0])
    assert uma16.aperture == pytest.approx(np.hypot(0.126, 0.126))


def test_positions_are_read_only():
    p = load_profile("respeaker_usb_v2")
    with pytest.raises(ValueError):
        p.positions[0, 0] = 1.0


# --- loading by name and path -----------------------------------------------------------------

def test_minimal_profile_from_path(tmp_path):
    path = write_toml(tmp_path, GOOD)
    p = load_profile(path)
    assert p.id == str(path) and p.path == str(path)
    assert p.name == "Test square" and p.n_mics == 4 and p.geometry == "planar"
    assert p.device_match is None and p.reference is None and p.room is None
    assert load_profile(str(path)).mic_channels == (1, 2, 3, 4)


def test_room_profile(tmp_path):
    fields = dict(GOOD, room="[[0.0, 6.0], [0.0, 5.0], [0.0, 3.0]]",
                  positions="[[1, 1, 1], [5, 1, 1.5], [5, 4, 1], [1, 4, 2]]")
    p = load_profile(write_toml(tmp_path, fields))
    assert p.room.shape == (3, 2) and not p.room.flags.writeable
    assert p.geometry == "3d"


def test_unknown_name_lists_shipped_ids():
    with pytest.raises(ProfileError) as err:
        load_profile("no_such_array")
    message = str(err.value)
    assert "no_such_array" in message
    assert all(pid in message for pid in SHIPPED)


def test_missing_file(tmp_path):
    with pytest.raises(ProfileError, match="does not exist"):
        load_profile(tmp_path / "absent.toml")


def test_toml_syntax_error_names_file_and_line(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text('name = "x"\nsample_rate = 16000\nchannels = = 4\n', encoding="utf-8")
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    assert "broken.toml" in str(err.value) and "line 3" in str(err.value)


def test_profile_error_is_a_doascope_error():
    assert issubclass(ProfileError, DoascopeError)


# --- validation -------------------------------------------------------------------------------

BAD = {
    "missing name": ({"name": None}, "name"),
    "missing sample_rate": ({"sample_rate": None}, "sample_rate"),
    "missing channels": ({"channels": None}, "channels"),
    "missing mic_channels": ({"mic_channels": None}, "mic_channels"),
    "missing positions": ({"positions": None}, "positions"),
    "misspelt key": ({"sample_rte": "16000"}, "sample_rte"),
    "unknown key": ({"colour": '"red"'}, "colour"),
    "sample_rate string": ({"sample_rate": '"16000"'}, "sample_rate"),
    "sample_rate float": ({"sample_rate": "16000.0"}, "sample_rate"),
    "sample_rate zero": ({"sample_rate": "0"}, "sample_rate"),
    "channels negative": ({"channels": "-6"}, "channels"),
    "channels bool": ({"channels": "true"}, "channels"),
    "mic_channels not a list": ({"mic_channels": "1"}, "mic_channels"),
    "mic_channels floats": ({"mic_channels": "[1.0, 2.0, 3.0, 4.0]"}, "mic_channels"),
    "mic_channels out of range": ({"mic_channels": "[1, 2, 3, 6]"}, "mic_channels"),
    "mic_channels negative": ({"mic_channels": "[-1, 2, 3, 4]"}, "mic_channels"),
    "mic_channels duplicate": ({"mic_channels": "[1, 2, 2, 4]"}, "mic_channels"),
    "positions not triples": ({"positions": "[[0, 0], [1, 0], [0, 1], [1, 1]]"}, "positions"),
    "positions strings": ({"positions": '[["0", 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]]'},
                          "positions"),
    "positions count": ({"positions": "[[0, 0, 0], [0.1, 0, 0], [0, 0.1, 0]]"}, "positions"),
    "positions coincident": (
        {"positions": "[[0, 0, 0], [0.1, 0, 0], [0, 0.1, 0], [0.0005, 0, 0]]"}, "positions"),
    "one mic": ({"mic_channels": "[1]", "positions": "[[0, 0, 0]]"}, "positions"),
    "positions in millimetres": (
        {"positions": "[[-32, 0, 0], [0, -32, 0], [32, 0, 0], [0, 320, 0]]"}, "positions"),
    "positions nan": ({"positions": "[[nan, 0, 0], [0.1, 0, 0], [0, 0.1, 0], [0.1, 0.1, 0]]"},
                      "positions"),
    "positions inf": ({"positions": "[[inf, 0, 0], [0.1, 0, 0], [0, 0.1, 0], [0.1, 0.1, 0]]"},
                      "positions"),
    "device_match not a string": ({"device_match": "3"}, "device_match"),
    "reference not a string": ({"reference": "[1]"}, "reference"),
    "room shape": ({"room": "[[0, 6], [0, 5]]"}, "room"),
    "room min above max": ({"room": "[[0, 6], [5, 0], [0, 3]]"}, "room"),
    "room nan": ({"room": "[[0, 6], [0, nan], [0, 3]]"}, "room"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_profile_raises(tmp_path, case):
    changes, key = BAD[case]
    fields = {k: v for k, v in {**GOOD, **changes}.items() if v is not None}
    path = write_toml(tmp_path, fields, name="bad.toml")
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    message = str(err.value)
    assert key in message and "bad.toml" in message
    assert "\n" not in message


def test_misspelt_key_gets_a_suggestion(tmp_path):
    path = write_toml(tmp_path, dict(GOOD, mic_channel="[1, 2, 3, 4]"))
    with pytest.raises(ProfileError, match="did you mean 'mic_channels'"):
        load_profile(path)


def test_coincident_mics_are_named(tmp_path):
    fields = dict(GOOD, positions="[[0, 0, 0], [0.1, 0, 0], [0, 0.1, 0], [0.1, 0.0004, 0]]")
    with pytest.raises(ProfileError, match="microphones 1 and 3"):
        load_profile(write_toml(tmp_path, fields))


def test_profile_from_dict_names_source():
    data = {"name": "x", "sample_rate": 16000, "channels": 2, "mic_channels": [0, 1],
            "positions": [[0, 0, 0], [0.1, 0, 0]]}
    p = profile_from_dict(data)
    assert p.geometry == "linear" and p.aperture == pytest.approx(0.1) and p.id == "<dict>"
    with pytest.raises(ProfileError, match="my-source.*channels"):
        profile_from_dict(dict(data, channels=1), source="my-source")


# --- device matching --------------------------------------------------------------------------

@pytest.mark.parametrize("device, pid", [
    ("ReSpeaker 4 Mic Array (UAC1.0): USB Audio (hw:2,0)", "respeaker_usb_v2"),
    ("respeaker 4 mic array (uac1.0)", "respeaker_usb_v2"),
    ("seeed-4mic-voicecard: bcm2835-i2s-ac10x-codec0 (hw:1,0)", "respeaker_4mic_hat"),
    ("seeed-8mic-voicecard: bcm2835-i2s-ac108-codec0 (hw:1,0)", "respeaker_6mic"),
    ("miniDSP Micarray: USB Audio (hw:3,0)", "minidsp_uma8"),
    ("miniDSP UMA16: USB Audio (hw:3,0)", "minidsp_uma16"),
    ("USB Camera-B4.09.24.1: USB Audio (hw:1,0)", "ps3_eye"),
])
def test_match_device(device, pid):
    assert match_device(device).id == pid


def test_match_device_none():
    assert match_device("HDA Intel PCH: ALC257 Analog (hw:0,0)") is None
