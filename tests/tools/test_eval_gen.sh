#!/usr/bin/env bash
# test_eval_gen.sh — qw-eval gen and qw-eval score.  Greedy completions of
# the golden fixture models (byte-level tokenizer, V 256) equal qw-rollout's
# for the same prompts, the prompts built independently by
# tests/tools/gen_ref.py from lm-eval's rules (few-shot draws and first-n,
# gsm8k_cot's exemplars, the chat template with thinking off, left
# truncation); the scoring of hand-written completions (strict, flexible and
# cot extraction, "[invalid]", regexes_to_ignore, stop strings, </think>,
# boxed answers and lm-eval's strip_string) against gen_ref.py's Python
# version of lm-eval's code; score equals gen on gen's own completions;
# pass@k against the closed form on HumanEval programs run in the sandbox;
# the report; bad input.
. "$QW_SRCDIR/tests/tools/lib.sh"
plan 67
cd "$tmp"
ref() { python3 "$QW_SRCDIR/tests/tools/gen_ref.py" "$@"; }
g=$QW_SRCDIR/tests/golden
dense=$g/dense_tied/model moe=$g/moe/model
data=$QW_SRCDIR/tests/data
test20=$data/gsm8k/test-first20.jsonl train10=$data/gsm8k/train-first10.jsonl
python3 "$QW_SRCDIR/tests/tools/eval_ref.py" tokenizer tok '!'
gen() { qw-eval gen -t tok -q "$@"; }
rollout() { qw-rollout -t tok --temperature 0 --threads 1 -q "$@"; }
# ref CMD… as a case: pass with its note, or fail with its output
refcase() {
    local name=$1 out; shift
    if out=$(ref "$@" 2>&1); then pass "$name"; echo "NOTE $name: $out"; else fail "$name" "$out"; fi
}

# ---- gsm8k, 5-shot from the train file: gen's completions = qw-rollout's on gen_ref's prompts ----
head -n 8 "$test20" >t8.jsonl
expect_status gsm8k_gen 0 gen -m "$dense" --task gsm8k --tasks t8.jsonl --fewshot-file "$train10" \
    --max-new-tokens 24 --completions c1.jsonl --per-item p1.jsonl
cp "$last_out" r1.json
ref prompts gsm8k t8.jsonl q1.jsonl --fewshot "$train10" --k 5 --seed 1234 --keep 104
expect_status gsm8k_rollout 0 rollout -m "$dense" -p q1.jsonl --max-new-tokens 24 --stop Question: --stop '</s>' \
    --stop '<|im_end|>' -o o1.jsonl
refcase gsm8k_same_as_rollout same-completions c1.jsonl o1.jsonl
check gsm8k_records_keep_fields python3 -c '
import json, sys
recs = [json.loads(l) for l in open("c1.jsonl")]
items = [json.loads(l) for l in open("t8.jsonl")]
assert [r["idx"] for r in recs] == list(range(8)) and all(r["sample"] == 0 for r in recs)
assert all(r["question"] == it["question"] and r["answer"] == it["answer"] for r, it in zip(recs, items))
assert all(r["prompt"].endswith("Question: " + it["question"] + "\nAnswer:") for r, it in zip(recs, items))
assert all(len(r["prompt_ids"]) == 104 for r in recs)'
refcase gsm8k_per_item_as_lm_eval check gsm8k c1.jsonl p1.jsonl
refcase gsm8k_results_as_lm_eval results gsm8k c1.jsonl r1.json
check gsm8k_report_layout python3 -c '
import json
r = json.load(open("r1.json"))
assert set(r["results"]["gsm8k"]) == {"alias", "exact_match,strict-match", "exact_match_stderr,strict-match",
                                      "exact_match,flexible-extract", "exact_match_stderr,flexible-extract"}
assert r["n-shot"]["gsm8k"] == 5 and r["n-samples"]["gsm8k"]["effective"] == 8
assert r["config"]["generation_kwargs"]["until"] == ["Question:", "</s>", "<|im_end|>"]
assert r["higher_is_better"]["gsm8k"] == {"exact_match": True}'
# score re-scores gen's own file to the same numbers
expect_status score_gen_file 0 qw-eval score --task gsm8k c1.jsonl --per-item p1s.jsonl
check score_equals_gen python3 -c '
import json, sys
a, b = json.load(open("r1.json"))["results"], json.load(open(sys.argv[1]))["results"]
sys.exit(0 if a == b else 1)' "$last_out"
check score_per_item_equals_gen cmp -s p1.jsonl p1s.jsonl
# the first K in order, and another seed: other prompts, still qw-rollout's completions
expect_status gsm8k_first_n 0 gen -m "$moe" --task gsm8k --tasks t8.jsonl --fewshot-file "$train10" --num-fewshot 2 \
    --fewshot-first --max-new-tokens 16 --max-length 100 --completions c2.jsonl
ref prompts gsm8k t8.jsonl q2.jsonl --fewshot "$train10" --k 2 --first --keep 84
rollout -m "$moe" -p q2.jsonl --max-new-tokens 16 --stop Question: --stop '</s>' --stop '<|im_end|>' -o o2.jsonl
refcase gsm8k_first_n_same_as_rollout same-completions c2.jsonl o2.jsonl
check gsm8k_first_n_nshot grep -q '"gsm8k":[[:space:]]*2' "$last_out"
expect_status gsm8k_seed 0 gen -m "$dense" --task gsm8k --tasks t8.jsonl --fewshot-file "$train10" --seed 7 \
    --num-fewshot 3 --max-new-tokens 8 --completions c3.jsonl
ref prompts gsm8k t8.jsonl q3.jsonl --fewshot "$train10" --k 3 --seed 7 --keep 120
rollout -m "$dense" -p q3.jsonl --max-new-tokens 8 --stop Question: --stop '</s>' --stop '<|im_end|>' -o o3.jsonl
refcase gsm8k_seed_same_as_rollout same-completions c3.jsonl o3.jsonl

# ---- gsm8k_cot: the eight exemplars; the chat template with thinking off ----
expect_status cot_chat_gen 0 gen -m "$dense" --task gsm8k_cot --tasks t8.jsonl --chat --thinking off \
    --max-new-tokens 20 --completions c4.jsonl --per-item p4.jsonl
cp "$last_out" r4.json
ref prompts gsm8k_cot t8.jsonl q4.jsonl --k 8 --chat off --keep 108
rollout -m "$dense" -p q4.jsonl --max-new-tokens 20 --stop Q: --stop '</s>' --stop '<|im_end|>' -o o4.jsonl
refcase cot_chat_same_as_rollout same-completions c4.jsonl o4.jsonl
check cot_chat_config python3 -c '
import json
r = json.load(open("r4.json"))
assert r["n-shot"]["gsm8k_cot"] == 8 and r["config"]["apply_chat_template"] is True and r["config"]["thinking"] == "off"'
# thinking on (the template's default): the prompt ends in the open assistant turn; answers come after </think> only
expect_status chat_thinking_gen 0 gen -m "$moe" --task gsm8k --tasks t8.jsonl --num-fewshot 0 --chat \
    --max-new-tokens 16 --completions c8.jsonl --per-item p8.jsonl
ref prompts gsm8k t8.jsonl q8.jsonl --chat on --keep 112
rollout -m "$moe" -p q8.jsonl --max-new-tokens 16 --stop Question: --stop '</s>' --stop '<|im_end|>' -o o8.jsonl
refcase chat_thinking_same_as_rollout same-completions c8.jsonl o8.jsonl
refcase chat_thinking_per_item check gsm8k c8.jsonl p8.jsonl --thinking on
check chat_thinking_no_answer_without_think python3 -c '
import json
for l in open("p8.jsonl"):
    r = json.loads(l)
    assert "</think>" in r["completion"] or r["answer"] == {"strict-match": "[invalid]", "flexible-extract": "[invalid]"}, r'
expect_status cot_fewer_shots 0 gen -m "$moe" --task gsm8k_cot --tasks t8.jsonl --num-fewshot 1 --max-new-tokens 12 \
    --completions c5.jsonl
ref prompts gsm8k_cot t8.jsonl q5.jsonl --k 1 --keep 116
rollout -m "$moe" -p q5.jsonl --max-new-tokens 12 --stop Q: --stop '</s>' --stop '<|im_end|>' -o o5.jsonl
refcase cot_one_shot_same_as_rollout same-completions c5.jsonl o5.jsonl

# ---- math: zero-shot and two-shot from a file of solutions ----
python3 - <<'PY'
import json
items = [{"problem": "What is $1+1$?", "solution": "It is $\\boxed{2}$."},
         {"problem": "Simplify $\\frac{4}{8}$.", "solution": "Divide: $\\boxed{\\frac{1}{2}}$."},
         {"problem": "Solve $x^2=9$, $x>0$.", "solution": "So $x = \\boxed{3}$."},
         {"problem": "Write 0.25 as a fraction.", "answer": "\\frac14"}]
with open("m.jsonl", "w") as f:
    for it in items:
        f.write(json.dumps(it) + "\n")
PY
expect_status math_gen 0 gen -m "$moe" --task math --tasks m.jsonl --max-new-tokens 24 --completions c6.jsonl \
    --per-item p6.jsonl
cp "$last_out" r6.json
ref prompts math m.jsonl q6.jsonl --keep 104
rollout -m "$moe" -p q6.jsonl --max-new-tokens 24 --stop Problem: -o o6.jsonl
refcase math_same_as_rollout same-completions c6.jsonl o6.jsonl
refcase math_per_item_as_lm_eval check math c6.jsonl p6.jsonl
check math_metric_key grep -q '"exact_match,none"' r6.json
head -n 3 m.jsonl >m3.jsonl
expect_status math_fewshot 0 gen -m "$dense" --task math --tasks m.jsonl --fewshot-file m3.jsonl --num-fewshot 2 \
    --max-new-tokens 10 --completions c7.jsonl
ref prompts math m.jsonl q7.jsonl --fewshot m3.jsonl --k 2 --keep 118
rollout -m "$dense" -p q7.jsonl --max-new-tokens 10 --stop Problem: -o o7.jsonl
refcase math_fewshot_same_as_rollout same-completions c7.jsonl o7.jsonl

# ---- scoring hand-written completions (another engine's rollouts: completion + the task's fields) ----
python3 - <<'PY'
import json
q = {"question": "How many?", "answer": "Add them.\n3 + 4 = <<3+4=7>>7\n#### 1,234"}
comps = ["The total is 1234.\n#### 1,234", "#### $1,234.", "So 1,234 it is.", "#### -5 and #### 7", "no digits here",
         "It is 12 or 1,234.\nQuestion: what is 99?", "Answer: $1,234.00", "#### 1234.\n", "x 7 y -3", "#### .",
         "<think>It is 99.</think> #### 1234", "<think>maybe 1234", "The answer is 1,234. ok", "the answer is 1234.",
         "The answer is 12.The answer is 1234.", "#### 1,234\n\nQ: next", "</s>#### 1234", "2<|im_end|>#### 1234",
         "1,2,3,4", "$$", "-1234", "#### 1\u00a0234", "#### 1234\n#### 5"]
with open("h.jsonl", "w") as f:
    for i, c in enumerate(comps):
        f.write(json.dumps(dict(q, completion=c)) + "\n")
m = [("\\boxed{\\frac{1}{2}}", "$\\boxed{\\frac12}$"), ("\\boxed{0.5}", "\\boxed{\\dfrac{1}{2}}"),
     ("\\boxed{10}", "\\boxed{10^{\\circ}}"), ("\\boxed{5}", "\\boxed 5$ done"), ("\\boxed{5}", "\\fbox{5}"),
     ("\\boxed{\\sqrt3}", "\\boxed{\\sqrt{3}}"), ("\\boxed{3/4}", "\\boxed{\\frac{3}{4}}"), ("\\boxed{x=2}", "\\boxed{2}"),
     ("\\boxed{\\left(1,2\\right)}", "\\boxed{(1, 2)}"), ("\\boxed{{a}{b}}", "\\boxed{\\boxed{a}b}"),
     ("\\boxed{5\\text{ cm}}", "\\boxed{5}"), ("\\boxed{.5}", "\\boxed{0.5}"), ("\\boxed{1}", "\\boxed{1"),
     ("\\boxed{03/4}", "\\boxed{03/4}"), ("\\boxed{a/b}", "\\boxed{\\frac{a}{b}}"), ("\\boxed{1/2/3}", "\\boxed{1/2/3}"),
     ("\\boxed{\\frac1{72}}", "\\boxed{\\frac{1}{72}}"), ("\\boxed{\\frac}", "\\boxed{\\frac}"), ("\\boxed{50\\%}", "\\boxed{50}"),
     ("\\boxed{\\text{ a}\\text{ b}}", "\\boxed{\\text{ a}\\text{ b}}"), ("\\boxed{\\sqrt}", "\\boxed{\\sqrt }"),
     ("\\boxed{k = 7}", "\\boxed{7}"), ("\\boxed{abc = 7}", "\\boxed{7}"), ("\\boxed{-0/1}", "\\boxed{-0/1}"),
     ("\\boxed{2}", "first \\boxed{2} then \\boxed{3}"), ("\\boxed{2}", "Problem: \\boxed{2}"), ("\\boxed{\u00bd}", "\\boxed{\u00bd}")]
with open("hm.jsonl", "w") as f:
    for sol, c in m:
        f.write(json.dumps({"problem": "p", "solution": "so " + sol, "completion": c}) + "\n")
PY
for t in gsm8k gsm8k_cot; do
    expect_status "score_hand_$t" 0 qw-eval score --task $t h.jsonl --per-item "ph_$t.jsonl"
    refcase "score_hand_${t}_as_lm_eval" check $t h.jsonl "ph_$t.jsonl"
done
expect_status score_hand_thinking 0 qw-eval score --task gsm8k --thinking on h.jsonl --per-item ph_think.jsonl
refcase score_hand_thinking_as_lm_eval check gsm8k h.jsonl ph_think.jsonl --thinking on
check thinking_changes_answers test "$(cat ph_gsm8k.jsonl)" != "$(cat ph_think.jsonl)"
expect_status score_hand_math 0 qw-eval score --task math hm.jsonl --per-item ph_math.jsonl
cp "$last_out" rm.json
refcase score_hand_math_as_lm_eval check math hm.jsonl ph_math.jsonl
refcase score_hand_math_results results math hm.jsonl rm.json
check score_hand_math_mixed python3 -c '
import json
x = [json.loads(l)["exact_match"]["none"] for l in open("ph_math.jsonl")]
assert 0 < sum(x) < len(x), x'
expect_status score_markdown 0 qw-eval score --task gsm8k h.jsonl --markdown -
check score_markdown_rows grep -qE '^\|gsm8k\|strict-match\|5\|exact_match\|↑\|0\.[0-9]{4}\|±\|0\.[0-9]{4}\|$' "$last_out"

# ---- humaneval: pass@k of programs run in the sandbox, against the closed form ----
python3 - "$data/humaneval/HumanEval-first10.jsonl" <<'PY'
import json, sys
items = [json.loads(l) for l in open(sys.argv[1])][:6]
wrong = "    return None\n"
with open("he.jsonl", "w") as f:
    for i, it in enumerate(items):
        for j in range(5):   # item i has i correct samples of 5 (capped at 5)
            c = it["canonical_solution"] if j < min(i, 5) else wrong
            f.write(json.dumps(dict(it, idx=i, sample=j, completion=c + "\ndef unused():\n    pass\n")) + "\n")
PY
expect_status humaneval_score 0 qw-eval score --task humaneval --k 1,2,5 he.jsonl --per-item phe.jsonl
cp "$last_out" rhe.json
refcase humaneval_pass_at_k passk phe.jsonl rhe.json 1,2,5
check humaneval_verdicts python3 -c '
import json
x = [json.loads(l) for l in open("phe.jsonl")]
assert [it["correct"] for it in x] == [0, 1, 2, 3, 4, 5], [it["correct"] for it in x]
assert x[1]["verdicts"] == ["passed"] + ["failed"] * 4
assert x[1]["responses"][1] == "    return None\n", x[1]["responses"]'
expect_status humaneval_k_above_n 3 qw-eval score --task humaneval --k 6 he.jsonl
expect_stderr humaneval_k_above_n_msg "line 1: item 1 has 5 samples; pass@6 needs at least 6"
head -n 2 "$data/humaneval/HumanEval-first10.jsonl" >he2.jsonl
expect_status humaneval_gen 0 gen -m "$dense" --task humaneval --tasks he2.jsonl -n 2 --k 1,2 --temperature 1 \
    --max-new-tokens 8 --max-length 128 --completions che.jsonl --per-item pgen.jsonl
check humaneval_gen_samples python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))["results"]["humaneval"]
recs = [json.loads(l) for l in open("che.jsonl")]
assert [(x["idx"], x["sample"]) for x in recs] == [(0, 0), (0, 1), (1, 0), (1, 1)]
assert "pass@1,none" in r and "pass@2,none" in r' "$last_out"

# ---- --compare: two models side by side ----
expect_status gen_compare 0 gen -m "$dense" --task gsm8k --tasks t8.jsonl --num-fewshot 1 --max-new-tokens 8 \
    --compare "$moe"
check gen_compare_diff python3 -c '
import json, math, sys
r = json.load(sys.stdin)
a, b = r["results"]["gsm8k"], r["compare"]["results"]["gsm8k"]
for f in ("strict-match", "flexible-extract"):
    d = r["compare"]["diff"]["gsm8k"]["exact_match," + f]
    assert d["diff"] == b["exact_match," + f] - a["exact_match," + f]' <"$last_out"

# ---- bad input: exit 3 naming file and line, or a usage error ----
printf '%s\n' '{"question": "q", "answer": "#### 1"}' '{"question": "q2"}' >bad1.jsonl
expect_status bad_missing_answer 3 gen -m "$dense" --task gsm8k --tasks bad1.jsonl --num-fewshot 0
expect_stderr bad_missing_answer_msg "'bad1.jsonl': line 2: item 2: missing field 'answer'"
printf '%s\n' '{"question": "q", "answer": "#### 1"}' '{"question": ' >bad2.jsonl
expect_status bad_json 3 gen -m "$dense" --task gsm8k --tasks bad2.jsonl --num-fewshot 0
expect_stderr bad_json_msg "'bad2.jsonl': line 2: not JSON"
printf '%s\n' '{"question": "q", "answer": "#### 1"}' >bad3.jsonl
expect_status bad_no_completion 3 qw-eval score --task gsm8k bad3.jsonl
expect_stderr bad_no_completion_msg "'bad3.jsonl': line 1: missing field 'completion'"
printf '%s\n' '{"problem": "p", "solution": "no box", "completion": "x"}' >bad4.jsonl
expect_status bad_math_gold 3 qw-eval score --task math bad4.jsonl
expect_stderr bad_math_gold_msg "line 1: item 1: no .boxed\{\} answer in 'solution'"
: >empty.jsonl
expect_status bad_empty 3 qw-eval score --task gsm8k empty.jsonl
expect_status bad_task 2 qw-eval score --task gsm9k h.jsonl
expect_stderr bad_task_msg "'gsm9k' is not gsm8k, gsm8k_cot, math or humaneval"
expect_status bad_k_not_humaneval 2 qw-eval score --task gsm8k --k 2 h.jsonl
expect_status bad_k_above_samples 2 gen -m "$dense" --task humaneval --tasks he2.jsonl --k 2
expect_status bad_humaneval_chat 2 gen -m "$dense" --task humaneval --tasks he2.jsonl --chat
expect_status bad_new_tokens_fill_context 2 gen -m "$dense" --task gsm8k --tasks t8.jsonl --max-new-tokens 128
