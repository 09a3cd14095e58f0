#!/usr/bin/env python3
"""make_train_curve.py — an independent reference for qw-pretrain's loop.

Trains the committed model dense_yarn/model on the committed packed data
train_curve/data with PyTorch + transformers (Qwen3ForCausalLM), following
the rules qw-pretrain(1) documents, and writes the per-step curve that
tests/tools/test_train_curve.sh makes qw-pretrain follow:

    python3 make_train_curve.py [--data DIR] [--model DIR] [--out DIR]

Runs where PyTorch and transformers are installed (the project's GPU
machine); CI never runs it, it only reads train_curve/curve.json.  Nothing
here calls qw: the data is read straight from the shard format of
qw-pack(5) (no zstd), and every rule of the loop is written out below.

The rules, as qw-pretrain implements them:
  rows      R = batch_tokens / T rows per step; step s (0-based) takes train
            rows (s·R + i) mod n_train, i = 0..R-1, numbering the rows of
            the train shards in index.json order.
  loss      mean over the step's targets of −log p(target); attention stays
            inside a segment and positions restart at each segment, so each
            segment is run as its own sequence.  Accumulation: the step's
            rows are taken MICRO at a time, one backward per micro-batch,
            each micro-batch's loss divided by the step's target count.
  grad_norm the global L2 norm of the gradient, before clipping.
  clip      scale = clip / (grad_norm + 1e-6) when that is below 1.
  AdamW     torch.optim.AdamW (β1 0.9, β2 0.95, eps 1e-8); weight decay on
            every matrix except the embedding (lm_head decays); none on the
            embedding and the RMSNorm weights.
  lr        step s: lr·s/W for s < W (W = warmup), then
            lr·(m + (1 − m)·½(1 + cos(π (s − W)/(N − W)))), m = min-lr-ratio.
  val_loss  at step 0 and after every eval_every steps and the last: sum of
            −log p over all targets of all val rows / their count.

Two runs: float64 on the CPU (the curve the test follows; HF's eager
softmax still rounds through float32) and float32 on CUDA with TF32 off
(kept in the file: its distance from the float64 curve is the noise floor
an fp32 trainer shows, which sets the test's tolerance).
"""
import argparse
import json
import math
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# The run: also the flags test_train_curve.sh gives qw-pretrain (from this file's output).
SETTINGS = {
    "seq_len": 32,
    "batch_tokens": 256,       # R = 8 rows per step
    "steps": 12,
    "lr": 1e-2,
    "warmup": 3,
    "min_lr_ratio": 0.1,
    "weight_decay": 0.1,
    "beta1": 0.9,
    "beta2": 0.95,
    "clip": 1.4,
    "eval_every": 4,
}
MICRO = 3                      # the reference's own micro-batch: 3 + 3 + 2 rows
NO_DECAY_SUFFIXES = ("embed_tokens.weight", "layernorm.weight", "q_norm.weight", "k_norm.weight", "model.norm.weight")

# ---- qw-pack(5) reader ----

sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from qw_tokens_ref import crc32c  # noqa: E402  (CRC-32C, qw-pack(5)'s checksum too)


def read_shard(path):
    """Rows of one shard: a list of (tokens[L], seg[L], pos[L], loss[L])."""
    data = open(path, "rb").read()
    (magic, version, flags, row_len, width, n_rows, identity, vocab, pad_id, rpb, n_blocks,
     index_offset, index_crc, header_crc) = struct.unpack("<4sHHIIQQIIIIQII", data[:64])
    assert magic == b"QWPK" and version == 1, path
    assert crc32c(data[:60]) == header_crc, path
    assert not flags & 2, "%s: zstd blocks; pack with --zstd 0" % path
    assert len(data) == index_offset + 24 * n_blocks, path
    index = data[index_offset:]
    assert crc32c(index) == index_crc, path
    L = row_len
    rows = []
    for b in range(n_blocks):
        off, stored, raw, crc, _ = struct.unpack_from("<QIIII", index, 24 * b)
        blk = data[off:off + stored]
        assert stored == raw and crc32c(blk) == crc, (path, b)
        p = 0
        while p < len(blk):
            n_valid, n_segs = struct.unpack_from("<II", blk, p)
            p += 8
            starts = list(struct.unpack_from("<%dI" % n_segs, blk, p))
            p += 4 * n_segs
            tokens = list(struct.unpack_from("<%d%s" % (L, "H" if width == 2 else "I"), blk, p))
            p += L * width
            mask = None
            if flags & 1:
                mb = blk[p:p + (L + 7) // 8]
                p += (L + 7) // 8
                mask = [(mb[i // 8] >> (i % 8)) & 1 for i in range(L)]
            seg, pos, loss = [0] * L, [0] * L, [0] * L
            k, start = 0, 0
            for i in range(n_valid):
                begins = k < n_segs and starts[k] == i
                if begins:
                    k += 1
                    start = i
                seg[i] = k
                pos[i] = i - start
                loss[i] = int(not begins and (mask is None or mask[i] == 1))
            rows.append((tokens, seg, pos, loss))
    assert len(rows) == n_rows, path
    return rows


def read_split(data_dir, split):
    index = json.load(open(os.path.join(data_dir, "index.json")))
    rows = []
    for s in index["shards"]:
        if s["split"] == split:
            got = read_shard(os.path.join(data_dir, s["file"]))
            assert len(got) == s["rows"], s
            rows += got
    return rows


def segments(row, T):
    """(first, inputs, targets, weights) of each segment of a row: inputs
    are tokens [first, end) with end ≤ T; input j predicts token j+1."""
    tokens, seg, pos, loss = row
    out = []
    i = 0
    while i < T:
        if seg[i] == 0:           # padding: its own document, never a target
            i += 1
            continue
        j = i
        while j < T and seg[j] == seg[i]:
            j += 1
        assert pos[i] == 0 or i == 0
        out.append((i, tokens[i:j], tokens[i + 1:j + 1], loss[i + 1:j + 1]))
        i = j
    return out


def n_targets(rows):
    return sum(sum(r[3][1:]) for r in rows)


def lr_at(s, step):
    lr, W, N, m = s["lr"], s["warmup"], s["steps"], s["min_lr_ratio"]
    if step < W:
        return lr * step / W
    x = (step - W) / (N - W)
    return lr * (m + (1 - m) * 0.5 * (1 + math.cos(math.pi * x)))


def step_rows(train, step, R):
    return [train[(step * R + i) % len(train)] for i in range(R)]


# ---- the reference run ----

def seq_loss(torch, model, seg, device):
    first, inp, tgt, w = seg
    ids = torch.tensor([inp], device=device)
    posn = torch.arange(len(inp), device=device).unsqueeze(0)
    logits = model(input_ids=ids, position_ids=posn).logits[0]
    lp = torch.log_softmax(logits, dim=-1)
    t = torch.tensor(tgt, device=device)
    wt = torch.tensor(w, dtype=lp.dtype, device=device)
    return -(lp.gather(1, t.unsqueeze(1)).squeeze(1) * wt).sum()


def run(model_dir, train, val, dtype_name, device):
    import torch
    from transformers import Qwen3ForCausalLM
    s = SETTINGS
    dtype = getattr(torch, dtype_name)
    model = Qwen3ForCausalLM.from_pretrained(model_dir, attn_implementation="eager").to(dtype).to(device)
    model.train()
    decay, no_decay, names = [], [], []
    for name, p in model.named_parameters():
        (no_decay if name.endswith(NO_DECAY_SUFFIXES) else decay).append(p)
        names.append((name, name.endswith(NO_DECAY_SUFFIXES)))
    # qw's no-decay set: the embedding, 4 norms per layer, the final norm
    assert len(no_decay) == 2 + 4 * model.config.num_hidden_layers, names
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": s["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=s["lr"], betas=(s["beta1"], s["beta2"]), eps=1e-8, foreach=False)
    params = decay + no_decay
    T, R = s["seq_len"], s["batch_tokens"] // s["seq_len"]

    def evaluate():
        tot, cnt = 0.0, 0
        with torch.no_grad():
            for row in val:
                for sg in segments(row, T):
                    if sum(sg[3]):
                        tot += float(seq_loss(torch, model, sg, device))
                cnt += sum(row[3][1:])
        return tot / cnt, cnt

    records = []
    vl, vt = evaluate()
    records.append({"step": 0, "val_loss": vl, "val_tokens": vt})
    for step in range(s["steps"]):
        rows = step_rows(train, step, R)
        n = n_targets(rows)
        opt.zero_grad(set_to_none=False)
        loss_sum = 0.0
        for first in range(0, R, MICRO):
            micro_loss = 0
            for row in rows[first:first + MICRO]:
                for sg in segments(row, T):
                    if sum(sg[3]):
                        micro_loss = micro_loss + seq_loss(torch, model, sg, device) / n
            if torch.is_tensor(micro_loss):
                micro_loss.backward()
                loss_sum += float(micro_loss)
        norm = float(torch.nn.utils.clip_grad_norm_(params, s["clip"]))
        lr = lr_at(s, step)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.step()
        records.append({"step": step + 1, "loss": loss_sum, "lr": lr, "grad_norm": norm,
                        "clipped": norm > s["clip"]})
        if (step + 1) % s["eval_every"] == 0 or step + 1 == s["steps"]:
            vl, vt = evaluate()
            records.append({"step": step + 1, "val_loss": vl, "val_tokens": vt})
    return records, names


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(HERE, "train_curve", "data"))
    ap.add_argument("--model", default=os.path.join(HERE, "dense_yarn", "model"))
    ap.add_argument("--out", default=os.path.join(HERE, "train_curve"))
    ap.add_argument("--dry-run", action="store_true", help="read the data and print the plan; no PyTorch")
    a = ap.parse_args()
    s = SETTINGS
    train, val = read_split(a.data, "train"), read_split(a.data, "val")
    R = s["batch_tokens"] // s["seq_len"]
    print("train rows %d, val rows %d, val targets %d" % (len(train), len(val), n_targets(val)))
    for step in range(s["steps"]):
        rows = step_rows(train, step, R)
        print("step %d: rows %d..%d (mod %d), %d targets, %d segments, lr %.6g" % (
            step, step * R, step * R + R - 1, len(train), n_targets(rows),
            sum(len(segments(r, s["seq_len"])) for r in rows), lr_at(s, step)))
    if a.dry_run:
        return
    import torch
    import transformers
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.use_deterministic_algorithms(True, warn_only=True)
    ref, names = run(a.model, train, val, "float64", "cpu")
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        f32, _ = run(a.model, train, val, "float32", dev)
    except Exception as e:   # keep the float64 curve even so
        print("float32 run failed: %r" % e)
        f32 = []
    dev32 = {}
    for k in ("loss", "grad_norm", "val_loss"):
        d = [abs(x[k] - y[k]) / abs(x[k]) for x, y in zip(ref, f32) if k in x]
        dev32[k] = max(d) if d else None
    out = {
        "about": "qw-pretrain's loop re-done in PyTorch by make_train_curve.py; README.md",
        "settings": s,
        "model": "dense_yarn/model",
        "data": "train_curve/data",
        "reference_micro_batch": MICRO,
        "no_decay": sorted(n for n, nd in names if nd),
        "decay": sorted(n for n, nd in names if not nd),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "fp32_device": torch.cuda.get_device_name(0) if dev == "cuda" else "cpu",
        "fp32_max_rel_dev_from_fp64": dev32,
        "train_rows": len(train),
        "val_rows": len(val),
        "curve": ref,
        "curve_fp32": f32,
    }
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "curve.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    for r in ref:
        print(json.dumps(r))
    print("fp32 vs fp64, max relative deviation:", json.dumps(dev32))
    print("clipped steps: %d of %d" % (sum(r.get("clipped", False) for r in ref), s["steps"]))


if __name__ == "__main__":
    sys.exit(main())
