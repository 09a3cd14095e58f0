#!/usr/bin/env python3
"""make_vl_golden.py — the Qwen3-VL parity fixtures under tests/golden/.

    cd tests/golden && python3 make_vl_golden.py --out . [--only vl vl_moe]

Runs where PyTorch and transformers 5.x are installed (the project's GPU
machine; the CPU is enough).  For each fixture it builds a tiny random
Qwen3-VL (or Qwen3-VL-MoE) in fp32 with eager attention and TF32 off, from a
config.json written as published Qwen3-VL checkpoints spell it (transformers
4.57 keys: nested text_config / vision_config, rope_theta + rope_scaling with
mrope_section and mrope_interleaved, the vision token ids at the top level),
runs one forward with three images of different grids in a batch of two rows
and one backward of the loss, and writes:

    <name>/model/                config.json (Hub keys) + model.safetensors (HF names)
    <name>/model_v5/             the same model as transformers 5 saves it
                                 (save_pretrained: its config keys, its tensor layout)
    <name>/input.safetensors     input_ids I64 [B,T], pixel_values F32 [N,1536],
                                 image_grid_thw I64 [n,3], mm_token_type_ids I64 [B,T]
                                 (1 on image pads), labels I64 [B,T] (input_ids, −100 on
                                 image pads)
    <name>/expected.safetensors  logits F32 [B,T,V]; loss F32 [1] (mean next-token CE over
                                 labels ≠ −100, plus router_aux_loss_coef·aux_loss for MoE);
                                 aux_loss (MoE); grad.<HF name> for every parameter;
                                 position_ids I64 [3,B,T] (get_rope_index, as the text model
                                 received them); vision.patch_embed F32 [N,Hv] (the input of
                                 vision block 0: patch embedding + interpolated position
                                 embedding); vision.merged F32 [n_merged, H] (the merger's
                                 output); vision.deepstack.<j> F32 [n_merged, H]
    <name>/meta.json             versions, device, seed, sizes, self-checks

Weights: normal(0, 0.05) for every matrix, bias and embedding; norm weights
1 + 0.1·normal (LayerNorm biases normal too), so a parity test catches a term
that is never applied.
"""
import argparse
import copy
import json
import os
import sys
import traceback

import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModelForImageTextToText

SEED = 4321
B, T = 2, 40
V = 256
VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD = 250, 251, 252, 253
GRIDS = [(1, 4, 4), (1, 6, 4), (1, 4, 8)]   # patches (t, h, w); merged tokens 4, 6, 8
ROWS = [[0, 1], [2]]                         # images of each row, in order

VISION = {"deepstack_visual_indexes": [0, 1], "depth": 3, "hidden_act": "gelu_pytorch_tanh",
          "hidden_size": 32, "in_channels": 3, "initializer_range": 0.05, "intermediate_size": 64,
          "model_type": "qwen3_vl", "num_heads": 2, "num_position_embeddings": 16,
          "out_hidden_size": 64, "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2}

TEXT = {"attention_bias": False, "attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": 2,
        "head_dim": 16, "hidden_act": "silu", "hidden_size": 64, "initializer_range": 0.05,
        "intermediate_size": 96, "max_position_embeddings": 512, "num_attention_heads": 4,
        "num_hidden_layers": 3, "num_key_value_heads": 2, "rms_norm_eps": 1e-6,
        "rope_scaling": {"mrope_interleaved": True, "mrope_section": [4, 2, 2], "rope_type": "default"},
        "rope_theta": 5000000.0, "use_cache": True, "vocab_size": V, "dtype": "float32"}

FIXTURES = {
    "vl": dict(arch="Qwen3VLForConditionalGeneration", model_type="qwen3_vl",
               text=dict(TEXT, model_type="qwen3_vl_text", tie_word_embeddings=False), tie=False),
    "vl_moe": dict(arch="Qwen3VLMoeForConditionalGeneration", model_type="qwen3_vl_moe",
                   text=dict(TEXT, model_type="qwen3_vl_moe_text", tie_word_embeddings=False,
                             num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16,
                             decoder_sparse_step=1, mlp_only_layers=[], norm_topk_prob=True,
                             router_aux_loss_coef=0.01), tie=False),
}


def hub_config(spec):
    vision = dict(VISION, model_type=spec["model_type"])
    return {"architectures": [spec["arch"]], "model_type": spec["model_type"],
            "image_token_id": IMAGE_PAD, "video_token_id": VIDEO_PAD,
            "vision_start_token_id": VISION_START, "vision_end_token_id": VISION_END,
            "tie_word_embeddings": spec["tie"], "text_config": spec["text"], "vision_config": vision,
            "transformers_version": "4.57.0"}


def build_inputs():
    g = torch.Generator().manual_seed(SEED + 1)
    rows = []
    for r, imgs in enumerate(ROWS):
        toks = []
        for k, i in enumerate(imgs):
            n_text = 3 + 2 * k + r
            toks += torch.randint(3, 240, (n_text,), generator=g).tolist()
            t, h, w = GRIDS[i]
            toks += [VISION_START] + [IMAGE_PAD] * (t * h * w // 4) + [VISION_END]
        toks += torch.randint(3, 240, (T - len(toks),), generator=g).tolist()
        assert len(toks) == T
        rows.append(toks)
    ids = torch.tensor(rows, dtype=torch.int64)
    n_patch = sum(t * h * w for t, h, w in GRIDS)
    pix = torch.rand(n_patch, 3 * 2 * 16 * 16, generator=g, dtype=torch.float32) * 2 - 1
    grid = torch.tensor(GRIDS, dtype=torch.int64)
    mm = (ids == IMAGE_PAD).long()
    labels = ids.clone()
    labels[ids == IMAGE_PAD] = -100
    return ids, pix, grid, mm, labels


def build_model(cfg_dir, device):
    config = AutoConfig.from_pretrained(cfg_dir)
    try:
        model = AutoModelForImageTextToText.from_config(config, attn_implementation="eager")
    except TypeError:
        config._attn_implementation = "eager"
        model = AutoModelForImageTextToText.from_config(config)
    if hasattr(model, "set_experts_implementation"):
        try:
            model.set_experts_implementation("eager")
        except Exception:
            pass
    return model.float().to(device)


def tensors_of(x):
    """The tensors in a module output (tuple/list/ModelOutput), flattened in order."""
    if torch.is_tensor(x):
        return [x]
    if isinstance(x, (list, tuple)):
        return [t for y in x for t in tensors_of(y)]
    if hasattr(x, "to_tuple"):
        return tensors_of(x.to_tuple())
    return []


def run(model, inp, capture):
    ids, pix, grid, mm, labels = inp
    model.zero_grad(set_to_none=True)
    cap = {}
    hooks = []
    if capture:
        visual = model.model.visual
        def block0_in(m, a):    # a pre-hook that returns None keeps the input (and the graph)
            cap.setdefault("patch_embed", a[0].detach().clone())
        hooks.append(visual.blocks[0].register_forward_pre_hook(block0_in))

        def vis_out(m, a, o):
            cap["visual_out"] = o
        hooks.append(visual.register_forward_hook(vis_out))

        def lm_in(m, a, kw):
            if "position_ids" in kw and kw["position_ids"] is not None:
                cap.setdefault("position_ids", kw["position_ids"].detach().clone())
        hooks.append(model.model.language_model.register_forward_pre_hook(lm_in, with_kwargs=True))
    kw = dict(input_ids=ids, pixel_values=pix, image_grid_thw=grid, labels=labels)
    try:
        out = model(mm_token_type_ids=mm, **kw)
        cap["mm_token_type_ids_passed"] = True
    except TypeError:
        out = model(**kw)
        cap["mm_token_type_ids_passed"] = False
    for h in hooks:
        h.remove()
    out.loss.backward()
    grads = {n: (p.grad if p.grad is not None else torch.zeros_like(p)).detach().float().cpu()
             for n, p in model.named_parameters()}
    return out, grads, cap


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
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("norm.weight") or n.endswith("norm1.weight") or n.endswith("norm2.weight") \
                    or ".norm." in n and n.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.normal_(0.0, 0.05)
    model = model.to(device)
    inp_cpu = build_inputs()
    inp = tuple(x.to(device) for x in inp_cpu)
    out, grads, cap = run(model, inp, capture=True)

    expected = {"logits": out.logits.detach().float().cpu().contiguous(),
                "loss": out.loss.detach().float().cpu().reshape(1)}
    aux = getattr(out, "aux_loss", None)
    if aux is not None:
        expected["aux_loss"] = aux.detach().float().cpu().reshape(1)
    for n, gr in grads.items():
        expected["grad." + n] = gr.contiguous()
    meta = {"name": name, "seed": SEED, "batch": B, "seq_len": T, "grids": GRIDS, "rows": ROWS,
            "torch": torch.__version__, "transformers": transformers.__version__,
            "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
            "attn_implementation": model.config._attn_implementation, "tf32": False,
            "mm_token_type_ids_passed": cap.get("mm_token_type_ids_passed"),
            "init": "normal(0, 0.05) for every matrix, bias and embedding; norm weights 1 + 0.1*normal",
            "param_shapes": {n: list(p.shape) for n, p in model.named_parameters()},
            "checks": {}, "notes": []}
    if "position_ids" in cap:
        pos = cap["position_ids"].cpu().long()
        if pos.dim() == 3 and pos.shape[0] == 4:      # [text; t; h; w]: keep t, h, w
            meta["notes"].append("the text model received 4-row position ids; rows 1..3 kept")
            pos = pos[1:]
        expected["position_ids"] = pos.contiguous()
    else:
        meta["notes"].append("position_ids not captured")
    if "patch_embed" in cap:
        expected["vision.patch_embed"] = cap["patch_embed"].float().cpu().contiguous()
    vt = tensors_of(cap.get("visual_out"))
    meta["visual_output_shapes"] = [list(t.shape) for t in vt]
    # the merger's output and the DeepStack features.  transformers 5.17's
    # tower returns the merger's output split per image ([merged tokens of
    # image i, out_hidden] each, in image order) and the DeepStack features
    # whole ([all merged tokens, out_hidden] each); older versions return
    # (merged, [ds...]) with the merger's output whole.
    n_img = [t * h * w // 4 for t, h, w in GRIDS]
    n_merged, out_h = sum(n_img), VISION["out_hidden_size"]
    per = [t for t in vt if t.dim() == 2 and t.shape[1] == out_h and t.shape[0] != n_merged]
    whole = [t for t in vt if tuple(t.shape) == (n_merged, out_h)]
    if [t.shape[0] for t in per] == n_img:
        merged, ds = torch.cat(per), whole
    else:
        merged, ds = (whole[0], whole[1:]) if whole else (None, [])
    meta["notes"].append(f"visual outputs: {len(per)} per-image merger parts, {len(whole)} whole [{n_merged}, out_hidden]")
    if merged is not None:
        expected["vision.merged"] = merged.detach().float().cpu().contiguous()
    for j, t in enumerate(ds):
        expected[f"vision.deepstack.{j}"] = t.detach().float().cpu().contiguous()
    ids, pix, grid, mm, labels = inp_cpu
    save_file({"input_ids": ids, "pixel_values": pix, "image_grid_thw": grid, "mm_token_type_ids": mm,
               "labels": labels}, os.path.join(d, "input.safetensors"))
    save_file(expected, os.path.join(d, "expected.safetensors"))
    sd = {n: t.detach().float().cpu().contiguous() for n, t in model.state_dict().items()}
    if spec["tie"]:
        sd.pop("lm_head.weight", None)
    save_file(sd, os.path.join(mdir, "model.safetensors"), metadata={"format": "pt"})
    v5 = os.path.join(d, "model_v5")
    try:
        model.save_pretrained(v5, safe_serialization=True)
        meta["model_v5_tensors"] = {n: list(t.shape) for n, t in load_file(
            os.path.join(v5, "model.safetensors")).items()}
    except Exception as e:
        meta["checks"]["model_v5_error"] = repr(e)
        log.write(traceback.format_exc())
    for tag, path in (("model", mdir), ("model_v5", v5)):
        try:
            m2 = AutoModelForImageTextToText.from_pretrained(path, attn_implementation="eager").float().to(device)
            with torch.no_grad():
                o2, _, _ = None, None, None
                try:
                    o2 = m2(input_ids=inp[0], pixel_values=inp[1], image_grid_thw=inp[2], mm_token_type_ids=inp[3])
                except TypeError:
                    o2 = m2(input_ids=inp[0], pixel_values=inp[1], image_grid_thw=inp[2])
            meta["checks"][f"reload_{tag}_logits_max_abs"] = (o2.logits.float().cpu() - expected["logits"]).abs().max().item()
        except Exception as e:
            meta["checks"][f"reload_{tag}_error"] = repr(e)
            log.write(traceback.format_exc())
    try:
        m64 = copy.deepcopy(model).cpu().double()
        inp64 = tuple(x.cpu().double() if x.is_floating_point() else x.cpu() for x in inp)
        o64, g64, _ = run(m64, inp64, capture=False)
        meta["checks"]["fp64_logits_max_abs"] = (o64.logits.float() - expected["logits"]).abs().max().item()
        meta["checks"]["fp64_loss_abs"] = abs(o64.loss.item() - expected["loss"].item())
        worst, wname = 0.0, None
        for n, gr in g64.items():
            e = expected["grad." + n].double()
            rel = ((gr.double() - e).norm() / max(gr.double().norm().item(), 1e-30)).item()
            if rel > worst:
                worst, wname = rel, n
        meta["checks"]["fp64_grad_max_rel"] = worst
        meta["checks"]["fp64_grad_max_rel_name"] = wname
    except Exception as e:
        meta["checks"]["fp64_error"] = repr(e)
        log.write(traceback.format_exc())
    meta["loss"] = expected["loss"].item()
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    log.write(f"{name}: loss {meta['loss']} checks {json.dumps(meta['checks'])}\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--only", nargs="*")
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = "cuda" if torch.cuda.is_available() else "cpu"
    status = 0
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "log-vl.txt"), "w") as log:
        for name, spec in FIXTURES.items():
            if a.only and name not in a.only:
                continue
            try:
                make(name, spec, a.out, device, log)
                print(f"{name}: ok", flush=True)
            except Exception:
                status = 1
                log.write(traceback.format_exc())
                traceback.print_exc()
    return status


if __name__ == "__main__":
    sys.exit(main())
