#!/usr/bin/env python3
"""Writes tests/fixtures/vad_reference.json: Silero VAD's speech probability
of every 32 ms chunk of tests/fixtures/speech.wav and of a 440 Hz tone,
computed in numpy the way the silero-vad wheel's own `tinygrad_model.py`
defines the network (chunks of 512 samples with the 64 before them,
reflect-padded by 64, the STFT convolution, four convolutions, an LSTM cell
carried across chunks, a 1x1 convolution and a sigmoid), from the weights
scripts/setup.sh installs. src/model/vad.rs must reproduce them.

Run once in a throw-away venv (the numbers are committed):

    python3 -m venv /tmp/venv-vad
    /tmp/venv-vad/bin/pip install numpy soundfile safetensors
    /tmp/venv-vad/bin/python scripts/vad_reference.py
"""
import json
import pathlib

import numpy as np
import soundfile
from safetensors.numpy import load_file

root = pathlib.Path(__file__).resolve().parent.parent
W = load_file("/opt/emotion-ai/models/silero_vad_16k.safetensors")


def conv1d(x, w, b, stride=1, pad=0):
    """PyTorch's conv1d: x [N, C, T], w [O, C, K]."""
    if pad:
        x = np.pad(x, ((0, 0), (0, 0), (pad, pad)))
    k = w.shape[2]
    steps = (x.shape[2] - k) // stride + 1
    idx = np.arange(k)[None, :] + stride * np.arange(steps)[:, None]
    y = np.einsum("nctk,ock->not", x[:, :, idx], w)
    return y if b is None else y + b[None, :, None]


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def probabilities(wav):
    n = -(-len(wav) // 512)
    padded = np.concatenate([np.zeros(64, np.float32), wav, np.zeros(n * 512 - len(wav), np.float32)])
    x = np.stack([padded[i * 512 : i * 512 + 576] for i in range(n)])
    x = np.concatenate([x, x[:, -2:-66:-1]], axis=1)[:, None, :]  # reflect pad 64 on the right
    x = conv1d(x, W["stft_conv.weight"], None, stride=128)
    x = np.sqrt(x[:, :129] ** 2 + x[:, 129:] ** 2)
    x = np.maximum(conv1d(x, W["conv1.weight"], W["conv1.bias"], 1, 1), 0)
    x = np.maximum(conv1d(x, W["conv2.weight"], W["conv2.bias"], 2, 1), 0)
    x = np.maximum(conv1d(x, W["conv3.weight"], W["conv3.bias"], 2, 1), 0)
    x = np.maximum(conv1d(x, W["conv4.weight"], W["conv4.bias"], 1, 1), 0)[:, :, 0]
    h = np.zeros(128, np.float32)
    c = np.zeros(128, np.float32)
    out = []
    for t in range(n):
        g = W["lstm_cell.weight_ih"] @ x[t] + W["lstm_cell.bias_ih"] + W["lstm_cell.weight_hh"] @ h + W["lstm_cell.bias_hh"]
        i, f, gg, o = sigmoid(g[:128]), sigmoid(g[128:256]), np.tanh(g[256:384]), sigmoid(g[384:])
        c = f * c + i * gg
        h = o * np.tanh(c)
        out.append(float(sigmoid(W["final_conv.weight"][0, :, 0] @ np.maximum(h, 0) + W["final_conv.bias"][0])))
    return out


speech, rate = soundfile.read(root / "tests/fixtures/speech.wav", dtype="float32")
assert rate == 16000 and speech.ndim == 1
tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.float32)
out = {
    "about": "scripts/vad_reference.py: Silero VAD chunk probabilities in numpy",
    "speech_wav": probabilities(speech),
    "tone_440hz_1s_amplitude_0.5": probabilities(tone),
}
(root / "tests/fixtures/vad_reference.json").write_text(json.dumps(out, indent=1) + "\n")
print(len(out["speech_wav"]), np.round(out["speech_wav"], 2), np.round(out["tone_440hz_1s_amplitude_0.5"], 3))
