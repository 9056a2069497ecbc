#!/usr/bin/env python3
"""Probe (not served): does a head on the speaker encoder's embedding help the
voice networks tell emotions on a corpus they never heard?

Reads the TSV of `examples/voice_emotion_embed_dump.rs` (first model: networks
that never heard EmoDB), fits a multinomial logistic regression (7 emotions,
classes weighted alike) on RAVDESS's training actors' clip embeddings, and
prints, per penalty, the head alone and its blend with the networks
(half each) on RAVDESS's validation actors (which choose the penalty), its
held-out actors and all of EmoDB. Needs numpy and scikit-learn.

Usage:
  cargo run --release --example voice_emotion_embed_dump -- /tmp/vemo.tsv \
      runs/never-heard-emodb/ensemble/voice_emotion.safetensors \
      models/voice_emotion.safetensors ../shared/datasets/ravdess ../shared/datasets/emodb
  python3 scripts/voice_emotion_embed_probe.py /tmp/vemo.tsv
"""
import sys

import numpy as np
from sklearn.linear_model import LogisticRegression

BLEND = 0.5
PENALTIES = [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0]


def main(path):
    rows = [line.rstrip("\n").split("\t") for line in open(path)]
    corpus = np.array([r[0] for r in rows])
    part = np.array([r[2] for r in rows])
    y = np.array([int(r[3]) for r in rows])
    numbers = np.array([[float(v) for v in r[5:]] for r in rows])
    networks, embedding = numbers[:, :7], numbers[:, 14:]

    def accuracy(p, m):
        return (p[m].argmax(1) == y[m]).mean()

    def balanced(p, m):
        return np.mean([(p[m & (y == c)].argmax(1) == c).mean() for c in np.unique(y[m])])

    ravdess, emodb = corpus == "ravdess", corpus == "emodb"
    train, val, test = (ravdess & (part == p) for p in ("train", "validation", "test"))
    print(f"networks alone: RAVDESS validation {accuracy(networks, val):.4f}, held-out {accuracy(networks, test):.4f}; "
          f"EmoDB never heard {accuracy(networks, emodb):.4f} / balanced {balanced(networks, emodb):.4f}")
    z = (embedding - embedding[train].mean(0)) / (embedding[train].std(0) + 1e-6)
    chosen = None
    for c in PENALTIES:
        fit = LogisticRegression(C=c, max_iter=3000, class_weight="balanced").fit(z[train], y[train])
        head = np.zeros((len(y), 7))
        head[:, fit.classes_] = fit.predict_proba(z)
        blend = (1 - BLEND) * networks + BLEND * head
        print(f"C {c:g}: head alone validation {accuracy(head, val):.4f} held-out {accuracy(head, test):.4f} "
              f"EmoDB {accuracy(head, emodb):.4f}/{balanced(head, emodb):.4f} | blend validation {accuracy(blend, val):.4f} "
              f"held-out {accuracy(blend, test):.4f} EmoDB {accuracy(blend, emodb):.4f}/{balanced(blend, emodb):.4f}")
        # Strongest penalty (smallest C) among ties: the first seen wins ties.
        if chosen is None or accuracy(blend, val) > chosen[0]:
            chosen = (accuracy(blend, val), c)
    print(f"chosen by RAVDESS validation: C {chosen[1]:g}")


if __name__ == "__main__":
    main(sys.argv[1])
