#!/usr/bin/env python3
"""rollout_torch.py — the PyTorch side of tests/bench/rollout_cuda.sh.

    rollout_torch.py model --config CFG.json --out DIR [--seed S]
        A Qwen3 model of that config with transformers' random
        initialisation, saved in bf16 (safetensors + config.json) for both
        sides to load.
    rollout_torch.py prompts --vocab V --n N --len L [--seed S]
        N prompts of L random ids, as qw-rollout records ({"prompt_ids": …}).
    rollout_torch.py generate --model DIR --prompts FILE --batch B --new N
        transformers `generate` (bf16, greedy, EOS ignored: min_new_tokens = N,
        KV cache, SDPA attention) over the first B prompts as one batch, after
        an untimed warm-up of 8 tokens; prints one JSON object: generated
        tokens, seconds (between device synchronisations), tokens/s.
    rollout_torch.py report --impl I --model M --batch B --prompt L --new N
                     --config CFG [--log FILE | --tps X --tokens T --seconds S]
                     [--note TEXT] [--variant NAME] [--error TEXT]
        One result line: tokens/s and the share of the HBM roofline: a decode
        step reads the bf16 weights and every running sequence's K/V, so
        bytes per step = 2·params + B·(L + N/2)·kv_bytes_per_token
        (2·layers·kv_heads·head_dim·2 bytes: 112 KiB for Qwen3-0.6B and
        1.7B), and the roofline is B tokens per (bytes / 4.8 TB/s).
"""
import argparse
import json
import random
import re
import sys
import time

HBM = 4.8e12


def params_of(c):
    H, I, L, V = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"]
    d, nh, nkv = c.get("head_dim") or H // c["num_attention_heads"], c["num_attention_heads"], c["num_key_value_heads"]
    per_layer = H * nh * d + 2 * H * nkv * d + nh * d * H + 3 * H * I + 2 * H + 2 * d
    emb = V * H * (1 if c.get("tie_word_embeddings") else 2)
    return L * per_layer + emb + H


def kv_bytes_per_token(c):
    d = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
    return 2 * c["num_hidden_layers"] * c["num_key_value_heads"] * d * 2


def cmd_model(a):
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM
    torch.manual_seed(a.seed)
    cfg = Qwen3Config(**{k: v for k, v in json.load(open(a.config)).items() if k not in ("architectures",)})
    with torch.device("cuda"):
        m = Qwen3ForCausalLM(cfg).to(torch.bfloat16)
    m.save_pretrained(a.out, safe_serialization=True)


def cmd_prompts(a):
    r = random.Random(a.seed)
    for _ in range(a.n):
        print(json.dumps({"prompt_ids": [r.randrange(a.vocab) for _ in range(a.len)]}))


def cmd_generate(a):
    import torch
    from transformers import AutoModelForCausalLM
    import transformers
    dt = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"   # renamed in 5.0
    m = AutoModelForCausalLM.from_pretrained(a.model, attn_implementation="sdpa", **{dt: torch.bfloat16}).cuda().eval()
    assert next(m.parameters()).dtype == torch.bfloat16
    rows = [json.loads(l)["prompt_ids"] for l in open(a.prompts)][:a.batch]
    ids = torch.tensor(rows, device="cuda")
    mask = torch.ones_like(ids)
    kw = dict(do_sample=False, eos_token_id=None, pad_token_id=0, use_cache=True)
    with torch.no_grad():
        m.generate(ids, attention_mask=mask, max_new_tokens=8, min_new_tokens=8, **kw)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = m.generate(ids, attention_mask=mask, max_new_tokens=a.new, min_new_tokens=a.new, **kw)
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
    n = (out.shape[1] - ids.shape[1]) * out.shape[0]
    print(json.dumps({"generated_tokens": n, "seconds": dt, "tokens_per_s": n / dt,
                      "peak_alloc_bytes": torch.cuda.max_memory_allocated()}))


def cmd_report(a):
    c = json.load(open(a.config))
    P = params_of(c)
    rec = {"bench": "rollout", "impl": a.impl, "model": a.model, "batch": a.batch, "prompt_tokens": a.prompt,
           "new_tokens": a.new}
    tps = tokens = seconds = None
    if a.log:
        # qw-rollout's closing line: "... N tokens generated in S s (X tok/s)"
        for line in open(a.log, errors="replace"):
            mt = re.search(r"(\d+) tokens generated in ([0-9.]+) s \(([0-9.]+) tok/s\)", line)
            if mt:
                tokens, seconds, tps = int(mt.group(1)), float(mt.group(2)), float(mt.group(3))
        if tps is None and not a.error:
            a.error = "no summary line in the log"
    elif a.tps is not None:
        tps, tokens, seconds = a.tps, a.tokens, a.seconds
    if a.error:
        rec["error"] = a.error
    else:
        mean_ctx = a.prompt + a.run_new / 2
        step_bytes = 2 * P + a.batch * mean_ctx * kv_bytes_per_token(c)
        roof = a.batch / (step_bytes / HBM)
        rec.update({"generated_tokens": tokens, "seconds": round(seconds, 3), "tokens_per_s": round(tps, 1),
                    "weights_bytes": 2 * P, "kv_bytes_per_token": kv_bytes_per_token(c),
                    "bytes_per_step": int(step_bytes), "roofline_tokens_per_s": round(roof, 1),
                    "roofline_share": round(tps / roof, 4)})
        if a.run_new != a.new:
            rec["new_tokens_run"] = a.run_new
    if a.variant:
        rec["variant"] = a.variant
    if a.note:
        rec["note"] = a.note
    print(json.dumps(rec))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("model")
    s.add_argument("--config", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--seed", type=int, default=0)
    s = sub.add_parser("prompts")
    s.add_argument("--vocab", type=int, required=True)
    s.add_argument("--n", type=int, required=True)
    s.add_argument("--len", type=int, required=True)
    s.add_argument("--seed", type=int, default=1)
    s = sub.add_parser("generate")
    s.add_argument("--model", required=True)
    s.add_argument("--prompts", required=True)
    s.add_argument("--batch", type=int, required=True)
    s.add_argument("--new", type=int, required=True)
    s = sub.add_parser("report")
    for k in ("impl", "model", "config"):
        s.add_argument("--" + k, required=True)
    for k in ("batch", "prompt", "new"):
        s.add_argument("--" + k, type=int, required=True)
    s.add_argument("--run-new", type=int, help="new tokens actually run (default --new)")
    s.add_argument("--log")
    s.add_argument("--tps", type=float)
    s.add_argument("--tokens", type=int)
    s.add_argument("--seconds", type=float)
    s.add_argument("--note")
    s.add_argument("--variant", help="how qw ran (graphs, nographs, deterministic)")
    s.add_argument("--error")
    a = p.parse_args()
    if a.cmd == "report" and a.run_new is None:
        a.run_new = a.new
    {"model": cmd_model, "prompts": cmd_prompts, "generate": cmd_generate, "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
