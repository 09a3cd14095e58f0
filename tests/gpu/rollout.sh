#!/bin/bash
# tests/gpu/rollout.sh — qw-rollout --device cuda (bf16) on the parity
# fixtures (tests/golden), run by tests/gpu/run.sh after tools.sh; prints
# PASS/FAIL lines:
#   - greedy completions teacher-forced through the CPU's fp32 forward: the
#     CUDA token is the CPU's argmax wherever the CPU's top-2 margin exceeds
#     the bf16 allowance, and every logprob is within it
#     (tests/gpu/rollout_gpu.py derives it); the share of argmax agreement
#     and the free-running agreement with the CPU rollout are printed;
#   - trainer agreement: sampled tokens (temperature 0.8, top-k 40, top-p
#     0.95), their raw_logprobs against the bf16 training forward on the
#     device (qw-eval forward): at most 1% of exp(train − rollout) outside
#     [0.9, 1.1], the distribution printed;
#   - --deterministic: tokens and log-probs the same at max-batch 1 and 16,
#     beside other prompts, and (dense) with and without decode graphs.
# Programs come from $QW_BIN; every run has a time limit (QW_GPU_LIMIT
# seconds, default 180).  QW_GPU_DEVICE=cpu runs it on the CPU (plumbing).
root=$(cd "$(dirname "$0")/../.." && pwd)
export QW_SRCDIR=${QW_SRCDIR:-$root}
PATH=${QW_BIN:-$root/bin}:$PATH
dev=${QW_GPU_DEVICE:-cuda}
. "$QW_SRCDIR/tests/tools/lib.sh"
cd "$tmp" || exit 1
lim=${QW_GPU_LIMIT:-180}
limit=(timeout -k 10 "$lim")
note() { echo "rollout.sh: [${SECONDS}s] $*"; }
python3 - >ids.jsonl <<'PY'
import json
for i, n in enumerate([1, 4, 16, 17, 33]):
    print(json.dumps({"prompt_ids": [(7 * i + 13 * t + 3) % 256 for t in range(n)]}))
PY
for m in dense_tied dense_yarn moe; do
    md=$QW_SRCDIR/tests/golden/$m/model
    g=(-m "$md" -p ids.jsonl --temperature 0 --max-new-tokens 32 --ignore-eos -n 2 --max-batch 4 -q)
    expect_status "gpu_rollout_${m}_cpu_greedy" 0 "${limit[@]}" qw-rollout "${g[@]}" --device cpu -o "r_${m}_cpu.jsonl"
    expect_status "gpu_rollout_${m}_greedy" 0 "${limit[@]}" qw-rollout "${g[@]}" --device "$dev" -o "r_${m}_gpu.jsonl"
    if out=$(python3 "$QW_SRCDIR/tests/gpu/rollout_gpu.py" greedy "$md" "r_${m}_cpu.jsonl" "r_${m}_gpu.jsonl" 2>&1); then
        pass "gpu_rollout_${m}_greedy_matches_cpu"; echo "    $out"
    else fail "gpu_rollout_${m}_greedy_matches_cpu" "$(echo "$out" | tr '\n' ';')"; fi
    # sampled, top-k/top-p: the training forward's log-probs of the same tokens (trainer agreement)
    expect_status "gpu_rollout_${m}_sampled" 0 "${limit[@]}" qw-rollout -m "$md" -p ids.jsonl --max-new-tokens 24 \
        --ignore-eos -n 3 --temperature 0.8 --top-k 40 --top-p 0.95 --seed 3 --device "$dev" -q -o "s_${m}_gpu.jsonl"
    if out=$(python3 "$QW_SRCDIR/tests/gpu/rollout_gpu.py" trainer "$md" "s_${m}_gpu.jsonl" 0.01 2>&1); then
        pass "gpu_rollout_${m}_trainer_agreement"; echo "    $out"
    else fail "gpu_rollout_${m}_trainer_agreement" "$(echo "$out" | tr '\n' ';')"; fi
done
# --deterministic (batch invariance): the same tokens and log-probs at max-batch 1 and 16 and beside other
# prompts (prompt 3 keeps its line, so its random stream); dense: with graphs and without (QW_ENGINE_GRAPHS=0)
python3 - >ids_other.jsonl <<'PY'
import json
for i, n in enumerate([9, 2, 30, 17, 5]):
    ids = [(7 * i + 13 * t + 3) % 256 for t in range(n)] if i == 3 else [(11 * i + 5 * t + 1) % 256 for t in range(n)]
    print(json.dumps({"prompt_ids": ids}))
PY
recs_of() { python3 -c 'import json,sys; print([(r["idx"], r["sample"], r["completion_ids"], r["logprobs"], r["raw_logprobs"]) for r in map(json.loads, open(sys.argv[1])) if len(sys.argv) < 3 or r["idx"] == int(sys.argv[2])])' "$@"; }
for m in dense_yarn moe; do
    md=$QW_SRCDIR/tests/golden/$m/model
    d=(-m "$md" --max-new-tokens 24 --ignore-eos -n 2 --temperature 0.9 --seed 7 --deterministic --device "$dev" -q)
    expect_status "gpu_rollout_${m}_det_mb16" 0 "${limit[@]}" qw-rollout "${d[@]}" -p ids.jsonl --max-batch 16 -o "d16_$m.jsonl"
    expect_status "gpu_rollout_${m}_det_mb1" 0 "${limit[@]}" qw-rollout "${d[@]}" -p ids.jsonl --max-batch 1 -o "d1_$m.jsonl"
    expect_status "gpu_rollout_${m}_det_other" 0 "${limit[@]}" qw-rollout "${d[@]}" -p ids_other.jsonl --max-batch 16 -o "do_$m.jsonl"
    check "gpu_rollout_${m}_det_batch_1_16_same" test "$(recs_of "d1_$m.jsonl")" = "$(recs_of "d16_$m.jsonl")"
    check "gpu_rollout_${m}_det_other_prompts_same" test "$(recs_of "d16_$m.jsonl" 3)" = "$(recs_of "do_$m.jsonl" 3)"
    if [ $m = dense_yarn ]; then
        expect_status "gpu_rollout_${m}_det_nographs" 0 env QW_ENGINE_GRAPHS=0 "${limit[@]}" qw-rollout "${d[@]}" \
            -p ids.jsonl --max-batch 16 -o "dn_$m.jsonl"
        check "gpu_rollout_${m}_graphs_same_as_direct" test "$(recs_of "dn_$m.jsonl")" = "$(recs_of "d16_$m.jsonl")"
    fi
done
note "rollout done"

