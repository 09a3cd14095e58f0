#!/usr/bin/env python3
"""make_golden.py — build the HF parity fixtures under tests/golden/.

Runs where PyTorch and transformers 5.x are installed (the project's GPU
machine); CI never runs it, it only reads what it wrote.  For each fixture it
builds a tiny random Qwen3 / Qwen3-MoE model in fp32 with eager attention and
TF32 off, runs one forward and backward pass with labels = input_ids, and
writes (tests/golden/README.md describes every file):

    <name>/model/              config.json (Hub key generation) + model.safetensors (Hub layout)
    <name>/model_fused/        MoE only: transformers-5 fused experts + the config it saves
    <name>/input.safetensors   input_ids I64 [B,T]
    <name>/expected.safetensors logits, loss, aux_loss (MoE), grad.<HF name>, rope_*
    <name>/meta.json           versions, device, seed, self-checks

    python3 make_golden.py --out DIR [--only NAME ...]

With --tar FILE everything under DIR is also packed into one tar file.

    python3 make_golden.py --generate [--out DIR] [--only NAME ...]

loads each committed fixture model (<name>/model, fp32, eager attention)
and writes only <name>/generate.json: greedy continuations by transformers'
generate (do_sample=False, max_new_tokens=16, stopping at the config's
eos_token_id) of a few prompts of token ids, and per step the margin between
the largest and the second largest logit (a divergence after a step whose
margin is below 1e-4 is rounding, not a bug).  The other fixture files are
left as they are.  tests/tools/test_rollout_hf.sh reads generate.json.
"""
import argparse
import copy
import json
import math
import os
import sys
import tarfile
import traceback

import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModelForCausalLM

SEED = 1234
B, T = 2, 16

FIXTURES = {
    # Dense, untied, YaRN (factor 4 over 64 original positions), nh*d != H.
    "dense_yarn": dict(
        architectures=["Qwen3ForCausalLM"], model_type="qwen3",
        vocab_size=256, hidden_size=64, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=32,
        max_position_embeddings=256, rope_theta=1000000.0,
        rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64},
        tie_word_embeddings=False),
    # Dense, tied embeddings, one KV head, no rope scaling.
    "dense_tied": dict(
        architectures=["Qwen3ForCausalLM"], model_type="qwen3",
        vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16,
        max_position_embeddings=128, rope_theta=10000.0, rope_scaling=None,
        tie_word_embeddings=True),
    # MoE: layers 0 and 2 sparse, layer 1 dense (mlp_only_layers), E=8, k=2.
    "moe": dict(
        architectures=["Qwen3MoeForCausalLM"], model_type="qwen3_moe",
        vocab_size=256, hidden_size=64, intermediate_size=64, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        max_position_embeddings=128, rope_theta=1000000.0, rope_scaling=None,
        tie_word_embeddings=False,
        num_experts=8, num_experts_per_tok=2, moe_intermediate_size=16,
        decoder_sparse_step=1, mlp_only_layers=[1], norm_topk_prob=True,
        output_router_logits=True, router_aux_loss_coef=0.01),
}

COMMON = dict(hidden_act="silu", rms_norm_eps=1e-6, initializer_range=0.05,
              attention_bias=False, attention_dropout=0.0, use_sliding_window=False,
              sliding_window=None, use_cache=True, bos_token_id=1, eos_token_id=2,
              torch_dtype="float32")


def hub_config(spec):
    """config.json as published Qwen3 checkpoints spell it (transformers 4.5x keys)."""
    c = dict(spec)
    c.update(COMMON)
    c["max_window_layers"] = c["num_hidden_layers"]
    c["transformers_version"] = "4.51.0"
    return c


def yarn_reference(d, base, factor, orig, beta_fast=32.0, beta_slow=1.0):
    """YaRN inverse frequencies and cos/sin scale, from doc/model.md §2."""
    pf = base ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d)

    def corr(r):
        return d * math.log(orig / (r * 2 * math.pi)) / (2 * math.log(base))

    low, high = math.floor(corr(beta_fast)), math.ceil(corr(beta_slow))
    low, high = max(low, 0), min(high, d - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(d // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    inv = (1.0 / (factor * pf)) * ramp + (1.0 / pf) * (1 - ramp)
    scale = 0.1 * math.log(factor) + 1.0 if factor > 1 else 1.0
    return inv, scale


def to_hub_layout(sd, spec):
    """transformers-5 fused experts -> per-expert Hub tensors (gate rows first)."""
    out = {}
    E, Ie, H = spec.get("num_experts", 0), spec.get("moe_intermediate_size", 0), spec["hidden_size"]
    for n, t in sd.items():
        t = t.detach().float().cpu()
        if n.endswith("mlp.experts.gate_up_proj"):
            if tuple(t.shape) == (E, H, 2 * Ie):
                t = t.transpose(1, 2)
            assert tuple(t.shape) == (E, 2 * Ie, H), (n, t.shape)
            pre = n[: -len("gate_up_proj")]
            for j in range(E):
                out[f"{pre}{j}.gate_proj.weight"] = t[j, :Ie].contiguous()
                out[f"{pre}{j}.up_proj.weight"] = t[j, Ie:].contiguous()
        elif n.endswith("mlp.experts.down_proj"):
            if tuple(t.shape) == (E, Ie, H):
                t = t.transpose(1, 2)
            assert tuple(t.shape) == (E, H, Ie), (n, t.shape)
            pre = n[: -len("down_proj")]
            for j in range(E):
                out[f"{pre}{j}.down_proj.weight"] = t[j].contiguous()
        else:
            out[n] = t.contiguous()
    return out


def build_model(cfg_dir, device):
    config = AutoConfig.from_pretrained(cfg_dir)
    try:
        model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    except TypeError:
        config._attn_implementation = "eager"
        model = AutoModelForCausalLM.from_config(config)
    if hasattr(model, "set_experts_implementation"):
        try:
            model.set_experts_implementation("eager")
        except Exception:  # older 5.x: no such switch, eager is the only path
            pass
    return model.float().to(device)


def run(model, ids):
    model.zero_grad(set_to_none=True)
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    grads = {n: (p.grad if p.grad is not None else torch.zeros_like(p)).detach().float().cpu()
             for n, p in model.named_parameters()}
    aux = getattr(out, "aux_loss", None)
    return out, grads, aux


def make(name, spec, root, device, log):
    d = os.path.join(root, name)
    mdir = os.path.join(d, "model")
    os.makedirs(mdir, exist_ok=True)
    hub = hub_config(spec)
    with open(os.path.join(mdir, "config.json"), "w") as f:
        json.dump(hub, f, indent=2)
        f.write("\n")

    torch.manual_seed(SEED)
    model = build_model(mdir, "cpu")
    std = hub["initializer_range"]
    with torch.no_grad():   # HF init for linears/embeddings; norms perturbed so they matter
        for n, p in model.named_parameters():
            if n.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.normal_(0.0, std)
    model = model.to(device)
    meta = {"name": name, "seed": SEED, "batch": B, "seq_len": T,
            "torch": torch.__version__, "transformers": transformers.__version__,
            "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
            "attn_implementation": model.config._attn_implementation,
            "experts_implementation": getattr(model.config, "_experts_implementation", None),
            "tf32": torch.backends.cuda.matmul.allow_tf32,
            "init": f"normal(0, {std}) for every matrix; norm weights 1 + 0.1*normal",
            "checks": {}}
    g = torch.Generator().manual_seed(SEED + 1)
    ids = torch.randint(0, spec["vocab_size"], (B, T), generator=g, dtype=torch.int64)

    # MoE: record raw router logits to tell what HF feeds its aux loss.
    router_in = []
    hooks = []
    for mod_name, mod in model.named_modules():
        if mod_name.endswith("mlp.gate") and spec.get("num_experts"):
            hooks.append(mod.register_forward_hook(
                lambda m, a, o: router_in.append(a[0].detach().reshape(-1, a[0].shape[-1]) @ m.weight.detach().T)))
    out, grads, aux = run(model, ids.to(device))
    for h in hooks:
        h.remove()

    expected = {"logits": out.logits.detach().float().cpu().contiguous(),
                "loss": out.loss.detach().float().cpu().reshape(1)}
    if spec.get("num_experts"):
        expected["aux_loss"] = aux.detach().float().cpu().reshape(1)
        G = torch.cat(router_in).float()
        E, k = spec["num_experts"], spec["num_experts_per_tok"]

        def lb(gl):
            P = torch.softmax(gl, -1)
            _, sel = torch.topk(P, k, -1)
            M = torch.nn.functional.one_hot(sel, E).float()
            return E * (M.mean(0) * P.mean(0)).sum()

        a_logits, a_probs = lb(G).item(), lb(torch.softmax(G, -1)).item()
        hf = aux.item()
        meta["checks"]["aux_from_raw_logits"] = a_logits
        meta["checks"]["aux_from_probabilities"] = a_probs
        meta["aux_loss_router_input"] = "logits" if abs(a_logits - hf) <= abs(a_probs - hf) else "probabilities"
        P = torch.softmax(G, -1)
        top = torch.topk(P, k + 1, -1).values
        meta["checks"]["min_routing_gap"] = (top[:, k - 1] - top[:, k]).min().item()
        ce = out.loss.item() - spec["router_aux_loss_coef"] * hf
        meta["checks"]["ce_loss"] = ce
    for n, gr in to_hub_layout(grads, spec).items():
        expected["grad." + n] = gr
    rot = model.model.rotary_emb
    expected["rope_inv_freq"] = rot.inv_freq.detach().float().cpu().contiguous()
    expected["rope_attention_scaling"] = torch.tensor([float(rot.attention_scaling)])
    if spec.get("rope_scaling"):
        rs = spec["rope_scaling"]
        inv, scale = yarn_reference(spec["head_dim"], spec["rope_theta"], rs["factor"],
                                    rs["original_max_position_embeddings"])
        meta["checks"]["yarn_inv_freq_max_abs"] = (inv - expected["rope_inv_freq"]).abs().max().item()
        meta["checks"]["yarn_scale_abs"] = abs(scale - float(rot.attention_scaling))

    # The model in Hub layout (tied: no lm_head), and for MoE the fused layout.
    sd = model.state_dict()
    hub_sd = to_hub_layout(sd, spec)
    if spec["tie_word_embeddings"]:
        hub_sd.pop("lm_head.weight", None)
    save_file(hub_sd, os.path.join(mdir, "model.safetensors"), metadata={"format": "pt"})
    if spec.get("num_experts"):
        fdir = os.path.join(d, "model_fused")
        os.makedirs(fdir, exist_ok=True)
        model.config.save_pretrained(fdir)
        fused = {n: t.detach().float().cpu().contiguous() for n, t in sd.items()}
        save_file(fused, os.path.join(fdir, "model.safetensors"), metadata={"format": "pt"})
    save_file({"input_ids": ids.contiguous()}, os.path.join(d, "input.safetensors"))
    save_file(expected, os.path.join(d, "expected.safetensors"))

    # Self-checks: HF reloads what was written and reproduces the logits;
    # fp64 on the CPU gives the noise floor of the fp32 numbers.
    dirs = [("model", mdir)] + ([("model_fused", os.path.join(d, "model_fused"))] if spec.get("num_experts") else [])
    for tag, path in dirs:
        try:
            m2 = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager").float().to(device)
            with torch.no_grad():
                l2 = m2(input_ids=ids.to(device)).logits.float().cpu()
            meta["checks"][f"reload_{tag}_logits_max_abs"] = (l2 - expected["logits"]).abs().max().item()
        except Exception as e:
            meta["checks"][f"reload_{tag}_error"] = repr(e)
            log.write(traceback.format_exc())
    try:
        m64 = copy.deepcopy(model).cpu().double()
        out64, g64, _ = run(m64, ids)
        meta["checks"]["fp64_logits_max_abs"] = (out64.logits.float() - expected["logits"]).abs().max().item()
        meta["checks"]["fp64_loss_abs"] = abs(out64.loss.item() - expected["loss"].item())
        worst = 0.0
        for n, gr in to_hub_layout(g64, spec).items():
            e = expected["grad." + n].double()
            worst = max(worst, ((gr.double() - e).norm() / max(gr.double().norm().item(), 1e-30)).item())
        meta["checks"]["fp64_grad_max_rel"] = worst
    except Exception as e:
        meta["checks"]["fp64_error"] = repr(e)
        log.write(traceback.format_exc())
    meta["loss"] = expected["loss"].item()
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    # read back what was written
    assert set(load_file(os.path.join(d, "expected.safetensors"))) == set(expected)
    log.write(f"{name}: {json.dumps(meta)}\n")


GEN_NEW = 16
GEN_LENGTHS = [1, 5, 16, 17, 40]


def gen_prompts(vocab):
    """The prompts of generate.json: fixed ids, lengths crossing 16-token blocks."""
    return [[(7 * i + 13 * t + 3) % vocab for t in range(n)] for i, n in enumerate(GEN_LENGTHS)]


def make_generate(name, spec, root, device, log):
    d = os.path.join(root, name)
    mdir = os.path.join(d, "model")
    model = AutoModelForCausalLM.from_pretrained(mdir, attn_implementation="eager").float().to(device).eval()
    eos = model.config.eos_token_id
    recs = []
    for ids in gen_prompts(spec["vocab_size"]):
        x = torch.tensor([ids], dtype=torch.int64, device=device)
        with torch.no_grad():
            out = model.generate(x, do_sample=False, max_new_tokens=GEN_NEW, eos_token_id=eos, pad_token_id=eos,
                                 output_logits=True, return_dict_in_generate=True)
        comp = out.sequences[0, len(ids):].tolist()
        margins = []
        for step in out.logits:
            top = torch.topk(step[0].float(), 2).values
            margins.append((top[0] - top[1]).item())
        recs.append({"prompt_ids": ids, "completion_ids": comp, "margins": margins})
    meta = {"name": name, "torch": torch.__version__, "transformers": transformers.__version__,
            "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
            "attn_implementation": "eager", "dtype": "float32", "tf32": False,
            "do_sample": False, "max_new_tokens": GEN_NEW, "eos_token_id": eos, "prompts": recs}
    with open(os.path.join(d, "generate.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    log.write(f"{name}: generate {json.dumps(recs)}\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--tar")
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--generate", action="store_true", help="write only <name>/generate.json (see above)")
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = "cuda" if torch.cuda.is_available() else "cpu"
    os.makedirs(a.out, exist_ok=True)
    status = 0
    with open(os.path.join(a.out, "log-generate.txt" if a.generate else "log.txt"), "w") as log:
        for name, spec in FIXTURES.items():
            if a.only and name not in a.only:
                continue
            try:
                (make_generate if a.generate else make)(name, spec, a.out, device, log)
                print(f"{name}: ok", flush=True)
            except Exception:
                status = 1
                log.write(traceback.format_exc())
                traceback.print_exc()
    if a.tar:
        with tarfile.open(a.tar, "w") as tf:
            tf.add(a.out, arcname="golden")
    return status


if __name__ == "__main__":
    sys.exit(main())
