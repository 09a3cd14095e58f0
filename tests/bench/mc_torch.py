#!/usr/bin/env python3
"""Multiple-choice scoring with transformers, for tests/bench/mc_cuda.sh.

    mc_torch.py items --n N --seed S > items.jsonl
        N generic items ({"context", "choices", "gold"}): a context of 60-120
        words and four choices of 5-20 words, drawn from a fixed word list.
    mc_torch.py score --model DIR --tokenizer FILE --items FILE [--limit SECONDS]
        lm-evaluation-harness's HF path, one forward per choice (batch 1, bf16,
        SDPA): the context/continuation split of _encode_pair (trailing spaces
        of the context move to the continuation; continuation tokens =
        enc(context + continuation)[len(enc(context)):]), the log-likelihood
        summed over the continuation tokens, acc = argmax.  Prints one JSON
        object: items, requests, seconds, items_per_s, acc, and the
        log-likelihoods (for the comparison with qw's --per-item records).
"""
import argparse
import json
import random
import sys
import time

WORDS = ("the a of to and in is was for on that with as by at from it his her they this which "
         "river mountain city people house water light morning evening music garden market winter summer "
         "road book letter window friend teacher doctor child family story number paper table "
         "walked carried opened found became wrote said built moved turned looked followed "
         "quickly slowly early later never always often together across under between").split()


def cmd_items(a):
    rng = random.Random(a.seed)
    def words(lo, hi):
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))
    for _ in range(a.n):
        print(json.dumps({"context": words(60, 120).capitalize() + ".", "choices": [words(5, 20) for _ in range(4)],
                          "gold": rng.randrange(4)}))


def cmd_score(a):
    import torch
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast
    tok = PreTrainedTokenizerFast(tokenizer_file=a.tokenizer)
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.bfloat16, attn_implementation="sdpa").cuda().eval()
    items = [json.loads(l) for l in open(a.items)]
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]
    reqs = []
    for i, it in enumerate(items):
        for c in it["choices"]:
            ctx, cont = it["context"], " " + c
            n = len(ctx) - len(ctx.rstrip())
            if n:
                ctx, cont = ctx[:-n], ctx[-n:] + cont
            whole, ce = enc(ctx + cont), enc(ctx)
            reqs.append((i, whole, len(whole) - len(ce)))
    def run(rs):
        out = []
        with torch.no_grad():
            for i, whole, k in rs:
                x = torch.tensor([whole[:-1]], device="cuda")
                lp = torch.log_softmax(model(x).logits[0, -k:].float(), -1)
                tgt = torch.tensor(whole[-k:], device="cuda")
                out.append(lp.gather(1, tgt[:, None]).sum().item())
        return out
    run(reqs[:8])   # warm-up
    torch.cuda.synchronize()
    t0 = time.time()
    lls, done = [], 0
    for j in range(0, len(reqs), 4):
        lls += run(reqs[j:j + 4])
        done = j + 4
        if a.limit and time.time() - t0 > a.limit:
            break
    torch.cuda.synchronize()
    sec = time.time() - t0
    n_items = len({reqs[j][0] for j in range(min(done, len(reqs)))})
    acc = []
    for i in range(n_items):
        ll = [lls[j] for j in range(len(lls)) if reqs[j][0] == i]
        if len(ll) == len(items[i]["choices"]):
            acc.append(int(max(range(len(ll)), key=ll.__getitem__) == items[i]["gold"]))
    print(json.dumps({"items": n_items, "requests": len(lls), "seconds": round(sec, 3),
                      "items_per_s": round(n_items / sec, 2), "acc": sum(acc) / max(1, len(acc)), "lls": lls}))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("items")
    s.add_argument("--n", type=int, required=True)
    s.add_argument("--seed", type=int, default=1)
    s = sub.add_parser("score")
    s.add_argument("--model", required=True)
    s.add_argument("--tokenizer", required=True)
    s.add_argument("--items", required=True)
    s.add_argument("--limit", type=float, default=0)
    a = ap.parse_args()
    {"items": cmd_items, "score": cmd_score}[a.cmd](a)


if __name__ == "__main__":
    main()
