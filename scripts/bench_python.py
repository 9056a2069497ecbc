#!/usr/bin/env python3
"""The Python half of scripts/bench_vs_python.sh: the same work as
examples/bench_compare.rs with the original project's stack (librosa MFCC,
OpenCV-Python's Haar cascade), on the same files, timed the same way
(median of 100 runs after half a second of untimed ones). Prints JSON.

Usage: bench_python.py BENCH_DIR FIXTURES_DIR DETECT_PARAMS_JSON
"""
import json
import sys
import time

import cv2
import librosa
import numpy as np
import soundfile


def median_ms(work, runs=100):
    # Untimed calls for at least half a second (and at least 3) first, as
    # examples/bench_compare.rs does: an idle core of this VM wakes slowly.
    warmup, calls = time.perf_counter(), 0
    while calls < 3 or time.perf_counter() - warmup < 0.5:
        work()
        calls += 1
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append((time.perf_counter() - start) * 1000.0)
    return sorted(times)[len(times) // 2]


def main():
    bench_dir, fixtures, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    results = {"librosa": librosa.__version__, "opencv": cv2.__version__}
    # OpenCV's default threading on both sides (it uses every core in detectMultiScale).
    for seconds in (3, 10, 60):
        y, rate = soundfile.read(f"{bench_dir}/speech_{seconds}s.wav", dtype="float32")
        assert rate == 16000

        def mfcc():
            mel = librosa.feature.melspectrogram(
                y=y, sr=16000, n_fft=512, win_length=400, hop_length=160, n_mels=64, fmin=0.0, fmax=8000.0,
                window="hann", center=True, pad_mode="constant", power=2.0, htk=False, norm="slaney")
            return librosa.feature.mfcc(S=librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None),
                                        n_mfcc=40, dct_type=2, norm="ortho")

        results[f"mfcc_{seconds}s"] = median_ms(mfcc)

    cascade = cv2.CascadeClassifier(params["cascade"])
    for stem in ("portrait_640x480", "group"):
        gray = cv2.cvtColor(cv2.imread(f"{fixtures}/{stem}.jpg"), cv2.COLOR_BGR2GRAY)
        height, width = gray.shape
        scale = min(params["max_side"] / max(width, height), 1.0)
        if scale < 1.0:
            gray = cv2.resize(gray, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
        side = max(int(min(gray.shape) * params["min_face_fraction"]), params["min_face_pixels"])

        def detect():
            return cascade.detectMultiScale(cv2.equalizeHist(gray), scaleFactor=params["scale_factor"],
                                            minNeighbors=params["min_neighbors"], minSize=(side, side))

        results[f"detect_{stem}"] = median_ms(detect)
        results[f"detect_{stem}_faces"] = len(detect())
    print(json.dumps(results))


if __name__ == "__main__":
    main()
