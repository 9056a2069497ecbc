#!/usr/bin/env bash
# Regenerates the audio test fixtures in tests/fixtures from synthesized speech
# (espeak-ng, no recording of anyone): one spoken sentence at 16 kHz, and the
# same clip in every container the decoder is tested on.
#
# Needs espeak-ng and sox (scripts/setup.sh installs them) and, for M4A/AAC and
# WebM/Opus, which sox cannot write, the ffmpeg binary from PyPI's
# imageio-ffmpeg in a throw-away venv. Tests do not run this: they read the
# committed files.
set -euo pipefail
cd "$(dirname "$0")/.."
out=tests/fixtures
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q imageio-ffmpeg==0.6.0
ffmpeg=$("$tmp/venv/bin/python" -c 'import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())')

espeak-ng -v en-us -s 150 -w "$tmp/raw.wav" "Kids are talking by the door."
# 16 kHz mono 16-bit, the model's rate: the MFCC reference is computed on it.
sox "$tmp/raw.wav" -r 16000 -c 1 -b 16 "$out/speech.wav"
# Other rates and channel counts, to exercise mixing and resampling.
sox "$tmp/raw.wav" -r 44100 -c 2 "$out/speech.flac"
sox "$tmp/raw.wav" -r 22050 -c 1 -C 64 "$out/speech.mp3"
sox "$tmp/raw.wav" -r 48000 -c 2 -C 2 "$out/speech.ogg"
"$ffmpeg" -loglevel error -y -i "$tmp/raw.wav" -ar 44100 -ac 2 -c:a aac -b:a 64k "$out/speech.m4a"
# WebM/Opus is what browsers record; symphonia cannot decode it, so it must be
# refused with 415.
"$ffmpeg" -loglevel error -y -i "$tmp/raw.wav" -ar 48000 -c:a libopus -b:a 32k "$out/speech.webm"
# An hour of silence (8 kHz, FLAC's constant subframes make it 96 kB): the
# decoder must give up at the duration limit, not decode an hour.
sox -n -r 8000 -c 1 -b 16 -C 8 "$out/hour_of_silence.flac" trim 0 3600
ls -l "$out"/speech.* "$out/hour_of_silence.flac"
