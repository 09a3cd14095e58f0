#!/usr/bin/env bash
# The demo pipeline's smoke version (make demo DEMO_SIZE=smoke): corpus →
# BPE → streams → shards → three pretraining stages for a dense model and
# its MoE twin → post-training of the dense model (cold-start SFT, a GRPO
# loop, fusion SFT, DPO, held-out evaluation) → report and summary.json.
# Every pretraining stage must lower its validation loss; the smoke sizes
# are too small for the post-training numbers to mean anything, so the
# summary is checked for its keys, types and ranges (the full run's
# numbers are in the README).
#
# Then an interrupted pipeline: the dense chain again on the same data, its
# S1 stopped part-way by SIGTERM; qw-pretrain saves and exits 143, S2 does
# not start, and make run again resumes S1 from its checkpoint and ends
# with the same losses and the same weights, bit for bit, as the first run.
. "$QW_SRCDIR/tests/tools/lib.sh"
plan 55

demo() { make --no-print-directory -C "$QW_SRCDIR" -f pipelines/demo.mk DEMO_SIZE=smoke QW_BIN="$QW_BIN" "$@"; }

expect_status "demo pipeline (smoke size)" 0 demo OUT="$tmp/demo"
out=$tmp/demo
check "report written" test -s "$out/report.md"
check "loss plot written" grep -q '<polyline' "$out/loss.svg"
# qw-eval plot: 5 panels × 2 models, each model's three stages joined into one polyline
check "loss plot: a polyline per model and key" test "$(grep -c '<polyline' "$out/loss.svg")" -eq 10
check "loss plot as PNG" test "$(head -c 4 "$out/loss.png" | tail -c 3)" = PNG
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

# --- post-training
check "summary.json: every stage's metrics, sane types and ranges" python3 - "$out/summary.json" "$QW_BIN" <<'PY'
import json, math, os, sys
s = json.load(open(sys.argv[1]))
assert list(s) == ["pretrain", "sft", "grpo", "dpo", "eval"], list(s)
def prob(x):
    return isinstance(x, (int, float)) and 0 <= x <= 1
def se(x, n):
    return isinstance(x, float) and 0 <= x <= 0.5 / math.sqrt(n) + 1e-12
assert len(s["pretrain"]) == 6 and all(r["val_loss_after"] < r["val_loss_before"] for r in s["pretrain"])
for name, steps in (("cold", 6), ("fusion", 3)):
    st = s["sft"][name]
    assert st["steps"] == steps and st["tokens"] > 0 and st["seconds"] > 0, st
    assert all(isinstance(st[k], float) and st[k] > 0 for k in ("val_loss_before", "val_loss_after")), st
g = s["grpo"]
assert (g["iterations"], g["prompts_per_iteration"], g["group"], g["heldout_n"], g["heldout_overlap"]) == (2, 4, 4, 16, 0), g
for k in ("before", "after"):
    assert prob(g[f"heldout_accuracy_{k}"]) and se(g[f"heldout_accuracy_{k}_stderr"], 16), g
assert -1 <= g["heldout_accuracy_change"] <= 1 and g["heldout_accuracy_change_stderr"] >= 0
assert abs(g["heldout_accuracy_change"] - (g["heldout_accuracy_after"] - g["heldout_accuracy_before"])) < 1e-9
assert len(g["reward_per_iteration"]) == 2 and all(prob(r) for r in g["reward_per_iteration"]), g
assert len(g["loss_per_iteration"]) == 2 and all(math.isfinite(x) for x in g["loss_per_iteration"]), g
assert g["seconds"] > 0
d = s["dpo"]
if os.path.exists(os.path.join(sys.argv[2], "qw-dpo")):
    assert d["prompts"] == 8 and 0 <= d["pairs"] <= 8 and prob(d["sample_reward_mean"]), d
    assert prob(d["heldout_accuracy_thinking_before"]) and prob(d["heldout_accuracy_thinking_after"]), d
else:
    assert d is None, d
e = s["eval"]
assert e["heldout_n"] == 16 and e["model"] in ("dpo", "fusion"), e
for mode in ("thinking", "non_thinking"):
    assert prob(e[mode]["accuracy"]) and se(e[mode]["stderr"], 16) and prob(e[mode]["finished"]), e
    assert 0 < e[mode]["completion_tokens"] <= 32, e
assert e["val_loss"] > 0
PY
check "report: a table per post-training stage" test "$(grep -c '^## \(Cold-start SFT\|GRPO\|Thinking-mode fusion SFT\|DPO\|Evaluation\)' "$out/report.md")" -eq 5
check "GRPO plot: reward, loss, zero-std groups, length per iteration" test "$(grep -c '<polyline' "$out/grpo.svg")" -eq 4
check "GRPO plot as PNG" test "$(head -c 4 "$out/grpo.png" | tail -c 3)" = PNG
# each GRPO iteration samples from and updates the previous one's checkpoint
check "GRPO iterations chain: SFT → it-001 → it-002" test \
    "$(cat "$out/ckpt/grpo/it-001/policy") $(cat "$out/ckpt/grpo/it-002/policy")" = \
    "$out/ckpt/sft/cold/$(cat "$out/ckpt/sft/cold/latest") $out/ckpt/grpo/it-001/$(cat "$out/ckpt/grpo/it-001/latest")"
check "GRPO iterations take new prompts" python3 - "$out/ckpt/grpo" <<'PY'
import json, sys
a, b = ([l for l in open(f"{sys.argv[1]}/it-00{i}/prompts.jsonl")] for i in (1, 2))
assert len(a) == len(b) == 4 and not set(a) & set(b)
PY
check "held-out problems in no file trained on" python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
def qs(f):
    return {json.loads(l)["messages"][0]["content"] for l in open(f"{out}/{f}")}
held = qs("tasks/heldout.jsonl")
assert len(held) == 16
import os
for f in ("tasks/cot.jsonl", "tasks/fusion-src.jsonl", "tasks/grpo.jsonl", "tasks/dpo.jsonl"):
    if f != "tasks/dpo.jsonl" or os.path.exists(f"{out}/{f}"):   # DPO's prompts: only with qw-dpo
        assert not held & qs(f), f
corpus = open(f"{out}/corpus/reasoning.jsonl").read()
assert not any(json.dumps(f"Question: {q}\n")[1:-1] in corpus for q in held)
PY
check "non-thinking evaluation: the empty think block in the prompt" python3 - "$out/eval/fusion-off.rollouts" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
assert len(recs) == 16 and all(r["prompt"].endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n") for r in recs)
PY
check "chat base ends sequences at <|im_end|>" test "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["eos_token_id"])' "$out/ckpt/chat-base/config.json")" = \
    "$(printf '<|im_end|>' | qw-tokenize -q -t "$out/tokenizer" --ids)"

# --- interrupted and resumed: the dense chain in $cut, on the first run's
# data (copied with its times, so make does not rebuild it).  The launcher
# hook MPIRUN records the pid of each qw-pretrain it starts.
cut=$tmp/cut
mkdir -p "$cut"
cp -a "$out/corpus" "$out/tokenizer" "$out/streams" "$out/data" "$out/tasks" "$cut/"
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
