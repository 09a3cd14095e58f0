#!/bin/bash
# tests/bench/moe_cuda.sh — `make bench-gpu`: MoE training at Qwen3-30B-A3B
# widths with 6 layers (tests/bench/moe-30b-a3b-6l.json: hidden 2048, 32/4
# heads, 128 experts, top-8, expert width 768, vocabulary 151936), bf16,
# rows of 4096, 2 rows a step, on the bench data (train_cuda.sh --prepare):
# qw-pretrain with the experts as one grouped GEMM per projection
# (cublasGemmGroupedBatchedEx) and, in the same run, with a GEMM per expert
# (QW_CUDA_GROUPED_GEMM=0, what qw did before).  QW_BENCH_STEPS steps
# (default 8) each; the first 2 are not counted.
#
# One JSON line per variant on stdout and in $QW_BENCH_RESULTS/moe.jsonl:
# tokens/s (mean over the counted steps), the peak device memory qw logged,
# and the loss of every step (the two variants must agree closely: the same
# sums in another grouping).
#
#   QW_BIN  QW_BENCH_DATA (build/bench-data)  QW_BENCH_RESULTS (build/bench-gpu)
#   QW_BENCH_STEPS (8)  QW_BENCH_PART_LIMIT (150 s per variant)
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
PATH=${QW_BIN:-$root/bin}:$PATH
data=${QW_BENCH_DATA:-build/bench-data}
res=${QW_BENCH_RESULTS:-build/bench-gpu}
steps=${QW_BENCH_STEPS:-8}
lim=${QW_BENCH_PART_LIMIT:-150}
cfg=tests/bench/moe-30b-a3b-6l.json
T=4096
mkdir -p "$res" || exit 1
w=$(mktemp -d) || exit 1
trap 'rm -rf "$w"' EXIT
for v in grouped per_expert; do
    gg=1; [ $v = per_expert ] && gg=0
    echo "moe bench: $v ($steps steps, limit ${lim}s)" >&2
    QW_CUDA_GROUPED_GEMM=$gg qw-pretrain --device cuda --precision bf16 --config $cfg --data "$data" -T $T \
        --batch-tokens $((2 * T)) --micro-batch 2 --steps 1000 --lr 1e-4 --warmup 10 \
        --out "$w/ck-$v" --log "$w/$v.jsonl" -q 2>"$w/$v.err" &
    pid=$! t0=$SECONDS
    while kill -0 $pid 2>/dev/null; do
        n=$(grep -c '"loss"' "$w/$v.jsonl" 2>/dev/null)
        [ "${n:-0}" -ge "$steps" ] && break
        [ $((SECONDS - t0)) -ge "$lim" ] && break
        sleep 0.5
    done
    kill -9 $pid 2>/dev/null
    wait $pid 2>/dev/null
    tail -3 "$w/$v.err" >&2
    python3 - "$v" "$w/$v.jsonl" <<'PY' | tee -a "$res/moe.jsonl"
import json, sys
v, path = sys.argv[1], sys.argv[2]
try:
    rows = [json.loads(l) for l in open(path) if '"loss"' in l]
except OSError:
    rows = []
out = {"bench": "moe", "variant": v, "config": "qwen3-30b-a3b widths, 6 layers", "T": 4096, "rows_per_step": 2,
       "steps_logged": len(rows), "losses": [r["loss"] for r in rows]}
counted = rows[2:]
if counted:
    out["tok_per_s"] = round(sum(r.get("tok_per_s", 0) for r in counted) / len(counted))
    for k in ("mem_peak_bytes", "mfu"):
        if k in counted[-1]:
            out[k] = counted[-1][k]
else:
    out["error"] = "fewer than 3 steps logged"
print(json.dumps(out))
PY
done
