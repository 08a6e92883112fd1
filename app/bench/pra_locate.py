"""pyroomacoustics' SRP-PHAT over a whole file, block by block as ``doascope locate`` does (the same
STFT size, hop, block and band): the reference that ``doascope bench`` times ``locate`` against, run
as its own command: ``python -m doascope.app.bench.pra_locate FILE OUT.jsonl POSITIONS_JSON``."""

from __future__ import annotations

import json
import sys

import numpy as np

from doascope.config import DEFAULT_BAND, DEFAULT_FRAMES_PER_BLOCK, default_nfft


def main(path: str, out: str, positions_json: str) -> None:
    import pyroomacoustics as pra
    import soundfile as sf

    x, fs = sf.read(path, dtype="float32", always_2d=True)
    L = np.array(json.loads(positions_json))[:, :2].T
    nfft, frames = default_nfft(fs), DEFAULT_FRAMES_PER_BLOCK
    hop = nfft // 2
    X = pra.transform.stft.analysis(x, nfft, hop, win=pra.hann(nfft))  # (frames, freqs, mics)
    X = np.ascontiguousarray(X.transpose(2, 1, 0))
    doa = pra.doa.algorithms["SRP"](L, fs, nfft, c=343.0, num_src=1, azimuth=np.radians(np.arange(360.0)))
    with open(out, "w") as fh:
        for b in range(X.shape[2] // frames):
            doa.locate_sources(X[:, :, b * frames:(b + 1) * frames], num_src=1, freq_range=list(DEFAULT_BAND))
            t = (b * frames * hop + ((frames - 1) * hop + nfft) / 2) / fs
            fh.write(json.dumps({"t": t, "sources": [{"azimuth": float(np.degrees(doa.azimuth_recon[0]))}]}) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:4])
