#!/usr/bin/env python3
"""Writes tests/fixtures/speaker_embedding_reference.json: the speaker
encoder's embedding of tests/fixtures/speech.wav computed the way
Resemblyzer 0.1.4 does (`preprocess_wav` without its VAD trimming,
`wav_to_mel_spectrogram`, `embed_utterance`), with librosa for the mel
spectrogram and numpy for the LSTM (PyTorch's gate order i, f, g, o), from the
weights scripts/setup.sh installs. The clip (2.18 s) is first repeated to
fill one 3 s window, as the server does with a clip shorter than a window.

Run once in a throw-away venv (the numbers are committed):

    python3 -m venv /tmp/venv-librosa
    /tmp/venv-librosa/bin/pip install librosa==0.11.0 soundfile safetensors
    /tmp/venv-librosa/bin/python scripts/speaker_reference.py
"""
import json
import pathlib

import librosa
import numpy as np
import soundfile
from safetensors.numpy import load_file

root = pathlib.Path(__file__).resolve().parent.parent
weights = load_file("/opt/emotion-ai/models/speaker_encoder.safetensors")
samples, rate = soundfile.read(root / "tests/fixtures/speech.wav", dtype="float32")
assert rate == 16000 and samples.ndim == 1
wav = np.resize(samples, 48000)  # the served window: the clip repeated

# normalize_volume(wav, -30, increase_only=True)
change = -30 - 20 * np.log10(np.sqrt(np.mean(wav.astype(np.float64) ** 2)))
if change > 0:
    wav = wav * 10 ** (change / 20)

# compute_partial_slices(len(wav), rate=1.3, min_coverage=0.75)
hop, frames = 160, 160
n_frames = int(np.ceil((len(wav) + 1) / hop))
step = int(np.round((16000 / 1.3) / hop))
starts = list(range(0, max(1, n_frames - frames + step + 1), step))
if (len(wav) - starts[-1] * hop) / (frames * hop) < 0.75 and len(starts) > 1:
    starts.pop()
wav = np.pad(wav, (0, max(0, (starts[-1] + frames) * hop - len(wav))))
mel = librosa.feature.melspectrogram(y=wav, sr=16000, n_fft=400, hop_length=160, n_mels=40).astype(np.float32).T


def sigmoid(x):
    return 0.5 * (1 + np.tanh(0.5 * x))


x = np.stack([mel[s : s + frames] for s in starts]).astype(np.float64)
for layer in range(3):
    w_ih, w_hh = weights[f"lstm.weight_ih_l{layer}"], weights[f"lstm.weight_hh_l{layer}"]
    bias = weights[f"lstm.bias_ih_l{layer}"] + weights[f"lstm.bias_hh_l{layer}"]
    h = np.zeros((len(x), 256))
    c = np.zeros((len(x), 256))
    outputs = []
    for t in range(frames):
        g = x[:, t] @ w_ih.T + h @ w_hh.T + bias
        i, f, gg, o = sigmoid(g[:, :256]), sigmoid(g[:, 256:512]), np.tanh(g[:, 512:768]), sigmoid(g[:, 768:])
        c = f * c + i * gg
        h = o * np.tanh(c)
        outputs.append(h)
    x = np.stack(outputs, 1)
partials = np.maximum(h @ weights["linear.weight"].T + weights["linear.bias"], 0)
partials /= np.linalg.norm(partials, axis=1, keepdims=True)
embedding = partials.mean(0)
embedding /= np.linalg.norm(embedding)

out = {
    "about": "scripts/speaker_reference.py: Resemblyzer's conventions in librosa + numpy",
    "source": "tests/fixtures/speech.wav, repeated to 48000 samples",
    "partial_starts": starts,
    "embedding": [round(float(v), 7) for v in embedding],
}
(root / "tests/fixtures/speaker_embedding_reference.json").write_text(json.dumps(out) + "\n")
print("partials", starts, "norm", float(np.linalg.norm(embedding)))
