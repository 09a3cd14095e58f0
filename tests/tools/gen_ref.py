#!/usr/bin/env python3
"""gen_ref.py — lm-evaluation-harness's generative tasks written out again in
Python (stdlib only, the `re` module), to check `qw-eval gen` and `qw-eval
score` (tests/tools/test_eval_gen.sh).  The functions follow lm-eval's
gsm8k.yaml / gsm8k-cot.yaml, filters/extraction.py (RegexFilter),
api/metrics.py (exact_match), hendrycks_math/utils.py and code_eval's pass@k.

    gen_ref.py prompts TASK TASKS OUT [--fewshot FILE] [--k K] [--seed S]
               [--first] [--chat on|off] [--keep N]
        the prompts lm-eval builds for TASKS (few-shot examples drawn by
        random.Random(S).sample, or the first K), optionally in the Qwen3 chat
        template as one user message, as qw-rollout input: {"prompt_ids": …}
        with a byte tokenizer (id = byte), left-truncated to the last N tokens
    gen_ref.py same-completions A B
        rollout files A and B hold the same prompt_ids and completion_ids, in
        the same order (exit 1 otherwise)
    gen_ref.py check TASK ROLLOUTS PER_ITEM [--thinking on|off]
        every item's answers and verdicts in PER_ITEM (qw-eval's --per-item)
        equal the ones recomputed here from ROLLOUTS' first samples
    gen_ref.py results TASK ROLLOUTS RESULTS [--thinking on|off]
        the metrics and stderrs of RESULTS (qw-eval's JSON) equal the mean
        and sample stderr recomputed here
    gen_ref.py passk PER_ITEM RESULTS K,...
        pass@k of each item (from its n and correct) by the closed form
        1 - C(n-c, k)/C(n, k), and their mean, against qw-eval's
"""
import json
import math
import random
import re
import sys

UNTIL = {"gsm8k": ["Question:", "</s>", "<|im_end|>"], "gsm8k_cot": ["Q:", "</s>", "<|im_end|>"],
         "math": ["Problem:"], "humaneval": ["\nclass", "\ndef", "\n#", "\nif", "\nprint"]}

COT = [  # gsm8k-cot.yaml fewshot_config.samples
    ("There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they are done, "
     "there will be 21 trees. How many trees did the grove workers plant today?",
     "There are 15 trees originally. Then there were 21 trees after some more were planted. So there must have "
     "been 21 - 15 = 6. The answer is 6."),
    ("If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the parking lot?",
     "There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. The answer is 5."),
    ("Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they have left in total?",
     "Originally, Leah had 32 chocolates. Her sister had 42. So in total they had 32 + 42 = 74. After eating 35, "
     "they had 74 - 35 = 39. The answer is 39."),
    ("Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How many lollipops did "
     "Jason give to Denny?",
     "Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he gave Denny 20 - 12 = 8. "
     "The answer is 8."),
    ("Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How many toys does he have now?",
     "Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is 4 more toys. 5 + 4 = 9. "
     "The answer is 9."),
    ("There were nine computers in the server room. Five more computers were installed each day, from monday to "
     "thursday. How many computers are now in the server room?",
     "There were originally 9 computers. For each of 4 days, 5 more computers were added. So 5 * 4 = 20 computers "
     "were added. 9 + 20 is 29. The answer is 29."),
    ("Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 more. How many golf "
     "balls did he have at the end of wednesday?",
     "Michael started with 58 golf balls. After losing 23 on tuesday, he had 58 - 23 = 35. After losing 2 more, he "
     "had 35 - 2 = 33 golf balls. The answer is 33."),
    ("Olivia has $23. She bought five bagels for $3 each. How much money does she have left?",
     "Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she has 23 - 15 dollars "
     "left. 23 - 15 is 8. The answer is 8."),
]


def load(path):
    return [json.loads(l) for l in open(path, encoding="utf-8") if l.strip()]


# ---- hendrycks_math/utils.py ----

def remove_boxed(s):
    if "\\boxed " in s:
        left = "\\boxed "
        assert s[: len(left)] == left
        return s[len(left):]
    left = "\\boxed{"
    assert s[: len(left)] == left
    assert s[-1] == "}"
    return s[len(left): -1]


def last_boxed_only_string(string):
    idx = string.rfind("\\boxed")
    if "\\boxed " in string:
        return "\\boxed " + string.split("\\boxed ")[-1].split("$")[0]
    if idx < 0:
        idx = string.rfind("\\fbox")
        if idx < 0:
            return None
    i = idx
    right_brace_idx = None
    num_left_braces_open = 0
    while i < len(string):
        if string[i] == "{":
            num_left_braces_open += 1
        if string[i] == "}":
            num_left_braces_open -= 1
            if num_left_braces_open == 0:
                right_brace_idx = i
                break
        i += 1
    return None if right_brace_idx is None else string[idx: right_brace_idx + 1]


def fix_fracs(string):
    substrs = string.split("\\frac")
    new_str = substrs[0]
    if len(substrs) > 1:
        for substr in substrs[1:]:
            new_str += "\\frac"
            if substr[0] == "{":
                new_str += substr
            else:
                if len(substr) < 2:
                    return string
                a, b = substr[0], substr[1]
                if b != "{":
                    new_str += "{" + a + "}{" + b + "}" + substr[2:]
                else:
                    new_str += "{" + a + "}" + b + substr[2:]
    return new_str


def fix_a_slash_b(string):
    if len(string.split("/")) != 2:
        return string
    a, b = string.split("/")
    a, b = int(a), int(b)   # ValueError goes out, as in lm-eval
    if string != "{}/{}".format(a, b):
        return string
    return "\\frac{" + str(a) + "}{" + str(b) + "}"


def remove_right_units(string):
    if "\\text{ " in string:
        splits = string.split("\\text{ ")
        assert len(splits) == 2
        return splits[0]
    return string


def fix_sqrt(string):
    if "\\sqrt" not in string:
        return string
    splits = string.split("\\sqrt")
    new_string = splits[0]
    for split in splits[1:]:
        if split[0] != "{":
            new_string += "\\sqrt{" + split[0] + "}" + split[1:]
        else:
            new_string += "\\sqrt" + split
    return new_string


def strip_string(string):
    string = string.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    string = string.replace("tfrac", "frac").replace("dfrac", "frac")
    string = string.replace("\\left", "").replace("\\right", "")
    string = string.replace("^{\\circ}", "").replace("^\\circ", "")
    string = string.replace("\\$", "")
    string = remove_right_units(string)
    string = string.replace("\\%", "")
    string = string.replace(" .", " 0.").replace("{.", "{0.")
    if len(string) == 0:
        return string
    if string[0] == ".":
        string = "0" + string
    if len(string.split("=")) == 2 and len(string.split("=")[0]) <= 2:
        string = string.split("=")[1]
    string = fix_sqrt(string)
    string = string.replace(" ", "")
    string = fix_fracs(string)
    if string == "0.5":
        string = "\\frac{1}{2}"
    return fix_a_slash_b(string)


def is_equiv(str1, str2):
    try:
        return strip_string(str1) == strip_string(str2)
    except Exception:
        return str1 == str2


# ---- filters and exact_match ----

def regex_filter(pattern, resp, group_select=0, fallback="[invalid]"):
    match = re.compile(pattern).findall(resp)
    if match:
        match = match[group_select]
        if isinstance(match, tuple):
            match = [m for m in match if m]
            match = match[0] if match else fallback
        return match.strip()
    return fallback


IGNORE = [",", "\\$", "(?s).*#### ", "\\.$"]


def exact_match(pred, ref):
    for s in IGNORE:
        pred, ref = re.sub(s, "", pred), re.sub(s, "", ref)
    return int(pred.lower() == ref.lower())


def response(task, text, thinking):
    for term in UNTIL[task]:
        text = text.split(term)[0]
    if "</think>" in text:
        return text.split("</think>")[-1]
    return "" if thinking else text


def score(task, rec, comp, thinking):
    """(answers by filter, verdicts by filter, gold)"""
    r = response(task, comp, thinking)
    if task == "math":
        gold = (remove_boxed(last_boxed_only_string(rec["solution"])) if "solution" in rec else rec["answer"])
        b = last_boxed_only_string(r)
        try:
            pred = remove_boxed(b) if b is not None else None
        except AssertionError:
            pred = None
        return {"none": pred}, {"none": int(pred is not None and is_equiv(pred, gold))}, gold
    gold = rec["answer"] if task == "gsm8k" else rec["answer"].split("####")[-1].strip()
    strict = r"#### (\-?[0-9\.\,]+)" if task == "gsm8k" else r"The answer is (\-?[0-9\.\,]+)."
    ans = {"strict-match": regex_filter(strict, r, 0),
           "flexible-extract": regex_filter(r"(-?[$0-9.,]{2,})|(-?[0-9]+)", r, -1)}
    return ans, {f: exact_match(a, gold) for f, a in ans.items()}, gold


def first_samples(path):
    out, last = [], object()
    for r in load(path):
        if "idx" in r and r["idx"] == last:
            continue
        last = r.get("idx", object())
        out.append(r)
    return out


def opt(args, name, default=None):
    return args[args.index(name) + 1] if name in args else default


def main(argv):
    cmd = argv[0]
    if cmd == "prompts":
        task, tasks, out = argv[1:4]
        items, k = load(tasks), int(opt(argv, "--k", "0"))
        pool = load(opt(argv, "--fewshot")) if "--fewshot" in argv else None
        rnd = random.Random(int(opt(argv, "--seed", "1234")))
        keep = int(opt(argv, "--keep", "1000000"))
        chat = opt(argv, "--chat")
        with open(out, "w") as f:
            for it in items:
                if task == "gsm8k_cot":
                    shots = ["Q: %s\nA: %s" % qa for qa in COT[:k]]
                    text = "Q: " + it["question"] + "\nA:"
                elif task == "gsm8k":
                    picks = list(range(k)) if "--first" in argv else rnd.sample(range(len(pool)), k) if k else []
                    shots = ["Question: " + pool[j]["question"] + "\nAnswer: " + pool[j]["answer"] for j in picks]
                    text = "Question: " + it["question"] + "\nAnswer:"
                elif task == "math":
                    picks = rnd.sample(range(len(pool)), k) if k else []
                    shots = ["Problem: " + pool[j]["problem"] + "\nAnswer: " + pool[j]["solution"] for j in picks]
                    text = "Problem: " + it["problem"] + "\nAnswer:"
                else:
                    shots, text = [], it["prompt"]
                text = "".join(s + "\n\n" for s in shots) + text
                if chat:
                    text = "<|im_start|>user\n" + text + "<|im_end|>\n<|im_start|>assistant\n"
                    if chat == "off":
                        text += "<think>\n\n</think>\n\n"
                ids = list(text.encode("utf-8"))[-keep:]
                f.write(json.dumps({"prompt_ids": ids}) + "\n")
        return 0
    if cmd == "same-completions":
        a, b = load(argv[1]), load(argv[2])
        pa = [(r["prompt_ids"], r["completion_ids"]) for r in a]
        pb = [(r["prompt_ids"], r["completion_ids"]) for r in b]
        if len(pa) != len(pb):
            print("%d records against %d" % (len(pa), len(pb)))
            return 1
        bad = [i for i in range(len(pa)) if pa[i] != pb[i]]
        if bad:
            i = bad[0]
            print("record %d differs: prompt %s, completion %s / %s" % (i, pa[i][0] == pb[i][0], pa[i][1], pb[i][1]))
            return 1
        print("%d records, %d completion tokens" % (len(pa), sum(len(x[1]) for x in pa)))
        return 0
    if cmd == "check":
        task, rollouts, per_item = argv[1:4]
        thinking = opt(argv, "--thinking", "off") == "on"
        recs, items = first_samples(rollouts), load(per_item)
        if len(recs) != len(items):
            print("%d records, %d per-item lines" % (len(recs), len(items)))
            return 1
        for i, (r, p) in enumerate(zip(recs, items)):
            ans, ok, gold = score(task, r, r["completion"], thinking)
            if p["answer"] != ans or p["exact_match"] != ok or p["gold"] != gold:
                print("item %d: qw %s %s, ref %s %s (completion %r)" % (i, p["answer"], p["exact_match"], ans, ok,
                                                                        r["completion"]))
                return 1
        print("%d items agree" % len(items))
        return 0
    if cmd == "results":
        task, rollouts, results = argv[1:4]
        thinking = opt(argv, "--thinking", "off") == "on"
        recs, res = first_samples(rollouts), json.load(open(results))["results"][task]
        ok = {}
        for r in recs:
            for f, v in score(task, r, r["completion"], thinking)[1].items():
                ok.setdefault(f, []).append(v)
        for f, x in ok.items():
            m = sum(x) / len(x)
            se = math.sqrt(sum((v - m) ** 2 for v in x) / (len(x) - 1) / len(x))
            if abs(res["exact_match," + f] - m) > 1e-12 or abs(res["exact_match_stderr," + f] - se) > 1e-12:
                print("%s: qw %s ± %s, ref %s ± %s" % (f, res["exact_match," + f], res["exact_match_stderr," + f], m, se))
                return 1
        print(" ".join("%s %.4f" % (f, sum(x) / len(x)) for f, x in ok.items()))
        return 0
    if cmd == "passk":
        items, res = load(argv[1]), json.load(open(argv[2]))["results"]["humaneval"]
        for k in map(int, argv[3].split(",")):
            v = []
            for it in items:
                n, c = it["n"], it["correct"]
                want = 1.0 - math.comb(n - c, k) / math.comb(n, k)
                if abs(it["pass@k"]["pass@%d" % k] - want) > 1e-12:
                    print("item %d: pass@%d %s, closed form %s" % (it["idx"], k, it["pass@k"]["pass@%d" % k], want))
                    return 1
                v.append(want)
            m = sum(v) / len(v)
            if abs(res["pass@%d,none" % k] - m) > 1e-12:
                print("pass@%d: %s, closed form %s" % (k, res["pass@%d,none" % k], m))
                return 1
        print("pass@k agrees")
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
