#!/usr/bin/env bash
# test_reward.sh — qw-reward: math on GSM8K's gold answers (all 1) and
# perturbed ones (all 0), every extraction form and normalisation; the
# think format; weighted combinations; records written back byte for byte
# with the new fields; HumanEval's canonical solutions pass and wrong ones
# fail in both sandbox modes; the known holes (raising before or inside
# check, syntax errors, exit(0) early, a redefined check, forged markers);
# hostile programs (endless loop, fork bomb, memory, writing outside,
# reading a secret, sockets, background processes) contained, with no
# process and no temporary directory left; reward programs that work, die,
# hang or print garbage; order under --jobs; SIGTERM; bad input.
. "$QW_SRCDIR/tests/tools/lib.sh"
plan 57
cd "$tmp"
d=$QW_SRCDIR/tests/data
mkdir -p sbx && chmod 700 sbx
export TMPDIR=$tmp/sbx     # the sandbox's temporary directories: must be gone at the end
py() { python3 - "$@"; }

# ---- math on GSM8K ----
py "$d/gsm8k/test-first20.jsonl" >gold.jsonl <<'PY'
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l); r["completion"] = r["answer"]; print(json.dumps(r, ensure_ascii=False))
PY
py "$d/gsm8k/test-first20.jsonl" >wrong.jsonl <<'PY'
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l); head, n = r["answer"].rsplit("#### ", 1)
    r["completion"] = head + "#### " + str(int(n.replace(",", "")) + 1); print(json.dumps(r))
PY
expect_status "math: GSM8K gold answers as completions" 0 qw-reward --verifier math gold.jsonl -o gold.out
check "math: 20 records, reward 1 each, extracted = the gold number" py gold.out <<'PY'
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
assert len(rs) == 20, len(rs)
for r in rs:
    assert r["reward"] == 1.0 and type(r["reward"]) is float, r
    assert r["extracted"].replace(",", "") == r["answer"].rsplit("#### ", 1)[1].replace(",", ""), r["extracted"]
PY
check "records come back byte for byte, the new fields before the closing brace" py gold.jsonl gold.out <<'PY'
import json, sys
for a, b in zip(open(sys.argv[1]), open(sys.argv[2])):
    a = a.rstrip("\n")
    r = json.loads(b)
    tail = ', "reward": 1.0, "extracted": %s}' % json.dumps(r["extracted"], ensure_ascii=False)
    assert b.rstrip("\n") == a[:-1] + tail, (a[-40:], b[-80:])
PY
expect_status "math: perturbed answers" 0 qw-reward --verifier math -q wrong.jsonl -o wrong.out
check "math: perturbed answers score 0" py wrong.out <<'PY'
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
assert len(rs) == 20 and all(r["reward"] == 0.0 for r in rs), [r["reward"] for r in rs]
PY

# every extraction form and normalisation: each record says what it wants
cat >forms.jsonl <<'EOF'
{"answer": "#### 42", "completion": "So the total is \\boxed{42}.", "want": 1, "want_x": "42"}
{"answer": "#### 42", "completion": "\\boxed{41} was wrong; finally \\boxed{42}", "want": 1, "want_x": "42"}
{"answer": "x #### 1/2", "completion": "\\boxed{\\frac{1}{2}}", "want": 1, "want_x": "\\frac{1}{2}"}
{"answer": "0.5", "completion": "it is $\\boxed{\\dfrac{2}{4}}$", "want": 1, "want_x": "\\dfrac{2}{4}"}
{"answer": "#### 1234", "completion": "steps\n#### 1,234", "want": 1, "want_x": "1,234"}
{"answer": "#### 18", "completion": "#### $18.00", "want": 1, "want_x": "$18.00"}
{"answer": "#### 18", "completion": "We get 17 first. The answer is 18.", "want": 1, "want_x": "18"}
{"answer": "#### -5", "completion": "The answer is: **-5** degrees", "want": 1, "want_x": "-5"}
{"answer": "#### 25", "completion": "so 25% of them", "want": 1, "want_x": "25%"}
{"answer": "#### 3.75", "completion": "10 - 6.25 = 3.750", "want": 1, "want_x": "3.750"}
{"answer": "#### 7", "completion": "first 7 then 8", "want": 0, "want_x": "8"}
{"answer": "#### 7", "completion": "no number at all", "want": 0, "want_x": null}
{"answer": "#### 1000000", "completion": "\\boxed{1,000,000}", "want": 1, "want_x": "1,000,000"}
{"answer": "#### 2", "completion": "\\boxed{x = 2}", "want": 1, "want_x": "x = 2"}
{"answer": "#### 12", "completion": "\\boxed{12 \\text{ apples}}", "want": 1, "want_x": "12 \\text{ apples}"}
{"answer": "\\boxed{\\sqrt{2}}", "completion": "\\boxed{\\sqrt{2}}", "want": 1, "want_x": "\\sqrt{2}"}
{"answer": "#### 0.1", "completion": "\\boxed{1/10}", "want": 1, "want_x": "1/10"}
{"answer": "#### 0.1", "completion": "\\boxed{0.11}", "want": 0, "want_x": "0.11"}
EOF
expect_status "math: extraction forms" 0 qw-reward --verifier math -q forms.jsonl -o forms.out
check "math: each form finds its answer and scores as wanted" py forms.out <<'PY'
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
assert len(rs) == 18
for r in rs:
    assert r["reward"] == r["want"] and r["extracted"] == r["want_x"], r
PY
printf '%s\n' '{"gold": 42, "completion": "\\boxed{42.0}"}' '{"gold": 4.5, "completion": "4 1/2? no: 9/2"}' >field.jsonl
rewards() { python3 -c 'import json, sys; print([json.loads(l)["reward"] for l in sys.stdin])'; }
check "math: --answer-field, numeric gold" test "$(qw-reward --verifier math --answer-field gold -q <field.jsonl | rewards)" = "[1.0, 1.0]"

# ---- think, combinations, records that already carry a reward ----
cat >think.jsonl <<'EOF'
{"completion": "<think>\n2+2 is 4\n</think>\n\nThe answer is 4.", "answer": "4", "want": 1}
{"completion": "<think></think>4", "answer": "5", "want": 1}
{"completion": "The answer is 4.", "answer": "4", "want": 0}
{"completion": "<think>a <think> b</think> 4", "answer": "4", "want": 0}
{"completion": "<think>never closed, 4", "answer": "4", "want": 0}
{"completion": " <think>x</think> 4", "answer": "4", "want": 0}
EOF
check "think: TRL's think format" test "$(qw-reward --verifier think -q think.jsonl | rewards)" = "[1.0, 1.0, 0.0, 0.0, 0.0, 0.0]"
check "math:1,think:0.5: reward is the weighted sum, rewards per verifier" py <<PY
import json, subprocess
out = subprocess.run(["qw-reward", "--verifier", "math:1,think:0.5", "-q", "think.jsonl"], capture_output=True, text=True, check=True).stdout
rs = [json.loads(l) for l in out.splitlines()]
want = [(1, 1), (0, 1), (1, 0), (1, 0), (1, 0), (1, 0)]
for r, (m, t) in zip(rs, want):
    assert r["rewards"] == {"math": m, "think": t}, r
    assert abs(r["reward"] - (m + 0.5 * t)) < 1e-12, r
assert len(rs) == 6
PY
printf '%s\n' '{"a": 1.0, "reward": null, "completion": "\\boxed{3}", "answer": "3", "b": "é"}' >again.jsonl
check "a record's own reward is replaced in place, the rest as json.dumps writes it" py <<'PY'
import json, subprocess
out = subprocess.run(["qw-reward", "--verifier", "math", "-q", "again.jsonl"], capture_output=True, text=True, check=True).stdout
want = {"a": 1.0, "reward": 1.0, "completion": "\\boxed{3}", "answer": "3", "b": "é", "extracted": "3"}
assert out == json.dumps(want, ensure_ascii=False) + "\n", out
PY
check "stdin and -o give the same records" cmp <(qw-reward --verifier math -q <gold.jsonl) gold.out

# ---- bad input ----
printf '%s\n' '{"completion": "1", "answer": "1"}' '{"completion": "2"}' >noanswer.jsonl
expect_status "math: a record without the gold answer" 3 qw-reward --verifier math noanswer.jsonl -o noanswer.out
expect_stderr "  names file, line and field" "'noanswer.jsonl': line 2: no \"answer\""
check "  and writes no output file" test ! -e noanswer.out
printf '%s\n' '{"completion": "1", "answer": "1"}' '{"completion": "1", "answer": "1"}' '{"completion": ' >badjson.jsonl
expect_status "invalid JSON" 3 qw-reward --verifier math badjson.jsonl
expect_stderr "  names file and line" "'badjson.jsonl': line 3"
printf '%s\n' '{"answer": "1"}' >nocomp.jsonl
expect_status "no completion" 3 qw-reward --verifier think nocomp.jsonl
expect_status "code: a record without entry_point" 3 qw-reward --verifier code think.jsonl
expect_stderr "  names the line and the field" "line 1: no \"prompt\""
expect_status "--verifier model without --model" 2 qw-reward --verifier model gold.jsonl
expect_stderr "  says so" "needs --model"
expect_status "--verifier bogus" 2 qw-reward --verifier math,bogus gold.jsonl
expect_status "--verifier cmd without --cmd" 2 qw-reward --verifier cmd gold.jsonl

# ---- code: HumanEval ----
py "$d/humaneval/HumanEval-first10.jsonl" >he_good.jsonl <<'PY'
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l); r["completion"] = r["canonical_solution"]; print(json.dumps(r))
PY
py "$d/humaneval/HumanEval-first10.jsonl" >he_bad.jsonl <<'PY'
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l); r["completion"] = "    return None\n"; print(json.dumps(r))
PY
verdicts() { py "$@" <<'PY'
import json, sys
print(" ".join(json.loads(l)["verdict"] + ":" + repr(json.loads(l)["reward"]) for l in open(sys.argv[1])))
PY
}
ten() { printf "$1 %.0s" 1 2 3 4 5 6 7 8 9 10 | sed 's/ $//'; }
for m in auto rlimits; do
    expect_status "code ($m): canonical solutions" 0 qw-reward --verifier code --sandbox $m -j 4 he_good.jsonl -o good_$m.out
    expect_stderr "  the mode is said once" "code runs in a sandbox: "
    check "code ($m): all 10 pass, reward 1" test "$(verdicts good_$m.out)" = "$(ten passed:1.0)"
    expect_status "code ($m): wrong solutions" 0 qw-reward --verifier code --sandbox $m -q he_bad.jsonl -o bad_$m.out
    check "code ($m): all 10 fail, reward 0" test "$(verdicts bad_$m.out)" = "$(ten failed:0.0)"
done
check "--jobs 4 and --jobs 1 write the same records in the same order" \
    cmp good_auto.out <(qw-reward --verifier code -q -j 1 he_good.jsonl)

# the holes: each record says the verdict it must get
py "$d/humaneval/HumanEval-first10.jsonl" >holes.jsonl <<'PY'
import json, sys
p = [json.loads(l) for l in open(sys.argv[1])][2]        # truncate_number: return number % 1.0
good = "    return number % 1.0\n"
empty = "def check(candidate):\n    pass\n"
def rec(name, completion, want, test=p["test"]):
    print(json.dumps({"name": name, "prompt": p["prompt"], "completion": completion, "test": test,
                      "entry_point": p["entry_point"], "want": want}))
rec("correct", good, "passed")
rec("correct, empty check", good, "passed", empty)
rec("raises before check, empty check", good + "raise ValueError('before')\n", "failed", empty)
rec("raises inside check, empty check", "    raise RuntimeError('inside')\n", "failed", "def check(candidate):\n    candidate(1.5)\n")
rec("syntax error", "    return (number %\n", "failed")
rec("syntax error, empty check", "    return (number %\n", "failed", empty)
rec("redefines check", "    return 0.0\ndef check(candidate):\n    pass\n", "failed")
rec("exit(0) early", "    return 0.0\nexit(0)\n", "failed")
rec("sys.exit(0) early", "    return 0.0\nimport sys\nsys.exit(0)\n", "failed")
rec("os._exit(0) early", "    return 0.0\nimport os\nos._exit(0)\n", "failed")
rec("SystemExit inside check", "    raise SystemExit(0)\n", "failed")
rec("os._exit(0) inside check", "    import os; os._exit(0)\n", "failed")
rec("forges markers on every descriptor", "    return 0.0\nimport os\nfor fd in range(3, 300):\n    try: os.write(fd, b'0123456789abcdef0123456789abcdef')\n    except OSError: pass\nos._exit(0)\n", "failed")
rec("prints a success line", "    return 0.0\nprint('passed'); import os; os._exit(0)\n", "failed")
PY
for m in auto rlimits; do
    check "code ($m): holes closed (14 programs, each its verdict)" py <<PY
import json, subprocess
out = subprocess.run(["qw-reward", "--verifier", "code", "--sandbox", "$m", "-q", "holes.jsonl"], capture_output=True, text=True, check=True).stdout
rs = [json.loads(l) for l in out.splitlines()]
assert len(rs) == 14
bad = [(r["name"], r["verdict"], r["output"][-200:]) for r in rs if r["verdict"] != r["want"] or r["reward"] != (r["verdict"] == "passed")]
assert not bad, bad
PY
done

# flooding
printf '%s\n' '{"prompt": "", "completion": "import sys\nfor i in range(200000): sys.stdout.write(\"y\" * 99 + \"\\n\")\ndef f(): return 1\n", "test": "def check(c):\n    assert c() == 1\n", "entry_point": "f"}' >flood.jsonl
check "output flooding: 20 MB kept to --max-output, counted, still passes" py <<'PY'
import json, subprocess
out = subprocess.run(["qw-reward", "--verifier", "code", "-q", "--max-output", "1000", "flood.jsonl"], capture_output=True, text=True, check=True).stdout
r = json.loads(out)
assert r["verdict"] == "passed", r["verdict"]
assert len(r["output"]) < 1100 and r["output"].startswith("y" * 99), len(r["output"])
assert r["output"].endswith("[19999000 more bytes of output not kept]"), r["output"][-80:]
PY

# hostile programs: each renames itself qwtest-* so that what it leaves can be found
mkdir -p home && echo "qw-secret-$$" >home/secret && chmod 600 home/secret
py "$tmp" "$$" >hostile.jsonl <<'PY'
import json, sys
tmp, pid = sys.argv[1], sys.argv[2]
name = "import ctypes\nctypes.CDLL(None).prctl(15, b'qwtest-%s', 0, 0, 0)\n"
ok = "def f(): return 1\n"
test = "def check(c):\n    assert c() == 1\n"
def rec(what, body, want):
    print(json.dumps({"name": what, "prompt": "", "completion": (name % what) + body + ok, "test": test,
                      "entry_point": "f", "want": want}))
rec("loop", "while True: pass\n", "timeout")
rec("bomb", "import os\nwhile True:\n    try: os.fork()\n    except OSError: pass\n", "timeout")
rec("memory", "x = bytearray(8 << 30)\n", "failed")
rec("memgrow", "x = []\nwhile True: x.append(bytearray(1 << 24))\n", "failed")
rec("socket", "import socket\nsocket.create_connection(('127.0.0.1', 9))\n", "failed")
rec("bg", "import os, subprocess, time\nsubprocess.Popen(['sleep', '31337'])\nif os.fork() == 0:\n    time.sleep(300)\n", "passed")
rec("write", "open(%r, 'w').write('x')\n" % (tmp + "/outside.txt"), "failed")
rec("writetmp", "open('/tmp/qw-reward-escape-%s', 'w').write('x')\n" % pid, "failed")
rec("readsecret", "print(open(%r).read())\n" % (tmp + "/home/secret"), "failed")
rec("readroot", "import os\nprint(os.listdir(os.path.expanduser('~root')))\n", "failed")
PY
check "hostile programs (auto): each contained with its verdict" py <<'PY'
import json, subprocess
out = subprocess.run(["qw-reward", "--verifier", "code", "-q", "-j", "4", "--timeout", "3", "--memory", "512M", "hostile.jsonl"],
                     capture_output=True, text=True, check=True).stdout
rs = [json.loads(l) for l in out.splitlines()]
assert len(rs) == 10
bad = [(r["name"], r["verdict"], r["output"][-300:]) for r in rs if r["verdict"] != r["want"]]
assert not bad, bad
PY
check "  nothing written outside" test ! -e outside.txt -a ! -e /tmp/qw-reward-escape-$$
check "  the secret was not read" test -z "$(grep -l "qw-secret-$$" ./*.out 2>/dev/null)"
# rlimits mode: what it guarantees for any user (the file system is the user's, and programs
# running at once share the user's process limit: see qw-reward(1); hence -j 1)
grep -E '"name": "(loop|bomb|memory|memgrow|socket|bg)"' hostile.jsonl >hostile_rl.jsonl
check "hostile programs (rlimits): each contained with its verdict" py <<'PY'
import json, subprocess
out = subprocess.run(["qw-reward", "--verifier", "code", "--sandbox", "rlimits", "-q", "-j", "1", "--timeout", "3",
                      "--memory", "512M", "hostile_rl.jsonl"], capture_output=True, text=True, check=True).stdout
rs = [json.loads(l) for l in out.splitlines()]
assert len(rs) == 6
bad = [(r["name"], r["verdict"], r["output"][-300:]) for r in rs if r["verdict"] != r["want"]]
assert not bad, bad
PY
sleep 0.5
check "no process left behind (qwtest-*, sleep 31337)" test -z "$(pgrep 'qwtest-'; pgrep -f 'sleep 31337')"

# ---- SIGTERM: whole records, then 143 ----
py >slow.jsonl <<'PY'
import json
for i in range(6):
    print(json.dumps({"i": i, "prompt": "", "completion": "import time\ntime.sleep(0.6)\ndef f(): return 1\n",
                      "test": "def check(c):\n    assert c() == 1\n", "entry_point": "f"}))
PY
qw-reward --verifier code -q -j 1 slow.jsonl >slow.out 2>slow.err &
pid=$!
sleep 1.6
kill -TERM $pid
wait $pid
st=$?
check "SIGTERM: exit 143" test $st -eq 143
check "  whole records only, in order, fewer than all" py slow.out <<'PY'
import json, sys
text = open(sys.argv[1]).read()
assert text.endswith("\n") or text == "", repr(text[-50:])
rs = [json.loads(l) for l in text.splitlines()]
assert 0 < len(rs) < 6 and [r["i"] for r in rs] == list(range(len(rs))), [r["i"] for r in rs]
assert all(r["verdict"] == "passed" for r in rs)
PY
expect_stderr_file() { if grep -Eq -- "$2" "$3"; then pass "$1"; else fail "$1" "$(head -c 300 "$3")"; fi; }
expect_stderr_file "  says how many were written" "stopped by a signal: [0-9]+ of 6 records" slow.err

# ---- cmd: a reward program as a coprocess ----
cat >rp_good.py <<'PY'
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    print(json.dumps({"reward": len(r["completion"]) / 10, "judge": "len"}), flush=True)
PY
cat >rp_dies.py <<'PY'
import json, sys
for i, line in enumerate(sys.stdin):
    if i == 2: sys.exit(4)
    print(json.dumps({"reward": 1}), flush=True)
PY
cat >rp_hangs.py <<'PY'
import json, sys, time
for i, line in enumerate(sys.stdin):
    if i == 1: time.sleep(60)
    print(json.dumps({"reward": 1}), flush=True)
PY
cat >rp_garbage.py <<'PY'
import sys
for line in sys.stdin: print("the reward is 1", flush=True)
PY
expect_status "cmd: a good reward program" 0 qw-reward --verifier cmd --cmd "python3 rp_good.py" -q think.jsonl -o cmd.out
check "  its rewards and extra fields, in order" py think.jsonl cmd.out <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
assert len(a) == len(b) == 6
for x, y in zip(a, b):
    assert y["reward"] == len(x["completion"]) / 10 and y["judge"] == "len" and y["completion"] == x["completion"], y
PY
check "cmd:1,math:2 combined" py <<'PY'
import json, subprocess
out = subprocess.run(["qw-reward", "--verifier", "cmd:1,math:2", "--cmd", "python3 rp_good.py", "-q", "think.jsonl"],
                     capture_output=True, text=True, check=True).stdout
for l in out.splitlines():
    r = json.loads(l)
    assert abs(r["reward"] - (r["rewards"]["cmd"] + 2 * r["rewards"]["math"])) < 1e-12, r
PY
expect_status "cmd: a program that dies" 3 qw-reward --verifier cmd --cmd "python3 rp_dies.py" think.jsonl -o dies.out
expect_stderr "  names the record and the exit status" "'think.jsonl': line 3: the reward program ended before replying \(it exited with status 4\)"
check "  no partial output file" test ! -e dies.out
expect_status "cmd: a program that hangs" 3 qw-reward --verifier cmd --cmd "python3 rp_hangs.py" --timeout 1 think.jsonl
expect_stderr "  names the record and the limit" "line 2: no reply from the reward program within 1 s"
expect_status "cmd: a program that prints garbage" 3 qw-reward --verifier cmd --cmd "python3 rp_garbage.py" think.jsonl
expect_stderr "  names the record and quotes the reply" "line 1: the reward program's reply is not a JSON object with a number \"reward\": 'the reward is 1'"

check "no temporary directory left" test -z "$(ls -A sbx)"
