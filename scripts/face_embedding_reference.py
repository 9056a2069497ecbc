#!/usr/bin/env python3
"""The face embedder's descriptor of a fixed synthetic grey pattern, computed
as face-api.js computes it (src/faceRecognitionNet in @vladmandic/face-api),
in numpy with TensorFlow's NHWC layout and padding rules: the reference that
tests/face_sex_head.rs compares our tch implementation with.

Usage: python3 scripts/face_embedding_reference.py MANIFEST > tests/fixtures/face_embedding_reference.json
"""
import json
import os
import sys

import numpy as np


def read_weights(manifest_path):
    groups = json.load(open(manifest_path))
    base = os.path.dirname(manifest_path)
    out = {}
    for group in groups:
        data = b"".join(open(os.path.join(base, p), "rb").read() for p in group["paths"])
        at = 0
        for w in group["weights"]:
            count = int(np.prod(w["shape"]))
            q = w.get("quantization")
            if q:
                raw = np.frombuffer(data, np.uint8, count, at).astype(np.float64)
                values = raw * q["scale"] + q["min"]
                at += count
            else:
                values = np.frombuffer(data, "<f4", count, at).astype(np.float64)
                at += 4 * count
            out[w["name"]] = values.reshape(w["shape"])
    return out


def conv2d(x, filters, stride, padding):
    """x: [H, W, Cin]; filters: [k, k, Cin, Cout]; TensorFlow 'same' or 'valid'."""
    k = filters.shape[0]
    h, w, _ = x.shape
    if padding == "same":
        out_h, out_w = -(-h // stride), -(-w // stride)
        pad_h = max((out_h - 1) * stride + k - h, 0)
        pad_w = max((out_w - 1) * stride + k - w, 0)
        x = np.pad(x, ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
    else:
        out_h, out_w = (h - k) // stride + 1, (w - k) // stride + 1
    out = np.zeros((out_h, out_w, filters.shape[3]))
    for dy in range(k):
        for dx in range(k):
            patch = x[dy:dy + stride * out_h:stride, dx:dx + stride * out_w:stride, :]
            out += patch @ filters[dy, dx]
    return out


def conv_layer(x, p, prefix, stride, relu, padding="same"):
    out = conv2d(x, p[prefix + "/conv/filters"], stride, padding) + p[prefix + "/conv/bias"]
    out = out * p[prefix + "/scale/weights"] + p[prefix + "/scale/biases"]
    return np.maximum(out, 0) if relu else out


def pool(x, k, stride, fn):
    h, w, c = x.shape
    oh, ow = (h - k) // stride + 1, (w - k) // stride + 1
    windows = np.stack([x[dy:dy + stride * oh:stride, dx:dx + stride * ow:stride] for dy in range(k) for dx in range(k)])
    return fn(windows, axis=0)


def residual(x, p, name):
    out = conv_layer(x, p, name + "/conv1", 1, True)
    out = conv_layer(out, p, name + "/conv2", 1, False)
    return np.maximum(out + x, 0)


def residual_down(x, p, name):
    out = conv_layer(x, p, name + "/conv1", 2, True, "valid")
    out = conv_layer(out, p, name + "/conv2", 1, False)
    pooled = pool(x, 2, 2, np.mean)
    if pooled.shape[:2] != out.shape[:2]:
        out = np.concatenate([out, np.zeros((1,) + out.shape[1:])], 0)
        out = np.concatenate([out, np.zeros((out.shape[0], 1, out.shape[2]))], 1)
    if pooled.shape[2] != out.shape[2]:
        pooled = np.concatenate([pooled, np.zeros(pooled.shape)], 2)
    return np.maximum(pooled + out, 0)


def describe(p, rgb):
    x = (rgb - np.array([122.782, 117.001, 104.298])) / 255.0
    x = conv_layer(x, p, "conv32_down", 2, True, "valid")
    x = pool(x, 3, 2, np.max)
    for name in ["conv32_1", "conv32_2", "conv32_3"]:
        x = residual(x, p, name)
    x = residual_down(x, p, "conv64_down")
    for name in ["conv64_1", "conv64_2", "conv64_3"]:
        x = residual(x, p, name)
    x = residual_down(x, p, "conv128_down")
    for name in ["conv128_1", "conv128_2"]:
        x = residual(x, p, name)
    x = residual_down(x, p, "conv256_down")
    for name in ["conv256_1", "conv256_2"]:
        x = residual(x, p, name)
    x = residual_down(x, p, "conv256_down_out")
    return x.mean(axis=(0, 1)) @ p["fc"]


def pattern():
    """150x150 grey levels: the pattern tests/face_sex_head.rs makes too."""
    y, x = np.mgrid[0:150, 0:150]
    return ((x * 3 + y * 5 + (x * y) % 17) % 256).astype(np.float64)


def main():
    p = read_weights(sys.argv[1])
    grey = pattern()
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    d = describe(p, rgb)
    json.dump({"pattern": "(x * 3 + y * 5 + (x * y) % 17) % 256, 150x150 grey as three equal channels",
               "descriptor": [round(float(v), 7) for v in d]}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
