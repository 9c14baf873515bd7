#!/usr/bin/env bash
# Train models side by side on one GPU, then evaluate each on the test split. This is how the GPU
# models in generation/checkpoints/ were made, through the `device` tool:
#
#   bench/gpu_train.sh DATA OUT MINUTES RUN...
#
# DATA: a MIDI folder or its melodies-*.pt cache (python -m catalog.corpus DIR; any training run on
# DIR writes the cache); OUT: where reports, logs and checkpoints land; MINUTES: training budget of
# each run; RUN: mel_2bar_large, mel_16bar_large, mel_16bar_demo, or mel_2bar_large_more (continues
# from $INIT, a mel_2bar_large model.pt, at schedule step $INIT_STEP). python3 only, no Django.
set -u
DATA=$1 OUT=$2 MIN=$3
shift 3
RUNS=${RUNS:-/tmp/runs}
mkdir -p "$OUT" "$RUNS"
export PYTHONUNBUFFERED=1
train() {  # run-name config [train args...]
  local name=$1 config=$2; shift 2
  python3 -m generation.vae.train --config "$config" --data "$DATA" --out "$RUNS/$name" --minutes "$MIN" \
    --threads 2 --half "$@" >"$OUT/$name.train.log" 2>&1
}
for run in "$@"; do
  case $run in
    mel_2bar_large | mel_16bar_large) train "$run" "$run" & ;;
    mel_2bar_large_more) train "$run" mel_2bar_large --init "$INIT" --init-step "$INIT_STEP" & ;;
    # The demo model: small enough for 0.2 s per melody on one CPU thread and a 20 MB file.
    mel_16bar_demo) train "$run" mel_16bar --set embed_dim=32 enc_hidden=256 z_dim=128 conductor_hidden=256 \
      conductor_dim=128 dec_hidden=256 dec_layers=2 dropout=0.2 batch_size=256 lr=1e-3 lr_min=1e-5 \
      lr_decay=0.9998 free_bits=128 sampling_max=0.3 sampling_warmup=1500 sampling_ramp=2500 & ;;
    *) echo "unknown run $run"; exit 2 ;;
  esac
done
wait
for name in "$@"; do
  [ -f "$RUNS/$name/model.pt" ] || { echo "$name: no model.pt"; continue; }
  timeout 150 python3 -m generation.vae.evaluate --checkpoint "$RUNS/$name/model.pt" --data "$DATA" \
    --out "$RUNS/$name/eval.json" --device cuda --baseline-minutes 1 --threads 2 >"$OUT/$name.eval.log" 2>&1 &
done
wait
for name in "$@"; do
  for f in model.pt report.json curves.png eval.json eval.png; do
    # the large 16-bar weights (41 MB in fp16) are too big to commit or fetch through the device tool
    [ "$name/$f" = mel_16bar_large/model.pt ] && [ -z "${KEEP_LARGE:-}" ] && continue
    [ -f "$RUNS/$name/$f" ] && cp "$RUNS/$name/$f" "$OUT/${name}_$f"
  done
done
