#!/usr/bin/env bash
# The demo pipeline's smoke version (make demo DEMO_SIZE=smoke): corpus →
# BPE → streams → shards → three pretraining stages for a dense model and
# its MoE twin → report.  Every stage must lower its validation loss.
. "$QW_SRCDIR/tests/tools/lib.sh"
plan 15

expect_status "demo pipeline (smoke size)" 0 \
    make --no-print-directory -C "$QW_SRCDIR" -f pipelines/demo.mk DEMO_SIZE=smoke OUT="$tmp/demo" QW_BIN="$QW_BIN"
out=$tmp/demo
check "report written" test -s "$out/report.md"
check "loss plot written" grep -q '<polyline' "$out/loss.svg"
check "six stage rows in the report" test "$(grep -c '^| \(dense\|moe\) ' "$out/report.md")" -eq 6
for m in dense moe; do
    for s in 1 2 3; do
        d=$(cat "$out/ckpt/$m/s$s/latest" 2>/dev/null)
        check "$m s$s checkpoint verifies" qw-ckpt verify -q "$out/ckpt/$m/s$s/$d"
    done
    check "$m s3 checkpoint carries the tokenizer" test -s "$out/ckpt/$m/s3/$d/tokenizer.json"
    check "$m s3 raised the RoPE base (ABF)" grep -q '"rope_theta":[[:space:]]*40000' "$out/ckpt/$m/s3/$d/config.json"
done
check "TensorBoard event files" test "$(ls "$out"/tb/*/events.out.tfevents.* | wc -l)" -eq 6
