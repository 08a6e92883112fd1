"""`doascope bench --live --odas PATH`: the ODAS configuration made from a profile (ODAS itself never
runs in the tests: it is not installed by setup)."""

from __future__ import annotations

import re

from doascope.app.bench.odas import odas_config
from doascope.app.cli.main import main
from doascope.hardware_profiles import load_profile


def test_the_odas_configuration_holds_the_profiles_microphones(tmp_path):
    prof = load_profile("respeaker_usb_v2")
    text = odas_config(prof.positions, prof.sample_rate, "/a/audio.raw", str(tmp_path))
    mus = [tuple(float(v) for v in m) for m in re.findall(r"mu = \( ([-+.\d]+), ([-+.\d]+), ([-+.\d]+) \)", text)]
    assert mus == [tuple(round(float(v), 4) for v in p) for p in prof.positions]
    assert f"nChannels = {prof.n_mics};" in text and "map: (1, 2, 3, 4);" in text
    assert 'path = "/a/audio.raw"' in text and str(tmp_path / "sst.json") in text
    assert text.count("{") == text.count("}")


def test_a_wrong_odaslive_path_is_one_line_and_no_run(tmp_path, capsys):
    assert main(["bench", "--live", "--quick", "--odas", str(tmp_path / "missing")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "odaslive" in err[0]
    assert main(["bench", "--odas", str(tmp_path / "missing")]) != 0
