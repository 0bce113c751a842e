#!/bin/bash
# strand's training throughput beside torch 2.x in one command: strand fp32, torch eager fp32,
# strand bf16 and torch.compile bf16 on gpt2-124m, run one after another in each round, so that
# the ratios of a round come from one stretch of the machine's load.
#
# Usage: bash launch/bench_vs_torch.sh [ROUNDS]            (default 1 round)
# Environment: PY2 (a python with torch 2.x; default: ../shared/peers/setup_torch2.sh makes one),
#   PEERS (the folder of torch2_gpt.py, default ../shared/peers), STEPS (timed steps, default 3),
#   THREADS (default 2), CONFIG (default configs/gpt2-124m.yaml), OUT (JSON lines, default
#   /tmp/bench_vs_torch.jsonl; appended to).
# Each run prints one JSON line; at the end one table per round: tokens/s and the two ratios
# the issue sets targets for (strand fp32 / torch eager fp32, strand bf16 / torch.compile bf16).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-1}
steps=${STEPS:-3}
threads=${THREADS:-2}
config=${CONFIG:-configs/gpt2-124m.yaml}
peers=${PEERS:-../shared/peers}
out=${OUT:-/tmp/bench_vs_torch.jsonl}
py2=${PY2:-$(bash "$peers/setup_torch2.sh")}
[ -x build/strand ] || { echo "bench_vs_torch: build/strand is missing (run launch/setup.sh)" >&2; exit 1; }
export OMP_NUM_THREADS=$threads

run() {  # round, label, command...
  local round=$1 label=$2
  shift 2
  local line
  line=$(nice "$@" | grep '"tokens_per_s"' | tail -1)
  echo "{\"round\": $round, \"label\": \"$label\", \"load\": \"$(cut -d' ' -f1-3 /proc/loadavg)\", \"result\": $line}" |
    tee -a "$out"
}

start=$( (wc -l <"$out") 2>/dev/null || echo 0)
for ((r = 1; r <= rounds; ++r)); do
  run "$r" strand_fp32 build/strand bench train "$config" --steps "$steps" --set precision.compute=fp32
  run "$r" torch_eager_fp32 "$py2" "$peers/torch2_gpt.py" --steps "$steps" --threads "$threads"
  run "$r" strand_bf16 build/strand bench train "$config" --steps "$steps" --set precision.compute=bf16
  run "$r" torch_compile_bf16 "$py2" "$peers/torch2_gpt.py" --compile --bf16 --steps "$steps" --threads "$threads"
done

tail -n +"$((start + 1))" "$out" | python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin if l.strip()]
rounds = sorted({r["round"] for r in rows})
for n in rounds:
    t = {r["label"]: r["result"]["tokens_per_s"] for r in rows if r["round"] == n}
    loads = [r["load"] for r in rows if r["round"] == n]
    print(f"round {n} (1/5/15-minute load averages as each run ended: {loads})")
    for k in ("strand_fp32", "torch_eager_fp32", "strand_bf16", "torch_compile_bf16"):
        print(f"  {k:20s} {t[k]:8.1f} tok/s")
    sf, te, sb, tc = (t[k] for k in ("strand_fp32", "torch_eager_fp32", "strand_bf16", "torch_compile_bf16"))
    print(f"  strand fp32 / torch eager fp32      {sf / te:.2f}x (target >= 1.5)")
    print(f"  strand bf16 / torch.compile bf16    {sb / tc:.2f}x (target >= 1.0)")
    print(f"  strand bf16 / strand fp32           {sb / sf:.2f}x")
'
