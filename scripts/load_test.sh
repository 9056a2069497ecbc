#!/usr/bin/env bash
# Load test of the release server with its shipped models, using wrk (Debian;
# scripts/setup.sh installs it): images and clips at 1, 8 and 32 concurrent
# clients for $DURATION s each (default 60), then a soak of $SOAK s (default
# 600) with 4 image and 4 clip clients at once, sampling the server's RSS
# every 10 s. Prints a Markdown summary (BENCHMARKS.md quotes it); raw results
# are kept in target/load/.
#
# Usage: scripts/load_test.sh        DURATION=10 SOAK=30 scripts/load_test.sh  (a quick look)
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${DURATION:-60}
soak=${SOAK:-600}
port=${PORT:-18080}
out=target/load
mkdir -p "$out"
command -v wrk >/dev/null || { echo "wrk is missing: run scripts/setup.sh" >&2; exit 1; }
command -v sox >/dev/null || { echo "sox is missing: run scripts/setup.sh" >&2; exit 1; }
cargo build -q --release

image=tests/fixtures/portrait_640x480.jpg
clip="$out/speech_9s.wav"
sox tests/fixtures/speech.wav "$clip" repeat 3   # 8.8 s of speech, 16 kHz mono

start_ns=$(date +%s%N)
./target/release/emotion-ai serve --addr "127.0.0.1:$port" > "$out/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
until curl -sf "http://127.0.0.1:$port/healthz" > /dev/null; do
  kill -0 $server 2>/dev/null || { cat "$out/server.log"; exit 1; }
  sleep 0.01
done
ready_ms=$(( ($(date +%s%N) - start_ns) / 1000000 ))
echo "ready to answer ${ready_ms} ms after start (models loaded)"
echo "{\"ready_ms\": $ready_ms}" > "$out/ready.json"

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$server/status"; }
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$server/status"; }

run() { # name file clients seconds
  local threads=$(( $3 < 2 ? $3 : 2 ))
  UPLOAD="$2" wrk -t "$threads" -c "$3" -d "${4}s" --timeout 30s -s scripts/wrk_upload.lua \
    "http://127.0.0.1:$port/api/v1/predict" | tail -n 1 > "$out/$1.json"
}

echo "| load | clients | requests/s | p50 ms | p99 ms | max ms | 2xx | non-2xx | socket errors | server peak RSS MiB |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for kind in image clip; do
  file=$image
  [ "$kind" = clip ] && file=$clip
  for clients in 1 8 32; do
    run "${kind}_c${clients}" "$file" "$clients" "$duration"
    python3 - "$out/${kind}_c${clients}.json" "$kind" "$clients" "$(hwm_kib)" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
ok = sum(n for s, n in r["statuses"].items() if s.startswith("2"))
bad = sum(n for s, n in r["statuses"].items() if not s.startswith("2"))
print(f"| {sys.argv[2]} | {sys.argv[3]} | {r['per_second']:.1f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | "
      f"{r['max_ms']:.0f} | {ok} | {bad} | {r['socket_errors']} | {int(sys.argv[4]) / 1024:.0f} |")
PY
  done
done

# Soak: images and clips together; RSS every 10 s.
echo "seconds,rss_kib" > "$out/soak_rss.csv"
run soak_image "$image" 4 "$soak" &
wrk_image=$!
run soak_clip "$clip" 4 "$soak" &
wrk_clip=$!
for (( t = 0; t <= soak; t += 10 )); do
  echo "$t,$(rss_kib)" >> "$out/soak_rss.csv"
  sleep 10
done
wait $wrk_image $wrk_clip
python3 - "$out" "$soak" <<'PY'
import csv, json, sys
out, soak = sys.argv[1], int(sys.argv[2])
rows = [(int(r["seconds"]), int(r["rss_kib"])) for r in csv.DictReader(open(f"{out}/soak_rss.csv"))]
first = [kib for t, kib in rows if t <= 60]
last = [kib for t, kib in rows if t >= soak - 60]
results = [json.load(open(f"{out}/soak_{k}.json")) for k in ("image", "clip")]
total = sum(r["requests"] for r in results)
bad = sum(n for r in results for s, n in r["statuses"].items() if not s.startswith("2"))
errors = sum(r["socket_errors"] for r in results)
mib = lambda kib: kib / 1024
print(f"\nsoak {soak} s, 4 image + 4 clip clients: {total} requests, {bad} non-2xx, {errors} socket errors; "
      f"RSS first minute {mib(min(first)):.0f}-{mib(max(first)):.0f} MiB, last minute "
      f"{mib(min(last)):.0f}-{mib(max(last)):.0f} MiB, peak {mib(max(k for _, k in rows)):.0f} MiB")
PY
