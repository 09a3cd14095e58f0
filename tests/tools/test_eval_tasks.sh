#!/usr/bin/env bash
# test_eval_tasks.sh — qw-eval mc and ppl: log-likelihoods against those
# recomputed from `qw-eval forward` logits (tests/tools/eval_ref.py, a
# byte-level tokenizer on the golden fixture models, V 256), few-shot draws,
# packing, rolling windows at, below and across the window, the report
# (JSON, Markdown, per-item, --compare), the task layouts, and bad input.
. "$QW_SRCDIR/tests/tools/lib.sh"
plan 81
ref() { python3 "$QW_SRCDIR/tests/tools/eval_ref.py" "$@"; }
g=$QW_SRCDIR/tests/golden
dense=$g/dense_tied/model moe=$g/moe/model
tok=$tmp/tok
ref tokenizer "$tok" '!'   # '!' is byte 33: the prefix token

# generic items: an empty context, trailing spaces, UTF-8, a long one
python3 - "$tmp/t.jsonl" <<'PY'
import json, sys
items = [{"context": "The cat sat on the", "choices": ["mat", "dog house", "moon"], "gold": 0},
         {"context": "2 + 2 = ", "choices": ["4", "five"], "gold": 0},
         {"context": "", "choices": ["a", "b"], "gold": 1},
         {"context": "Caf\u00e9 au", "choices": [" lait", "x"], "gold": 0},
         {"context": "   ", "choices": ["yes", "no"], "gold": 0},
         {"context": "Long one: " + "abc " * 20, "choices": ["d", "e f g"], "gold": 1}]
with open(sys.argv[1], "w") as f:
    for it in items:
        f.write(json.dumps(it) + "\n")
PY

mc() { qw-eval mc -t "$tok" -q "$@"; }
expect_status mc_runs 0 mc -m "$dense" --tasks "$tmp/t.jsonl" --per-item "$tmp/pi.jsonl"
cp "$last_out" "$tmp/mc.json"
check mc_ll_equals_forward ref mc "$dense" "$tmp/t.jsonl" "$tmp/pi.jsonl" 33
check mc_per_item_lines test "$(wc -l <"$tmp/pi.jsonl")" -eq 6
# the report: lm-eval's layout, acc and its stderr as the per-item values give them
check mc_report_matches_items python3 - "$tmp/mc.json" "$tmp/pi.jsonl" <<'PY'
import json, math, sys
r = json.load(open(sys.argv[1]))
items = [json.loads(l) for l in open(sys.argv[2])]
t = r["results"]["t"]
for m in ("acc", "acc_norm"):
    x = [it[m] for it in items]
    mean = sum(x) / len(x)
    se = math.sqrt(sum((v - mean) ** 2 for v in x) / (len(x) - 1)) / math.sqrt(len(x))
    assert abs(t[m + ",none"] - mean) < 1e-12 and abs(t[m + "_stderr,none"] - se) < 1e-12, (m, t)
for it in items:
    ll = it["loglikelihoods"]
    assert it["pred"] == ll.index(max(ll))
assert r["n-samples"]["t"] == {"original": 6, "effective": 6} and r["n-shot"]["t"] == 0
assert r["config"]["prefix_token"] == "!" and r["config"]["max_length"] == 128
PY
# packed rows: a small --batch-tokens (one request per forward) gives the same numbers
expect_status mc_small_batches 0 mc -m "$dense" --tasks "$tmp/t.jsonl" --per-item "$tmp/pi_small.jsonl" --batch-tokens 16
check mc_packing_invariant python3 - "$tmp/pi.jsonl" "$tmp/pi_small.jsonl" <<'PY'
import json, sys
a = [json.loads(l)["loglikelihoods"] for l in open(sys.argv[1])]
b = [json.loads(l)["loglikelihoods"] for l in open(sys.argv[2])]
sys.exit(0 if len(a) == 6 and all(abs(x - y) <= 1e-5 for p, q in zip(a, b) for x, y in zip(p, q)) else 1)
PY
# few-shot: examples drawn as random.Random(seed).sample draws them; truncated to max length + 1
expect_status mc_fewshot 0 mc -m "$dense" --tasks "$tmp/t.jsonl" --per-item "$tmp/pi2.jsonl" --num-fewshot 2
check mc_fewshot_ll_equals_forward ref mc "$dense" "$tmp/t.jsonl" "$tmp/pi2.jsonl" 33 2 1234
check mc_fewshot_nshot_reported grep -q '"t":[[:space:]]*2' "$last_out"
expect_status mc_moe_fewshot_seed_delim 0 mc -m "$moe" --tasks "$tmp/t.jsonl" --per-item "$tmp/pi3.jsonl" \
    --num-fewshot 3 --seed 7 --target-delimiter ": " --batch-tokens 200
check mc_moe_fewshot_ll_equals_forward ref mc "$moe" "$tmp/t.jsonl" "$tmp/pi3.jsonl" 33 3 7 ": "
expect_status mc_fewshot_seed5 0 mc -m "$dense" --tasks "$tmp/t.jsonl" --per-item "$tmp/pi5.jsonl" --num-fewshot 2 --seed 5
check mc_fewshot_seed_matters test "$(cat "$tmp/pi2.jsonl")" != "$(cat "$tmp/pi5.jsonl")"
# a separate few-shot file: examples from it, none dropped
head -n 3 "$tmp/t.jsonl" >"$tmp/fs.jsonl"
expect_status mc_fewshot_file 0 mc -m "$dense" --tasks "$tmp/t.jsonl" --num-fewshot 3 --fewshot-file "$tmp/fs.jsonl"
expect_status mc_fewshot_file_too_small 2 mc -m "$dense" --tasks "$tmp/t.jsonl" --num-fewshot 4 --fewshot-file "$tmp/fs.jsonl"
expect_stderr mc_fewshot_file_too_small_msg "num-fewshot 4: '.*fs.jsonl' has 3 items"

# Markdown, on stdout or in a file beside the JSON
expect_status mc_markdown_stdout 0 mc -m "$dense" --tasks "$tmp/t.jsonl" --markdown -
check mc_markdown_rows grep -qE '^\|t\|none\|0\|acc\|↑\|0\.[0-9]{4}\|±\|0\.[0-9]{4}\|$' "$last_out"
check mc_markdown_norm_row grep -qE '^\|\|none\|0\|acc_norm\|' "$last_out"
expect_status mc_markdown_file 0 mc -m "$dense" --tasks "$tmp/t.jsonl" --markdown "$tmp/t.md" --task mytask
check mc_markdown_file_written grep -q '^|mytask|none|0|acc|' "$tmp/t.md"
check mc_json_with_markdown_file grep -q '"mytask"' "$last_out"

# --compare: the same model differs by 0; two models: diff, combined stderr, verdict
expect_status compare_same 0 mc -m "$dense" --tasks "$tmp/t.jsonl" --compare "$dense"
check compare_same_zero python3 -c '
import json, sys
d = json.load(sys.stdin)["compare"]["diff"]["t"]
sys.exit(0 if d["acc,none"]["diff"] == 0 and d["acc,none"]["exceeds_stderr"] is False else 1)' <"$last_out"
expect_status compare_two 0 mc -m "$dense" --tasks "$tmp/t.jsonl" --compare "$moe"
check compare_two_consistent python3 -c '
import json, math, sys
r = json.load(sys.stdin)
a, b = r["results"]["t"], r["compare"]["results"]["t"]
for m in ("acc", "acc_norm"):
    d = r["compare"]["diff"]["t"][m + ",none"]
    se = math.sqrt(a[m + "_stderr,none"] ** 2 + b[m + "_stderr,none"] ** 2)
    assert abs(d["diff"] - (b[m + ",none"] - a[m + ",none"])) < 1e-12 and abs(d["stderr"] - se) < 1e-12
    assert d["exceeds_stderr"] == (abs(d["diff"]) > se)' <"$last_out"
expect_status compare_markdown 0 mc -m "$dense" --tasks "$tmp/t.jsonl" --compare "$moe" --markdown -
check compare_markdown_columns grep -qE '^\|t\|none\|acc\|[0-9.]+\|[0-9.]+\|[0-9.]+\|[0-9.]+\|[+-][0-9.]+\|[0-9.]+\|(yes|no)\|$' "$last_out"

# the task layouts: one item each, lm-eval's metrics per task
python3 - "$tmp" <<'PY'
import json, sys
d = sys.argv[1]
rows = {
    "hellaswag": {"activity_label": "Baking", "ctx_a": "A man mixes flour.", "ctx_b": "he",
                  "endings": ["bakes a cake [step] now.", "flies away."], "label": "0"},
    "arc": {"question": "Which is hot?", "choices": {"text": ["ice", "fire"], "label": ["A", "B"]}, "answerKey": "B"},
    "mmlu": {"question": "1 + 1 =", "choices": ["1", "2", "3", "4"], "answer": 1, "subject": "elementary_mathematics"},
    "piqa": {"goal": "Open a jar", "sol1": "twist the lid", "sol2": "eat the lid", "label": 0},
    "winogrande": {"sentence": "Ann gave Bob a book because _ was kind.", "option1": "Ann", "option2": "Bob", "answer": "1"},
}
for k, v in rows.items():
    with open(f"{d}/{k}.jsonl", "w") as f:
        f.write(json.dumps(v) + "\n" + json.dumps(v) + "\n")
PY
for f in hellaswag arc piqa; do
    expect_status "format_$f" 0 mc -m "$dense" --tasks "$tmp/$f.jsonl" --format $f
    check "format_${f}_acc_norm" grep -q "\"acc_norm,none\"" "$last_out"
done
for f in mmlu winogrande; do
    expect_status "format_$f" 0 mc -m "$dense" --tasks "$tmp/$f.jsonl" --format $f --per-item "$tmp/$f.pi"
    check "format_${f}_acc_only" test "$(grep -c '"acc_norm' "$last_out")" -eq 0 -a "$(grep -c "\"$f\"" "$last_out")" -ge 3
done
# WinoGrande scores the shared continuation after each partial context: the same
# numbers as generic items whose context is "sentence up to _ + option"
printf '%s\n' '{"context": "Ann gave Bob a book because Ann", "choices": ["was kind."], "gold": 0}' \
    '{"context": "Ann gave Bob a book because Bob", "choices": ["was kind."], "gold": 0}' >"$tmp/wg_generic.jsonl"
expect_status winogrande_as_generic 0 mc -m "$dense" --tasks "$tmp/wg_generic.jsonl" --per-item "$tmp/wg_generic.pi"
check winogrande_partial_scoring python3 - "$tmp/winogrande.pi" "$tmp/wg_generic.pi" <<'PY'
import json, sys
w = json.loads(open(sys.argv[1]).readline())["loglikelihoods"]
g = [json.loads(l)["loglikelihoods"][0] for l in open(sys.argv[2])]
sys.exit(0 if all(abs(a - b) < 1e-9 for a, b in zip(w, g)) and len(w) == 2 else 1)
PY
# MMLU scores the letters after the lettered prompt: " B" after "...\nAnswer:"
printf '%s\n' '{"context": "The following are multiple choice questions (with answers) about elementary mathematics.\n\n1 + 1 =\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer:", "choices": ["A", "B", "C", "D"], "gold": 1}' >"$tmp/mmlu_generic.jsonl"
expect_status mmlu_as_generic 0 mc -m "$dense" --tasks "$tmp/mmlu_generic.jsonl" --per-item "$tmp/mmlu_generic.pi"
check mmlu_prompt python3 -c '
import json, sys
a, b = (json.loads(open(p).readline())["loglikelihoods"] for p in sys.argv[1:])
sys.exit(0 if a == b else 1)' "$tmp/mmlu.pi" "$tmp/mmlu_generic.pi"

# ppl: the hand windows below, at and across max-length, one long forward when it fits
python3 -c 'print("The quick brown fox jumps over the lazy dog.  " * 4)' >"$tmp/doc.txt"   # 185 bytes
ppl() { qw-eval ppl -t "$tok" -q "$@"; }
for L in 16 64 185 186 400; do
    expect_status "ppl_L$L" 0 ppl -m "$dense" --max-length $L "$tmp/doc.txt" --per-item "$tmp/pp$L.jsonl"
    check "ppl_L${L}_windows_equal_forward" ref ppl "$dense" "$tmp/doc.txt" "$tmp/pp$L.jsonl" 33 $L
done
check ppl_window_counts test "$(sed -n 's/.*"windows":\([0-9]*\).*/\1/p' "$tmp/pp16.jsonl" "$tmp/pp185.jsonl" "$tmp/pp186.jsonl" | paste -sd,)" = 12,1,1
expect_status ppl_report 0 ppl -m "$dense" --max-length 64 "$tmp/doc.txt"
check ppl_metrics_from_items python3 - "$last_out" "$tmp/pp64.jsonl" <<'PY'
import json, math, sys
r = json.load(open(sys.argv[1]))["results"]["ppl"]
d = json.loads(open(sys.argv[2]).readline())
ll = d["loglikelihood"]
want = {"word_perplexity": math.exp(-ll / d["words"]), "byte_perplexity": math.exp(-ll / d["bytes"]),
        "bits_per_byte": -ll / d["bytes"] / math.log(2), "token_perplexity": math.exp(-ll / d["tokens"])}
for k, v in want.items():
    assert abs(r[k + ",none"] - v) <= 1e-9 * v, (k, r[k + ",none"], v)
    assert r[k + "_stderr,none"] == "N/A"
PY
# JSONL documents, their words counted as lm-eval counts them (re.split(r"\s+"))
printf '%s\n' '{"text": " two  words "}' '{"body": "x"}' >"$tmp/docs.jsonl"
expect_status ppl_jsonl_missing_field 3 ppl -m "$dense" --jsonl "$tmp/docs.jsonl"
expect_stderr ppl_jsonl_missing_field_msg "docs.jsonl': line 2: missing field 'text'"
printf '%s\n' '{"body": " two  words "}' '{"body": "caf\u00e9"}' >"$tmp/docs.jsonl"
expect_status ppl_jsonl_field 0 ppl -m "$dense" --jsonl --field body "$tmp/docs.jsonl" --per-item "$tmp/ppj.jsonl"
check ppl_jsonl_counts test "$(sed 's/.*"line":\([0-9]*\).*"words":\([0-9]*\),"bytes":\([0-9]*\).*/\1 \2 \3/' "$tmp/ppj.jsonl" | paste -sd,)" = "1 4 12,2 1 5"
expect_status ppl_compare 0 ppl -m "$dense" --compare "$moe" "$tmp/doc.txt" --markdown -
check ppl_compare_na grep -qE '^\|ppl\|none\|word_perplexity\|[0-9.]+\|N/A\|[0-9.]+\|N/A\|[+-][0-9.]+\|N/A\|n/a\|$' "$last_out"

# bad input: exit 3 naming the file and line (2 for usage)
printf '%s\n' '{"context": "a", "choices": ["x"], "gold": 0}' '{"context": "b", "choices": [], "gold": 0}' >"$tmp/b1.jsonl"
expect_status bad_no_choices 3 mc -m "$dense" --tasks "$tmp/b1.jsonl"
expect_stderr bad_no_choices_msg "^qw-eval: '.*b1.jsonl': line 2: item 2: no choices"
printf '\n%s\n' '{"context": "a", "choices": ["x", "y"], "gold": 2}' >"$tmp/b2.jsonl"
expect_status bad_gold 3 mc -m "$dense" --tasks "$tmp/b2.jsonl"
expect_stderr bad_gold_msg "b2.jsonl': line 2: item 1: gold 2 is out of range \(2 choices\)$"
printf '%s\n' '{"context": "a", "choices": ["x"], "gold": 0}' '{"context": ' >"$tmp/b3.jsonl"
expect_status bad_json 3 mc -m "$dense" --tasks "$tmp/b3.jsonl"
expect_stderr bad_json_msg "b3.jsonl': line 2: not JSON$"
: >"$tmp/empty.jsonl"
expect_status bad_empty_tasks 3 mc -m "$dense" --tasks "$tmp/empty.jsonl"
expect_stderr bad_empty_tasks_msg "empty.jsonl': no items$"
: >"$tmp/empty.txt"
expect_status bad_empty_ppl 3 ppl -m "$dense" "$tmp/empty.txt"
expect_stderr bad_empty_ppl_msg "empty.txt': no text to score$"
expect_status bad_format_layout 3 mc -m "$dense" --tasks "$tmp/t.jsonl" --format arc
expect_stderr bad_format_layout_msg "t.jsonl': line 1: item 1: missing field 'question'"
expect_status unknown_format 2 mc -m "$dense" --tasks "$tmp/t.jsonl" --format boolq
expect_stderr unknown_format_msg "format: 'boolq' is not generic, hellaswag, arc, mmlu, piqa or winogrande"
# a tokenizer with an id the model does not have
python3 - "$tok/tokenizer.json" "$tmp/big/tokenizer.json" <<'PY'
import json, os, sys
t = json.load(open(sys.argv[1]))
t["added_tokens"] = [{"id": 256, "content": "<|endoftext|>", "single_word": False, "lstrip": False, "rstrip": False,
                      "normalized": False, "special": True}]
os.makedirs(os.path.dirname(sys.argv[2]))
json.dump(t, open(sys.argv[2], "w"))
PY
expect_status tokenizer_model_mismatch 3 qw-eval mc -m "$dense" -t "$tmp/big" --tasks "$tmp/t.jsonl"
expect_stderr tokenizer_model_mismatch_msg "tokenizer has ids up to 256, beyond the vocabulary of the model in '.*' \(256\)"
expect_status no_prefix_token 3 qw-eval ppl -m "$dense" -t "$tok/tokenizer.json" --prefix-token '<|im_start|>' "$tmp/doc.txt"
expect_status mc_needs_tasks 2 mc -m "$dense"
expect_status missing_tasks_file 1 mc -m "$dense" --tasks "$tmp/nonexistent.jsonl"
expect_status field_needs_jsonl 2 ppl -m "$dense" --field body "$tmp/doc.txt"
