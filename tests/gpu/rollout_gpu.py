#!/usr/bin/env python3
"""rollout_gpu.py — qw-rollout on CUDA (bf16) against the CPU (tests/gpu/tools.sh).

    rollout_gpu.py greedy MODEL CPU.jsonl CUDA.jsonl
        Both files: greedy rollouts of the same prompts.  Teacher-forced
        check of the CUDA completions: the fp32 CPU forward (`qw-eval
        forward --device cpu`) over prompt + CUDA completion gives, at each
        completion position, the argmax and the log-softmax.  Reports the
        share of positions where the CUDA token is the CPU's argmax, the
        largest |CUDA logprob − CPU log-softmax|, and, free-running, the
        share of completion tokens equal to the CPU rollout's up to the
        first difference.  Fails when a position whose CPU top-2 margin
        exceeds the bf16 allowance disagrees, or a logprob misses by more
        than it.  The allowance: tests/gpu/tools.sh measures bf16 logits
        within 3e-2·max|logits| of fp32 on these fixtures; a log-softmax
        moves by at most twice a logit error, so 6e-2·max|logits| of the row.
    rollout_gpu.py trainer MODEL CUDA.jsonl MAX_OUT
        Trainer agreement: the bf16 training forward on CUDA (`qw-eval
        forward --device cuda --precision bf16`) over prompt + completion
        gives train log-probs of the sampled tokens (temperature-1 log-softmax);
        the records' raw_logprobs are the rollout's.  Reports the
        distribution of exp(train − rollout) and fails when more than
        MAX_OUT of the tokens fall outside [0.9, 1.1].
Prints one summary line per call.
"""
import json
import math
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import eval_st  # noqa: E402


def forward(model, ids, dev, tmp):
    inp, out = os.path.join(tmp, "in.st"), os.path.join(tmp, "out.st")
    eval_st.main(["eval_st.py", "write", inp, "input_ids:I64:1,%d:%s" % (len(ids), ",".join(map(str, ids)))])
    subprocess.run(["qw-eval", "forward", "--model", model, "--input", inp, "--output", out] + dev, check=True)
    hdr, data = eval_st.read(out)
    V = hdr["logits"]["shape"][2]
    flat = eval_st.values(hdr, data, "logits")
    return [flat[i * V:(i + 1) * V] for i in range(len(ids))]


def log_softmax_at(row, tok):
    mx = max(row)
    return row[tok] - (mx + math.log(sum(math.exp(x - mx) for x in row)))


def load(path):
    return [json.loads(l) for l in open(path) if l.strip()]


def greedy(model, cpu_path, cuda_path):
    cpu, cuda = load(cpu_path), load(cuda_path)
    assert [(r["idx"], r["sample"]) for r in cpu] == [(r["idx"], r["sample"]) for r in cuda], "records differ"
    n = agree = prefix = total = 0
    worst_lp, bad = 0.0, None
    with tempfile.TemporaryDirectory() as tmp:
        for a, b in zip(cpu, cuda):
            p, c = b["prompt_ids"], b["completion_ids"]
            rows = forward(model, p + c, ["--device", "cpu", "--threads", "1"], tmp)
            for t, tok in enumerate(c):
                row = rows[len(p) - 1 + t]
                allow = 6e-2 * max(abs(x) for x in row)
                srt = sorted(row, reverse=True)
                best = row.index(srt[0])
                n += 1
                agree += tok == best
                if tok != best and srt[0] - srt[1] > allow and bad is None:
                    bad = "record %d token %d: CUDA %d, CPU argmax %d with margin %.3g > %.3g" % (
                        b["idx"], t, tok, best, srt[0] - srt[1], allow)
                d = abs(b["logprobs"][t] - log_softmax_at(row, tok))
                worst_lp = max(worst_lp, d)
                if d > allow and bad is None:
                    bad = "record %d token %d: logprob differs by %.3g > %.3g" % (b["idx"], t, d, allow)
            k = 0
            while k < min(len(a["completion_ids"]), len(c)) and a["completion_ids"][k] == c[k]:
                k += 1
            prefix += k
            total += len(a["completion_ids"])
    print("greedy %s: %d tokens; CUDA token = CPU argmax (teacher-forced) at %.4f of positions; "
          "max |logprob - CPU| %.3g; free-running agreement with the CPU rollout %.4f (%d of %d)" % (
              os.path.basename(os.path.dirname(model.rstrip("/"))), n, agree / max(n, 1), worst_lp,
              prefix / max(total, 1), prefix, total))
    if bad:
        print(bad, file=sys.stderr)
        return 1
    return 0


def trainer(model, cuda_path, max_out):
    recs = load(cuda_path)
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in recs:
            p, c = r["prompt_ids"], r["completion_ids"]
            dev = os.environ.get("QW_GPU_DEVICE", "cuda")   # cpu: try the plumbing out
            rows = forward(model, p + c, ["--device", dev] + (["--precision", "bf16"] if dev == "cuda" else []), tmp)
            for t, tok in enumerate(c):
                ratios.append(math.exp(log_softmax_at(rows[len(p) - 1 + t], tok) - r["raw_logprobs"][t]))
    ratios.sort()
    n = len(ratios)
    out = sum(1 for x in ratios if not 0.9 <= x <= 1.1)
    q = lambda f: ratios[min(n - 1, int(f * n))]
    print("trainer agreement %s: %d tokens; exp(train - rollout) min %.4f p1 %.4f median %.4f p99 %.4f max %.4f; "
          "outside [0.9, 1.1]: %d (%.3f%%)" % (os.path.basename(os.path.dirname(model.rstrip("/"))), n, ratios[0],
                                               q(0.01), q(0.5), q(0.99), ratios[-1], out, 100.0 * out / n))
    return 1 if out > max_out * n else 0


if __name__ == "__main__":
    a = sys.argv[1:]
    if a and a[0] == "greedy" and len(a) == 4:
        sys.exit(greedy(a[1], a[2], a[3]))
    if a and a[0] == "trainer" and len(a) == 4:
        sys.exit(trainer(a[1], a[2], float(a[3])))
    print(__doc__, file=sys.stderr)
    sys.exit(2)
