#!/usr/bin/env bash
# grpo_loop.sh — reasoning RL as a loop of offline GRPO iterations: each
# iteration samples G completions of P new prompts from the current policy
# at temperature 1, scores them with the math verifier and makes one
# qw-grpo update, which becomes the next iteration's policy:
#
#   qw-rollout -m POLICY -n G --temperature 1 --chat … |
#       qw-reward --verifier math | qw-grpo --model POLICY --out it-NNN …
#
#   pipelines/grpo_loop.sh MODEL PROMPTS OUT ITERS P G [-- QW-GRPO OPTIONS]
#
# MODEL is the starting checkpoint; PROMPTS a qw-rollout prompts file with
# messages and a gold `answer` (gen_corpus.py --stage problems), at least
# ITERS × P lines: iteration i takes lines (i-1)·P+1 … i·P, so no prompt is
# seen twice.  Iteration i writes OUT/it-NNN/: the scored rollouts
# (scored.jsonl), qw-grpo's checkpoint (step-000001…, latest) and metrics
# (grpo.jsonl), the checkpoint it sampled from and updated (policy), the
# wall-clock seconds it took (seconds), and `done` once finished; the last
# one's checkpoint is the trained policy.  Run again, the loop skips
# finished iterations (an unfinished one starts over), so an interrupted
# loop resumes.
#
# Environment: QW_BIN (the programs' directory, default bin), MAX_NEW
# (tokens per completion, default 192), THREADS (--threads, default 0: all
# cores), SEED (the first iteration's sampling seed, default 1; iteration i
# uses SEED + i - 1).  Exit status: the first failing program's.
set -euo pipefail

if [ $# -lt 6 ]; then
    echo "usage: grpo_loop.sh MODEL PROMPTS OUT ITERS P G [-- QW-GRPO OPTIONS]" >&2
    exit 2
fi
model=$1 prompts=$2 out=$3 iters=$4 per=$5 group=$6
shift 6
[ "${1-}" = -- ] && shift
bin=${QW_BIN:-bin}
max_new=${MAX_NEW:-192}
threads=${THREADS:-0}
seed=${SEED:-1}

need=$((iters * per))
have=$(grep -c . "$prompts" || true)
if [ "$have" -lt "$need" ]; then
    echo "grpo_loop.sh: '$prompts': $have prompts, $iters iterations of $per need $need" >&2
    exit 3
fi

mkdir -p "$out"
policy=$model
for ((i = 1; i <= iters; i++)); do
    dir=$out/it-$(printf %03d "$i")
    if [ ! -e "$dir/done" ]; then
        rm -rf "$dir"
        mkdir -p "$dir"
        start=$(date +%s.%N)
        echo "$policy" >"$dir/policy"
        sed -n "$(((i - 1) * per + 1)),$((i * per))p" "$prompts" >"$dir/prompts.jsonl"
        "$bin/qw-rollout" -m "$policy" -p "$dir/prompts.jsonl" -n "$group" --temperature 1 --chat \
            --max-new-tokens "$max_new" --seed $((seed + i - 1)) --threads "$threads" -q |
            "$bin/qw-reward" --verifier math -q |
            tee "$dir/scored.jsonl" |
            "$bin/qw-grpo" --model "$policy" --out "$dir" --num-generations "$group" \
                --log "$dir/grpo.jsonl" --threads "$threads" -q "$@"
        awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.3f\n", e - s }' >"$dir/seconds"
        touch "$dir/done"
        echo "grpo_loop.sh: iteration $i/$iters: $(sed -n '1s/.*"reward_mean":\([^,}]*\).*/reward_mean \1/p' "$dir/grpo.jsonl")" >&2
    fi
    policy=$dir/$(cat "$dir/latest")
done
