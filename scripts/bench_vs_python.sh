#!/usr/bin/env bash
# Times MFCC extraction and Haar face detection in this crate and, on the same
# files in the same run, with the Python stack the original project used
# (librosa, OpenCV-Python from PyPI in a throw-away venv), and prints the
# ratios as a Markdown table (BENCHMARKS.md quotes it).
#
# Usage: scripts/bench_vs_python.sh   (needs PyPI; the venv is deleted after)
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/bench
mkdir -p "$out"
venv=$(mktemp -d)
trap 'rm -rf "$venv"' EXIT

python3 -m venv "$venv"
"$venv/bin/pip" install -q librosa==0.11.0 soundfile opencv-python-headless==4.12.0.88 numpy

rust=$(cargo run -q --release --example bench_compare -- "$out")
params=$(python3 -c 'import json,sys; print(json.dumps(json.loads(sys.argv[1])["detect_params"]))' "$rust")
python=$("$venv/bin/python" scripts/bench_python.py "$out" tests/fixtures "$params")
echo "$rust" > "$out/rust.json"
echo "$python" > "$out/python.json"

python3 - "$rust" "$python" <<'PY'
import json, os, sys
rust, py = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"librosa {py['librosa']}, OpenCV-Python {py['opencv']}; {os.cpu_count()} cores; medians of 100 runs after 0.5 s of warm-up, ms\n")
print("| work | Rust (this crate) | Python | Python / Rust |")
print("|---|---|---|---|")
rows = [(f"MFCC, {s} s clip{how}", f"mfcc_{s}s{key}")
        for how, key in ((f" ({rust['cores']} threads)", ""), (" (one thread)", "_one_thread")) for s in (3, 10, 60)]
rows += [("Haar detection, 640x480 portrait", "detect_portrait_640x480"),
        ("Haar detection, 800x300 group", "detect_group")]
for label, key in rows:
    faces = f" ({rust[key + '_faces']} / {py[key + '_faces']} faces)" if key + "_faces" in rust else ""
    python_ms = py[key.removesuffix("_one_thread")]
    print(f"| {label}{faces} | {rust[key]:.3f} | {python_ms:.2f} | {python_ms / rust[key]:.1f}x |")
PY
