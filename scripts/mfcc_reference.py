#!/usr/bin/env python3
"""Writes tests/fixtures/mfcc_reference.json: librosa's MFCCs of
tests/fixtures/speech.wav with the conventions of src/features.rs.

Run once in a throw-away venv (the numbers are committed, librosa is not a
dependency of the project):

    python3 -m venv /tmp/venv-librosa
    /tmp/venv-librosa/bin/pip install librosa==0.11.0 soundfile
    /tmp/venv-librosa/bin/python scripts/mfcc_reference.py
"""
import json
import pathlib

import librosa
import numpy as np
import soundfile

root = pathlib.Path(__file__).resolve().parent.parent
samples, rate = soundfile.read(root / "tests/fixtures/speech.wav", dtype="float64")
assert rate == 16000 and samples.ndim == 1

params = dict(sr=16000, n_fft=512, win_length=400, hop_length=160, n_mels=64, fmin=0.0, fmax=8000.0)
mel = librosa.feature.melspectrogram(
    y=samples, window="hann", center=True, pad_mode="constant", power=2.0, htk=False, norm="slaney", **params
)
log_mel = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)
mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=40, dct_type=2, norm="ortho")

# Every 4th frame keeps the file small while covering silence and speech.
frames = list(range(0, mfcc.shape[1], 4))
reference = {
    "source": "tests/fixtures/speech.wav",
    "librosa": librosa.__version__,
    "params": {**params, "n_mfcc": 40, "window": "hann", "center": True, "pad_mode": "constant",
               "power_to_db": {"ref": 1.0, "amin": 1e-10, "top_db": None}, "dct": "type 2, ortho"},
    "n_frames": int(mfcc.shape[1]),
    "frames": frames,
    # mfcc[c][i] is coefficient c of frame frames[i].
    "mfcc": [[round(float(v), 4) for v in mfcc[c, frames]] for c in range(mfcc.shape[0])],
}
out = root / "tests/fixtures/mfcc_reference.json"
out.write_text(json.dumps(reference, separators=(",", ":")) + "\n")
print(f"{out}: {mfcc.shape[1]} frames, {len(frames)} kept, range {mfcc.min():.1f}..{mfcc.max():.1f}")
