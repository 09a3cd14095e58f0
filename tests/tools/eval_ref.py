#!/usr/bin/env python3
"""eval_ref.py — lm-eval's scoring recomputed from `qw-eval forward` logits,
for a byte-level tokenizer (no merges: a token is a byte, its id the byte's
value), to check `qw-eval mc` and `qw-eval ppl` (stdlib only).

    eval_ref.py tokenizer DIR PREFIX
        write DIR/tokenizer.json (256 byte tokens, id = byte) and
        DIR/tokenizer_config.json with eos_token PREFIX (one byte character)
    eval_ref.py mc MODEL TASKS PER_ITEM PREFIX_ID [NSHOT SEED [DELIM]]
        build every (context, continuation) request of the generic items in
        TASKS as lm-eval does (few-shot examples drawn with Python's
        random.Random(SEED).sample, one more than NSHOT, the item itself
        dropped; left-truncated to the model's max_position_embeddings + 1
        tokens), score them from one `qw-eval forward` and compare with
        PER_ITEM's loglikelihoods; prints the worst |diff|, exit 1 above 1e-4
    eval_ref.py ppl MODEL DOC PER_ITEM PREFIX_ID MAXLEN
        the document's rolling windows written out by hand (prefix + first
        MAXLEN tokens; then chunks of MAXLEN, each input the MAXLEN tokens
        before its last one), scored the same way; compared with PER_ITEM's
        loglikelihood, tokens, words and bytes
"""
import json
import math
import os
import random
import re
import subprocess
import sys


def st_read(path):
    import struct
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n])
    hdr.pop("__metadata__", None)
    t = hdr["logits"]
    a, b = t["data_offsets"]
    vals = struct.unpack("<%df" % ((b - a) // 4), raw[8 + n + a:8 + n + b])
    return t["shape"], vals


def st_write_ids(path, rows):
    import struct
    T = max(len(r) for r in rows)
    flat = []
    for r in rows:
        flat += r + [0] * (T - len(r))   # padding after a row's tokens: causal, so it changes nothing before it
    blob = struct.pack("<%dq" % len(flat), *flat)
    h = json.dumps({"input_ids": {"dtype": "I64", "shape": [len(rows), T], "data_offsets": [0, len(blob)]}}).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + blob)


def score(model, reqs, workdir):
    """reqs: (tokens, k) → the summed log-softmax of the last k tokens."""
    rows = [toks[:-1] for toks, _ in reqs]
    inp, out = os.path.join(workdir, "ref_in.st"), os.path.join(workdir, "ref_out.st")
    st_write_ids(inp, rows)
    subprocess.run(["qw-eval", "forward", "--model", model, "--input", inp, "--output", out], check=True)
    (B, T, V), L = st_read(out)
    lls = []
    for b, (toks, k) in enumerate(reqs):
        ll = 0.0
        for t in range(len(toks) - 1 - k, len(toks) - 1):
            row = L[(b * T + t) * V:(b * T + t + 1) * V]
            m = max(row)
            lse = m + math.log(sum(math.exp(x - m) for x in row))
            ll += row[toks[t + 1]] - lse
        lls.append(ll)
    return lls


def pair(ctx, cont, prefix):
    """_encode_pair for a byte tokenizer: trailing whitespace moves to the continuation."""
    n = len(ctx) - len(ctx.rstrip())
    if n:
        cont, ctx = ctx[-n:] + cont, ctx[:-n]
    if ctx == "":
        c = list(cont.encode())
        return [prefix] + c, len(c)
    whole = list((ctx + cont).encode())
    return whole, len(whole) - len(ctx.encode())


def main(argv):
    cmd = argv[1]
    if cmd == "tokenizer":
        d, pre = argv[2], argv[3]
        bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
        cs = bs[:]
        for b in range(256):
            if b not in bs:
                bs.append(b)
                cs.append(256 + len(cs) - 188)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "tokenizer.json"), "w") as f:
            json.dump({"version": "1.0", "added_tokens": [], "normalizer": None,
                       "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                                         "use_regex": True},
                       "decoder": {"type": "ByteLevel"},
                       "model": {"type": "BPE", "vocab": {chr(c): b for b, c in zip(bs, cs)}, "merges": []}}, f)
        with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
            json.dump({"bos_token": None, "eos_token": pre}, f)
        return 0
    model, work = argv[2], os.path.dirname(os.path.abspath(argv[4]))
    if cmd == "mc":
        tasks, per_item, prefix = argv[3], argv[4], int(argv[5])
        nshot = int(argv[6]) if len(argv) > 6 else 0
        seed = int(argv[7]) if len(argv) > 7 else 1234
        delim = argv[8] if len(argv) > 8 else " "
        items = [json.loads(l) for l in open(tasks) if l.strip()]
        rnd = random.Random(seed)
        reqs, where = [], []
        for i, it in enumerate(items):
            pre = ""
            if nshot:
                picks = [j for j in rnd.sample(range(len(items)), nshot + 1) if j != i][:nshot]
                for j in picks:
                    ex = items[j]
                    pre += ex["context"] + delim + ex["choices"][ex["gold"]] + "\n\n"
            for c, ch in enumerate(it["choices"]):
                reqs.append(pair(pre + it["context"], delim + ch, prefix))
                where.append((i, c))
        L = json.load(open(os.path.join(model, "config.json")))["max_position_embeddings"]
        reqs = [(toks[-(L + 1):], k) for toks, k in reqs]   # lm-eval's left truncation to max_length + 1
        ref = score(model, reqs, work)
        got = [json.loads(l) for l in open(per_item)]
        worst = max(abs(ref[q] - got[i]["loglikelihoods"][c]) for q, (i, c) in enumerate(where))
        print("mc: %d requests, worst |ll diff| %.3g" % (len(reqs), worst))
        return 0 if worst <= 1e-4 and len(got) == len(items) else 1
    if cmd == "ppl":
        doc, per_item, prefix, L = argv[3], argv[4], int(argv[5]), int(argv[6])
        text = open(doc, encoding="utf-8").read()
        t = list(text.encode())
        reqs = [([prefix] + t[:min(L, len(t))], min(L, len(t)))]
        done = min(L, len(t))
        while done < len(t):
            end = min(done + L, len(t))
            reqs.append((t[end - L - 1:end], end - done))   # the input t[end-L-1:end-1], predicting t[done:end]
            done = end
        ll = sum(score(model, reqs, work))
        got = json.loads(open(per_item).readline())
        words = len(re.split(r"\s+", text))
        print("ppl: %d windows, ll %.6f, qw %.6f, |diff| %.3g" % (len(reqs), ll, got["loglikelihood"],
                                                                abs(ll - got["loglikelihood"])))
        ok = (abs(ll - got["loglikelihood"]) <= 1e-4 and got["tokens"] == len(t) and got["words"] == words and
              got["bytes"] == len(t) and got["windows"] == len(reqs))
        return 0 if ok else 1
    sys.exit("eval_ref.py: unknown command " + cmd)


sys.exit(main(sys.argv))
