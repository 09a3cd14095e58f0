#!/usr/bin/env bash
# tests/bench/rollout_cpu.sh — qw-rollout's generated tokens per second on
# the CPU, on the demo-dense shape (pipelines/configs/demo-dense.json) with
# random weights: 64 prompts of 32 tokens × 4 samples × 128 new tokens (EOS
# ignored), at --max-batch 1 and 64, on 1 and 2 threads.  One line per run.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
PATH=${QW_BIN:-$root/bin}:$PATH
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
cd "$w"
# random weights: qw-pretrain's initialisation, saved after one step at lr 0
python3 "$root/tests/tools/gen_stream.py" 00000000c0ffee01 2048 100 1 >a.qwt
qw-pack -q -T 32 -o data a.qwt
qw-pretrain -q --config "$root/pipelines/configs/demo-dense.json" --data data -T 32 --batch-tokens 32 --steps 1 \
    --lr 0 --out run --threads 1
model=run/$(cat run/latest)
python3 -c '
import json, random
r = random.Random(1)
for i in range(64): print(json.dumps({"prompt_ids": [r.randrange(2048) for _ in range(32)]}))' >prompts.jsonl
for threads in ${THREADS:-1 2}; do
    for mb in ${BATCHES:-1 64}; do
        t0=$(date +%s.%N)
        qw-rollout -q -m "$model" -p prompts.jsonl -n 4 --max-new-tokens 128 --ignore-eos --max-batch "$mb" \
            --threads "$threads" --seed 1 -o out.jsonl
        t1=$(date +%s.%N)
        n=$(python3 -c 'import json,sys; print(sum(len(json.loads(l)["completion_ids"]) for l in open(sys.argv[1])))' out.jsonl)
        python3 -c 'import sys; n, dt = int(sys.argv[1]), float(sys.argv[2]) - float(sys.argv[3])
print("{\"threads\": %s, \"max_batch\": %s, \"generated_tokens\": %d, \"seconds\": %.2f, \"tokens_per_s\": %.0f}" % (sys.argv[4], sys.argv[5], n, dt, n / dt))' \
            "$n" "$t1" "$t0" "$threads" "$mb"
    done
done
