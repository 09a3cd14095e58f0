#!/usr/bin/env python3
"""rollout_check.py — qw-rollout's records against a full forward of the model.

    rollout_check.py MODEL ROLLOUTS.jsonl TOL [--greedy] [--logprobs KEY]...

For every record, runs `qw-eval forward --threads 1` (the training forward)
over prompt_ids + completion_ids and, at each completion position t (the
logits of the position before it):
  --greedy        completion_ids[t] is the argmax of the logits
  --logprobs KEY  record[KEY][t] is the log-softmax of the logits at
                  completion_ids[t], within TOL (fp64 log-softmax of the fp32
                  logits); KEY may be given several times (logprobs,
                  raw_logprobs)
Prints one line "checked N tokens in R records; worst |KEY - forward| = X
(record I, token T); smallest greedy margin M" and exits 1 (with the first
failure on stderr) when a check fails.
"""
import json
import math
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import eval_st  # noqa: E402


def write_ids(path, ids):
    spec = "input_ids:I64:1,%d:%s" % (len(ids), ",".join(str(i) for i in ids))
    eval_st.main(["eval_st.py", "write", path, spec])


def main():
    args = sys.argv[1:]
    model, path, tol = args[0], args[1], float(args[2])
    greedy = "--greedy" in args
    keys = [args[i + 1] for i, a in enumerate(args) if a == "--logprobs"]
    recs = [json.loads(l) for l in open(path) if l.strip()]
    if not recs:
        print("no records in %s" % path, file=sys.stderr)
        return 1
    worst = {k: (0.0, None) for k in keys}
    margin, n_tok, bad = math.inf, 0, None
    cache = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r, rec in enumerate(recs):
            p, c = rec["prompt_ids"], rec["completion_ids"]
            ids = p + c
            if len(ids) < 2:
                ids = ids + [0]
            key = tuple(ids)
            if key not in cache:
                inp, out = os.path.join(tmp, "in.st"), os.path.join(tmp, "out.st")
                write_ids(inp, ids)
                subprocess.run(["qw-eval", "forward", "--model", model, "--input", inp, "--output", out,
                                "--threads", "1"], check=True)
                hdr, data = eval_st.read(out)
                V = hdr["logits"]["shape"][2]
                cache[key] = (eval_st.values(hdr, data, "logits"), V)
            logits, V = cache[key]
            for t, tok in enumerate(c):
                row = logits[(len(p) - 1 + t) * V:(len(p) + t) * V]
                mx = max(row)
                lse = mx + math.log(sum(math.exp(x - mx) for x in row))
                ref = row[tok] - lse
                n_tok += 1
                if greedy:
                    best = row.index(mx)
                    srt = sorted(row, reverse=True)
                    margin = min(margin, srt[0] - srt[1])
                    if tok != best and bad is None:
                        bad = "record %d token %d: %d, argmax %d (logits %g vs %g)" % (r, t, tok, best, row[tok], mx)
                for k in keys:
                    v = rec[k][t]
                    d = abs(v - ref)
                    if d > worst[k][0]:
                        worst[k] = (d, (r, t))
                    if d > tol and bad is None:
                        bad = "record %d token %d: %s %.9g, forward %.9g (|diff| %.3g > %g)" % (r, t, k, v, ref, d, tol)
    parts = ["checked %d tokens in %d records" % (n_tok, len(recs))]
    for k in keys:
        parts.append("worst |%s - forward| = %.3g%s" % (k, worst[k][0],
                     " (record %d, token %d)" % worst[k][1] if worst[k][1] else ""))
    if greedy:
        parts.append("smallest greedy margin %.3g" % margin)
    print("; ".join(parts))
    if bad:
        print(bad, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
