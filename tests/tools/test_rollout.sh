#!/usr/bin/env bash
# test_rollout.sh — qw-rollout against the training forward: greedy
# completions are the argmax of `qw-eval forward` over prompt + completion at
# every position and every log-prob is the log-softmax of those logits
# (≤ 1e-4), for the golden fixtures (dense YaRN, dense tied, MoE) and a
# demo-like model, with and without shared prefixes (-n), at batch 1 and
# many; sampled completions do not depend on the batch (with --deterministic
# neither do log-probs, nor on the other prompts); stop strings, the
# chat template, the thinking budget; an interrupted run and --resume; bad
# input.  (test_rollout_hf.sh checks transformers' generate.)
. "$QW_SRCDIR/tests/tools/lib.sh"
plan 82
cd "$tmp"
g=$QW_SRCDIR/tests/golden
chk() { python3 "$QW_SRCDIR/tests/tools/rollout_check.py" "$@"; }

# prompts as ids: 1 token, a block's worth and more, crossing block boundaries
python3 - >ids.jsonl <<'PY'
import json
for i, n in enumerate([1, 4, 16, 17, 33]):
    print(json.dumps({"prompt_ids": [(7 * i + 13 * t + 3) % 256 for t in range(n)], "tag": "p%d" % i}))
PY

# greedy = argmax of the forward, logprobs = its log-softmax: three fixtures, batch 1 and many, n 1 and 3
for m in dense_yarn dense_tied moe; do
    for run in "1 1" "16 3"; do
        set -- $run
        expect_status "$m: greedy, max-batch $1, -n $2" 0 qw-rollout -m "$g/$m/model" -p ids.jsonl --temperature 0 \
            --max-new-tokens 24 --ignore-eos --max-batch "$1" -n "$2" --threads 1 -q -o "g_${m}_$1.jsonl"
        if out=$(chk "$g/$m/model" "g_${m}_$1.jsonl" 1e-4 --greedy --logprobs logprobs --logprobs raw_logprobs 2>&1); then
            pass "$m: max-batch $1 -n $2: argmax and log-softmax of qw-eval forward"; echo "NOTE $m mb $1 n $2: $out"
        else fail "$m: max-batch $1 -n $2: argmax and log-softmax of qw-eval forward" "$out"; fi
    done
    check "$m: batch 1 and 16 give the same completions" test \
        "$(python3 -c 'import json,sys; print([r["completion_ids"] for r in map(json.loads, open(sys.argv[1])) if r["sample"] == 0])' "g_${m}_1.jsonl")" = \
        "$(python3 -c 'import json,sys; print([r["completion_ids"] for r in map(json.loads, open(sys.argv[1])) if r["sample"] == 0])' "g_${m}_16.jsonl")"
done

# --deterministic: prompts prefilled through the decode attention, so a sequence's tokens and log-probs do
# not depend on --max-batch or on the prompts beside it (prompt 3 keeps its line: its random stream)
python3 - >ids_other.jsonl <<'PY'
import json
for i, n in enumerate([9, 2, 30, 17, 5]):
    ids = [(7 * i + 13 * t + 3) % 256 for t in range(n)] if i == 3 else [(11 * i + 5 * t + 1) % 256 for t in range(n)]
    print(json.dumps({"prompt_ids": ids, "tag": "q%d" % i}))
PY
recs_of() { python3 -c 'import json,sys; print([(r["idx"], r["sample"], r["completion_ids"], r["logprobs"], r["raw_logprobs"]) for r in map(json.loads, open(sys.argv[1])) if len(sys.argv) < 3 or r["idx"] == int(sys.argv[2])])' "$@"; }
for m in dense_yarn moe; do
    d=(-m "$g/$m/model" --max-new-tokens 16 --ignore-eos -n 2 --temperature 0.9 --seed 7 --deterministic --threads 1 -q)
    expect_status "$m: --deterministic, max-batch 16" 0 qw-rollout "${d[@]}" -p ids.jsonl --max-batch 16 -o "d16_$m.jsonl"
    expect_status "$m: --deterministic, max-batch 1" 0 qw-rollout "${d[@]}" -p ids.jsonl --max-batch 1 -o "d1_$m.jsonl"
    expect_status "$m: --deterministic, other prompts beside" 0 qw-rollout "${d[@]}" -p ids_other.jsonl --max-batch 16 \
        -o "do_$m.jsonl"
    check "$m: --deterministic: max-batch 1 and 16 give the same tokens and log-probs" \
        test "$(recs_of "d1_$m.jsonl")" = "$(recs_of "d16_$m.jsonl")"
    check "$m: --deterministic: the same tokens and log-probs beside other prompts" \
        test "$(recs_of "d16_$m.jsonl" 3)" = "$(recs_of "do_$m.jsonl" 3)"
    expect_status "$m: --deterministic, greedy" 0 qw-rollout -m "$g/$m/model" -p ids.jsonl --temperature 0 --deterministic \
        --max-new-tokens 24 --ignore-eos --max-batch 16 -n 2 --threads 1 -q -o "dg_$m.jsonl"
    if out=$(chk "$g/$m/model" "dg_$m.jsonl" 1e-4 --greedy --logprobs logprobs --logprobs raw_logprobs 2>&1); then
        pass "$m: --deterministic: argmax and log-softmax of qw-eval forward"; echo "NOTE $m deterministic: $out"
    else fail "$m: --deterministic: argmax and log-softmax of qw-eval forward" "$out"; fi
done

# records: input order then sample order, every field, other input fields copied
check "records in input order, then sample order" python3 - g_moe_16.jsonl <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
assert [(r["idx"], r["sample"]) for r in recs] == [(i, j) for i in range(5) for j in range(3)], recs
for r in recs:
    assert list(r)[:8] == ["idx", "sample", "prompt_ids", "completion_ids", "logprobs", "raw_logprobs",
                           "finish_reason", "tag"], list(r)
    assert r["tag"] == "p%d" % r["idx"] and r["finish_reason"] == "length"
    assert len(r["completion_ids"]) == len(r["logprobs"]) == len(r["raw_logprobs"]) == 24
PY

# sampling at temperature 1: logprobs = raw_logprobs = the forward's; top-k: raw_logprobs = the forward's
expect_status "moe: sampled, max-batch 2" 0 qw-rollout -m "$g/moe/model" -p ids.jsonl --max-new-tokens 20 -n 4 \
    --max-batch 2 --seed 5 --threads 1 -q -o s2.jsonl
if out=$(chk "$g/moe/model" s2.jsonl 1e-4 --logprobs logprobs --logprobs raw_logprobs 2>&1); then
    pass "moe: temperature 1: log-probs of the forward"; echo "NOTE sampled: $out"
else fail "moe: temperature 1: log-probs of the forward" "$out"; fi
expect_status "moe: sampled, max-batch 64, 2 threads" 0 qw-rollout -m "$g/moe/model" -p ids.jsonl --max-new-tokens 20 \
    -n 4 --max-batch 64 --seed 5 --threads 2 -q -o s64.jsonl
ids_of() { python3 -c 'import json,sys; print([(r["idx"], r["sample"], r["completion_ids"]) for r in map(json.loads, open(sys.argv[1]))])' "$1"; }
check "sampled completions do not depend on the batch or the threads" test "$(ids_of s2.jsonl)" = "$(ids_of s64.jsonl)"
check "samples of one prompt differ" python3 -c '
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
assert len({tuple(r["completion_ids"]) for r in recs if r["idx"] == 2}) == 4' s2.jsonl
expect_status "moe: another seed" 0 qw-rollout -m "$g/moe/model" -p ids.jsonl --max-new-tokens 20 -n 4 --seed 6 \
    --threads 1 -q -o s6.jsonl
check "another seed, other completions" test "$(ids_of s2.jsonl)" != "$(ids_of s6.jsonl)"
expect_status "dense_yarn: temperature 0.7, top-k 5, top-p 0.9" 0 qw-rollout -m "$g/dense_yarn/model" -p ids.jsonl \
    --max-new-tokens 16 -n 2 --temperature 0.7 --top-k 5 --top-p 0.9 --threads 1 -q -o tk.jsonl
if out=$(chk "$g/dense_yarn/model" tk.jsonl 1e-4 --logprobs raw_logprobs 2>&1); then
    pass "top-k/top-p: raw_logprobs of the forward"; echo "NOTE top-k: $out"
else fail "top-k/top-p: raw_logprobs of the forward" "$out"; fi
check "top-k/top-p: logprobs of the truncated distribution are larger" python3 -c '
import json, sys
for r in map(json.loads, open(sys.argv[1])):
    assert all(a >= b - 1e-6 for a, b in zip(r["logprobs"], r["raw_logprobs"])), r' tk.jsonl

# a demo-like model with a tokenizer: text prompts, chat, stop strings, EOS, the thinking budget
bash "$QW_SRCDIR/tests/tools/gen_rollout_model.sh" demo >/dev/null 2>&1
M=demo/model
check "demo-like model made" test -f $M/tokenizer.json -a -f $M/model.safetensors
printf '%s\n' '{"prompt": "the cat sat on", "n": 1.50}' '{"prompt": "two dogs play with one ball every day and"}' \
    '{"prompt": "a"}' >text.jsonl
expect_status "demo: greedy, text prompts, -n 2" 0 qw-rollout -m $M -p text.jsonl --temperature 0 -n 2 \
    --max-new-tokens 32 --ignore-eos --threads 1 -q -o d.jsonl
if out=$(chk $M d.jsonl 1e-4 --greedy --logprobs logprobs --logprobs raw_logprobs 2>&1); then
    pass "demo: argmax and log-softmax of qw-eval forward"; echo "NOTE demo: $out"
else fail "demo: argmax and log-softmax of qw-eval forward" "$out"; fi
check "demo: prompt_ids are the tokenizer's, completion is the decoded text, other fields kept" python3 - d.jsonl <<'PY'
import json, subprocess, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
for r in recs:
    ids = subprocess.run(["qw-tokenize", "-t", "demo/model", "--ids", "-q"], input=r["prompt"].encode(),
                         capture_output=True, check=True).stdout.split()
    assert [int(x) for x in ids] == r["prompt_ids"], (ids, r["prompt_ids"])
assert recs[0]["prompt"] == "the cat sat on" and recs[0]["n"] == 1.5 and "n" not in recs[2]
assert all(isinstance(r["completion"], str) for r in recs)
PY
expect_status "demo: sampled, max-batch 1" 0 qw-rollout -m $M -p text.jsonl -n 3 --max-new-tokens 24 --max-batch 1 \
    --threads 1 -q -o d1.jsonl
if out=$(chk $M d1.jsonl 1e-4 --logprobs logprobs --logprobs raw_logprobs 2>&1); then
    pass "demo: sampled log-probs of the forward (trainer agreement)"; echo "NOTE demo sampled: $out"
else fail "demo: sampled log-probs of the forward (trainer agreement)" "$out"; fi
# stop string: the greedy completion of record 1 repeats " and"
check "demo: record 1's greedy completion repeats ' and'" grep -q '"idx": 1, .*"completion": " and and and' d.jsonl
expect_status "demo: --stop" 0 qw-rollout -m $M -p text.jsonl --temperature 0 --max-new-tokens 32 --ignore-eos \
    --stop "and and" --stop "zzz" --threads 1 -q -o st.jsonl
check "--stop ends the completion at the string, finish_reason stop" python3 - st.jsonl d.jsonl <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])][1]
b = [json.loads(l) for l in open(sys.argv[2]) if json.loads(l)["sample"] == 0][1]
assert a["finish_reason"] == "stop" and a["completion"].endswith("and and"), a
assert a["completion_ids"] == b["completion_ids"][:len(a["completion_ids"])] and len(a["completion_ids"]) < 32
PY
# EOS (generation_config.json's <|im_end|>) ends a sequence: over many hot samples some meet it
expect_status "demo: EOS stops (many samples)" 0 qw-rollout -m $M -p text.jsonl -n 40 --max-new-tokens 64 \
    --temperature 1.5 --threads 1 -q -o eos.jsonl
check "EOS ends a sequence and is its last id" python3 - eos.jsonl <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
eos = json.load(open("demo/model/generation_config.json"))["eos_token_id"]
stopped = [r for r in recs if r["finish_reason"] == "stop"]
assert stopped, "no sample met EOS"
for r in recs:
    ids = r["completion_ids"]
    assert eos not in ids[:-1]
    assert (r["finish_reason"] == "stop") == (ids[-1] == eos) and (r["finish_reason"] == "stop" or len(ids) == 64)
PY
# chat: the template with the generation prompt; --thinking off
printf '%s\n' '{"messages": [{"role": "user", "content": "the cat"}], "id": 7}' >chat.jsonl
expect_status "demo: --chat" 0 qw-rollout -m $M -p chat.jsonl --chat --max-new-tokens 4 --threads 1 -q -o c1.jsonl
check "--chat: the rendered prompt" python3 -c '
import json, sys
r = json.loads(open(sys.argv[1]).readline())
assert r["prompt"] == "<|im_start|>user\nthe cat<|im_end|>\n<|im_start|>assistant\n", r["prompt"]
assert r["messages"] == [{"role": "user", "content": "the cat"}] and r["id"] == 7' c1.jsonl
expect_status "demo: --chat --thinking off" 0 qw-rollout -m $M -p chat.jsonl --chat --thinking off --max-new-tokens 4 \
    --threads 1 -q -o c2.jsonl
check "--thinking off: an empty think block" python3 -c '
import json, sys
r = json.loads(open(sys.argv[1]).readline())
assert r["prompt"].endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n"), r["prompt"]' c2.jsonl
# thinking budget: a prompt that opens <think>; after 5 tokens the early-stop text follows
printf '%s\n' '{"prompt": "<|im_start|>user\nthe cat<|im_end|>\n<|im_start|>assistant\n<think>\n"}' >think.jsonl
expect_status "demo: --thinking-budget 5" 0 qw-rollout -m $M -p think.jsonl --thinking-budget 5 --max-new-tokens 120 \
    --ignore-eos --seed 3 --threads 1 -q -o tb.jsonl
check "--thinking-budget: the early-stop text after 5 thinking tokens, then the answer" python3 - tb.jsonl <<'PY'
import json, subprocess, sys
r = json.loads(open(sys.argv[1]).readline())
text = "\n\nConsidering the limited time by the user, I have to give the solution based on the thinking directly now.\n</think>\n\n"
ids = [int(x) for x in subprocess.run(["qw-tokenize", "-t", "demo/model", "--ids", "-q"], input=text.encode(),
                                      capture_output=True, check=True).stdout.split()]
assert r["forced_at"] == 5, r
assert r["completion_ids"][5:5 + len(ids)] == ids, (r["completion_ids"], ids)
assert len(r["completion_ids"]) == 120
PY

# SIGTERM: only whole records; --resume finishes the job as one run would
python3 -c '
import json
for i in range(120): print(json.dumps({"prompt_ids": [(i * 31 + t * 7) % 300 for t in range(1 + i % 9)], "i": i}))' >many.jsonl
expect_status "uninterrupted run" 0 qw-rollout -m $M -p many.jsonl -n 2 --max-new-tokens 40 --ignore-eos --max-batch 2 \
    --threads 1 -q -o full.jsonl
qw-rollout -m $M -p many.jsonl -n 2 --max-new-tokens 40 --ignore-eos --max-batch 2 --threads 1 -q -o part.jsonl &
pid=$!
for _ in $(seq 200); do [ -s part.jsonl.tmp ] && break; sleep 0.05; done
sleep 0.3
kill -TERM $pid
wait $pid
st=$?
if [ "$st" -eq 143 ]; then pass "SIGTERM: exit 143"; else fail "SIGTERM: exit 143" "exit $st"; fi
check "SIGTERM: whole records, whole prompts, a prefix of the full run" python3 - part.jsonl full.jsonl <<'PY'
import json, sys
part = open(sys.argv[1]).read()
full = open(sys.argv[2]).read().splitlines(keepends=True)
lines = part.splitlines(keepends=True)
assert 0 < len(lines) < len(full) and len(lines) % 2 == 0, len(lines)
for a, b in zip(lines, full):
    ra, rb = json.loads(a), json.loads(b)
    assert (ra["idx"], ra["sample"], ra["completion_ids"]) == (rb["idx"], rb["sample"], rb["completion_ids"])
PY
printf '{"idx": 999, "sample"' >>part.jsonl   # a partial trailing record, as a crashed writer could leave
expect_status "--resume" 0 qw-rollout -m $M -p many.jsonl -n 2 --max-new-tokens 40 --ignore-eos --max-batch 2 \
    --threads 1 -q -o part.jsonl --resume
check "--resume: the partial record cut, the rest done, same as one run" test "$(ids_of part.jsonl)" = "$(ids_of full.jsonl)"
check "--resume: every record once" test "$(wc -l <part.jsonl)" = 240

# bad input: exit 3 naming the file and the line; usage errors exit 2
bad() {   # bad NAME STATUS REGEX ARGS...
    local name=$1 status=$2 re=$3; shift 3
    expect_status "$name" "$status" qw-rollout "$@"
    expect_stderr "$name: message" "$re"
}
python3 -c 'print("{\"prompt_ids\": [%s]}" % ",".join(["5"] * 256))' >long.jsonl
bad "prompt longer than the context" 3 "^qw-rollout: 'long.jsonl': line 1: the prompt has 256 tokens; the model's context is 256" \
    -m "$g/dense_yarn/model" -p long.jsonl -q
printf '%s\n' '{"prompt_ids": [1, 2]}' '{"text": "x"}' >noprompt.jsonl
bad "record without a prompt" 3 "^qw-rollout: 'noprompt.jsonl': line 2: no \"prompt\" \(or \"prompt_ids\"\)$" \
    -m "$g/moe/model" -p noprompt.jsonl -q -o bad.jsonl
printf '%s\n' '{"prompt": "a"}' '{"prompt": "b"' >badjson.jsonl
bad "invalid JSON" 3 "^qw-rollout: 'badjson.jsonl': line 2: " -m $M -p badjson.jsonl -q
bad "model/tokenizer mismatch" 3 "the tokenizer has [0-9]+ tokens, more than the model's vocabulary \(256" \
    -m "$g/dense_tied/model" -t $M/tokenizer.json -p text.jsonl -q
printf '%s\n' '{"prompt_ids": [1, 256]}' >oov.jsonl
bad "prompt id outside the vocabulary" 3 "^qw-rollout: 'oov.jsonl': line 1: \"prompt_ids\"\[1\] = 256 is outside the model's vocabulary \(256\)" \
    -m "$g/moe/model" -p oov.jsonl -q
bad "-n 0" 2 "^qw-rollout: -n: 0 samples per prompt" -m "$g/moe/model" -p ids.jsonl -n 0
# --device cuda: completions on a machine with a GPU (tests/gpu checks them), a
# clear error (exit 1) without one
qw-rollout -m "$g/moe/model" -p ids.jsonl --device cuda -q >cuda.jsonl 2>cuda.err
st=$?
if nvidia-smi -L >/dev/null 2>&1; then
    check "--device cuda: exit 0 with a GPU" test $st = 0
    check "--device cuda: a record per prompt" test "$(wc -l <cuda.jsonl)" = "$(wc -l <ids.jsonl)"
else
    check "--device cuda: exit 1 without a GPU" test $st = 1
    check "--device cuda: says no usable GPU" grep -q "^qw-rollout: --device cuda: no usable GPU" cuda.err
fi
bad "text prompt without a tokenizer" 2 "no tokenizer" -m "$g/moe/model" -p text.jsonl -q
check "no output file after bad input" test ! -e bad.jsonl

# -o to a FIFO (as to a device) writes through it: no FIFO.tmp renamed over it
mkfifo fifo
cat fifo >fromfifo &
cat_pid=$!
expect_status "-o FIFO" 0 qw-rollout -m "$g/moe/model" -p ids.jsonl --temperature 0 --max-new-tokens 4 --threads 1 -q -o fifo
wait $cat_pid
check "-o FIFO: still a FIFO, the records came through it" test -p fifo -a "$(wc -l <fromfifo)" = 5 -a ! -e fifo.tmp
