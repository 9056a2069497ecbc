#!/usr/bin/env bash
# The served voice recipe measured on a corpus it never heard, in one command.
#
# The server answers a clip with three log-mel voice networks (seeds 1-3)
# and, for sex, their mean with the voice sex head. To know what that gives
# on a new corpus, every part of it must be trained without that corpus:
# this script trains the three networks with `--leave-out CORPUS` (side by
# side, one thread each, resumable), joins them as served, fits the head on
# the other corpora, and runs `eval voice-emotion --leave-out CORPUS` twice:
# the networks alone and as served (with the head).
#
#   scripts/voice_never_heard.sh emodb|speechsex|ravdess
#
# Environment: EMOTION_AI_DATASETS (default ../shared/datasets, holding
# ravdess/, speechsex/ and emodb/), EMOTION_AI_BIN (default
# target/release/emotion-ai), OUT (default runs/never-heard-CORPUS), SEEDS
# (default "1 2 3"), RECORD (a card, e.g. models/voice_emotion.json: the
# served figures on CORPUS go into its metrics.never_heard, with the command),
# HEAD_FLAGS (more flags for `train voice-sex`, as the shipped head's card
# gives them, e.g. "--pitch-summary"; default none), NET_FLAGS (more flags
# for each network's `train voice-emotion`, to measure a recipe change, e.g.
# "--short-excerpts 0.3"; default none).
# About an hour on 2 cores for the networks; a second run skips what is done
# and resumes an interrupted network from its last epoch.
set -euo pipefail

corpus=${1:-}
corpora=(ravdess speechsex emodb)
if [[ ! " ${corpora[*]} " == *" $corpus "* ]]; then
  echo "usage: $0 ravdess|speechsex|emodb (the corpus to leave out)" >&2
  exit 2
fi
datasets=${EMOTION_AI_DATASETS:-../shared/datasets}
bin=${EMOTION_AI_BIN:-target/release/emotion-ai}
out=${OUT:-runs/never-heard-$corpus}
read -r -a seeds <<<"${SEEDS:-1 2 3}"
read -r -a head_flags <<<"${HEAD_FLAGS:-}"
read -r -a net_flags <<<"${NET_FLAGS:-}"

for c in "${corpora[@]}"; do
  if [[ ! -d "$datasets/$c" ]]; then
    echo "$datasets/$c is missing: set EMOTION_AI_DATASETS to the folder holding ${corpora[*]}" >&2
    exit 2
  fi
done
if [[ ! -x "$bin" ]]; then
  echo "$bin is missing: build it with cargo build --release (or set EMOTION_AI_BIN)" >&2
  exit 2
fi

all_data=()
head_data=()
for c in "${corpora[@]}"; do
  all_data+=(--data "$datasets/$c")
  [[ "$c" == "$corpus" ]] || head_data+=(--data "$datasets/$c")
done
mkdir -p "$out"
log() { echo "[$(date -u +%H:%M:%S)] $*"; }

# The networks: the card's recipe with the corpus left out, one per seed.
pids=()
members=()
for seed in "${seeds[@]}"; do
  run_dir="$out/net-s$seed"
  weights="$run_dir/export/voice_emotion.safetensors"
  members+=(--member "$weights")
  if [[ -f "$weights" ]]; then
    log "network seed $seed: done before ($weights)"
    continue
  fi
  resume=()
  [[ -f "$run_dir/state.json" ]] && resume=(--resume)
  log "network seed $seed: training (${resume[*]:-from scratch}), log $run_dir.log"
  OMP_NUM_THREADS=1 "$bin" train voice-emotion "${all_data[@]}" --leave-out "$corpus" \
    --features log-mel --epochs 50 --threads 1 --seed "$seed" "${net_flags[@]}" \
    --run-dir "$run_dir" --export "$weights" "${resume[@]}" >"$run_dir.log" 2>&1 &
  pids+=("$!")
done
failed=0
for pid in "${pids[@]}"; do
  wait "$pid" || failed=1
done
if [[ $failed -ne 0 ]]; then
  echo "a network's training failed: see $out/net-s*.log (run again to resume)" >&2
  exit 1
fi

if [[ ${#seeds[@]} -gt 1 ]]; then
  log "joining ${#seeds[@]} networks as served"
  "$bin" train voice-ensemble "${members[@]}" --out "$out/ensemble/voice_emotion.safetensors" >"$out/ensemble.log" 2>&1
  networks="$out/ensemble/voice_emotion.safetensors"
else
  networks="$out/net-s${seeds[0]}/export/voice_emotion.safetensors"
fi

head="$out/head/voice_sex.safetensors"
if [[ ! -f "$head" ]]; then
  log "fitting the voice sex head without $corpus"
  "$bin" train voice-sex "${head_data[@]}" --head-weight 0.5 "${head_flags[@]}" --export "$head" >"$out/head.log" 2>&1
fi

for sex_from in networks served; do
  model=none
  record=()
  if [[ $sex_from == served ]]; then
    model="$head"
    [[ -n "${RECORD:-}" ]] && record=(--record-never-heard "$RECORD")
  fi
  log "measuring ($sex_from): $out/eval-$sex_from.log"
  "$bin" eval voice-emotion "${all_data[@]}" --leave-out "$corpus" --weights "$networks" \
    --voice-sex-model "$model" --out "$out/eval-$sex_from" "${record[@]}" >"$out/eval-$sex_from.log" 2>&1
  echo "sex from the $sex_from:"
  sed 's/\x1b\[[0-9;]*m//g' "$out/eval-$sex_from.log" | grep '^|'
done
