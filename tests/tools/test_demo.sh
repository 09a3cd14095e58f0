#!/usr/bin/env bash
# The demo pipeline's smoke version (make demo DEMO_SIZE=smoke): corpus →
# BPE → streams → shards → three pretraining stages for a dense model and
# its MoE twin → report.  Every stage must lower its validation loss.
#
# Then an interrupted pipeline: the dense chain again on the same data, its
# S1 stopped part-way by SIGTERM; qw-pretrain saves and exits 143, S2 does
# not start, and make run again resumes S1 from its checkpoint and ends
# with the same losses and the same weights, bit for bit, as the first run.
. "$QW_SRCDIR/tests/tools/lib.sh"
plan 44

demo() { make --no-print-directory -C "$QW_SRCDIR" -f pipelines/demo.mk DEMO_SIZE=smoke QW_BIN="$QW_BIN" "$@"; }

expect_status "demo pipeline (smoke size)" 0 demo OUT="$tmp/demo"
out=$tmp/demo
check "report written" test -s "$out/report.md"
check "loss plot written" grep -q '<polyline' "$out/loss.svg"
check "six stage rows in the report" test "$(grep -c '^| \(dense\|moe\) ' "$out/report.md")" -eq 6
for m in dense moe; do
    for s in 1 2 3; do
        d=$(cat "$out/ckpt/$m/s$s/latest" 2>/dev/null)
        check "$m s$s checkpoint verifies" qw-ckpt verify -q "$out/ckpt/$m/s$s/$d"
        check "$m s$s marked done" test -e "$out/ckpt/$m/s$s/done"
    done
    check "$m s3 checkpoint carries the tokenizer" test -s "$out/ckpt/$m/s3/$d/tokenizer.json"
    check "$m s3 raised the RoPE base (ABF)" grep -q '"rope_theta":[[:space:]]*40000' "$out/ckpt/$m/s3/$d/config.json"
done
check "TensorBoard event files" test "$(ls "$out"/tb/*/events.out.tfevents.* | wc -l)" -eq 6

# --- interrupted and resumed: the dense chain in $cut, on the first run's
# data (copied with its times, so make does not rebuild it).  The launcher
# hook MPIRUN records the pid of each qw-pretrain it starts.
cut=$tmp/cut
mkdir -p "$cut"
cp -a "$out/corpus" "$out/tokenizer" "$out/streams" "$out/data" "$cut/"
printf '#!/bin/sh\necho $$ >"%s/pid"\necho "$*" >>"%s/launched"\nexec "$@"\n' "$tmp" "$tmp" >"$tmp/launch"
chmod +x "$tmp/launch"
demo OUT="$cut" MODELS=dense MPIRUN="$tmp/launch" >"$tmp/cut1.out" 2>&1 &
make_pid=$!
# wait for S1's first training step, then SIGTERM that qw-pretrain
for _ in $(seq 600); do
    grep -q '"step":1,"loss"' "$cut/logs/dense-s1.jsonl" 2>/dev/null && break
    kill -0 $make_pid 2>/dev/null || break
    sleep 0.1
done
kill -TERM "$(cat "$tmp/pid")"
wait $make_pid
rc=$?
check "interrupted pipeline fails (make exit $rc)" test $rc -ne 0
check "qw-pretrain exited 143 after SIGTERM" grep -q 'Error 143' "$tmp/cut1.out"
check "stopped stage says how to continue" grep -q 'stopped by SIGTERM after step [1-5] of 6; continue with --resume' "$tmp/cut1.out"
s1_step=$(sed -n 's/^step-0*//p' "$cut/ckpt/dense/s1/latest" 2>/dev/null)
check "S1 saved part-way (step ${s1_step:-none} of 6)" test "${s1_step:-0}" -ge 1 -a "${s1_step:-6}" -lt 6
check "S1 not marked done" test ! -e "$cut/ckpt/dense/s1/done"
check "S2 did not start" test ! -e "$cut/ckpt/dense/s2"

: >"$tmp/launched"
expect_status "pipeline run again completes" 0 demo OUT="$cut" MODELS=dense MPIRUN="$tmp/launch"
check "S1 resumed from its checkpoint" grep -q "qw-pretrain --resume $cut/ckpt/dense/s1 " "$tmp/launched"
check "S2 started afresh from S1" grep -q "qw-pretrain --model $cut/ckpt/dense/s1 " "$tmp/launched"
for s in 1 2 3; do
    check "resumed: s$s marked done" test -e "$cut/ckpt/dense/s$s/done"
    # every step's loss, gradient norm, lr and validation loss as the first run's
    check "resumed: s$s log as the uninterrupted run's" python3 - "$out/logs/dense-s$s.jsonl" "$cut/logs/dense-s$s.jsonl" <<'PY'
import json, sys
keys = ("step", "loss", "lr", "grad_norm", "tokens", "val_loss", "val_tokens")
def load(p):
    return [{k: r[k] for k in keys if k in r} for r in map(json.loads, open(p))]
a, b = load(sys.argv[1]), load(sys.argv[2])
sys.exit(0 if a == b and len(a) > 0 else 1)
PY
    d=$(cat "$out/ckpt/dense/s$s/latest")
    check "resumed: s$s weights equal the uninterrupted run's" cmp "$out/ckpt/dense/s$s/$d/model.safetensors" "$cut/ckpt/dense/s$s/$d/model.safetensors"
    check "resumed: s$s optimizer state equals the uninterrupted run's" cmp "$out/ckpt/dense/s$s/$d/trainer_state/optimizer.safetensors" "$cut/ckpt/dense/s$s/$d/trainer_state/optimizer.safetensors"
done
check "resumed: report's dense rows as the uninterrupted run's" test \
    "$(grep '^| dense ' "$out/report.md" | cut -d'|' -f2-7)" = "$(grep '^| dense ' "$cut/report.md" | cut -d'|' -f2-7)"
: >"$tmp/launched"
demo OUT="$cut" MODELS=dense MPIRUN="$tmp/launch" >/dev/null 2>&1
check "run again when finished: no stage runs" test ! -s "$tmp/launched"
