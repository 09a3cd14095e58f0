#!/usr/bin/env python3
"""demo_report.py — summarise the demo: the three pretraining stages and,
with --post, the post-training stages of pipelines/post.mk.

Reads OUT/logs/MODEL-sN.jsonl (qw-pretrain --log) and writes
  OUT/report.md   a table per model: validation loss before and after each
                  stage, steps, tokens, mean tokens/s, training time, and
                  the figure OUT/loss.svg that demo.mk draws with qw-eval plot
and prints the table.  With --post it also reads the post-training logs
(OUT/logs/sft-*.jsonl, OUT/ckpt/grpo/it-*/grpo.jsonl, OUT/logs/dpo.jsonl),
the scored held-out completions (OUT/eval/*.jsonl), the task files
(OUT/tasks) and the stage times (OUT/times), and writes
  OUT/report.md   a table per post-training stage: metrics before and
                  after, time; the figures OUT/grpo.svg and OUT/dpo.svg
  OUT/logs/grpo.jsonl  one metrics record per GRPO iteration (step = the
                  iteration), for qw-eval plot
  OUT/summary.json     every stage's metrics under pretrain, sft, grpo, dpo
                  and eval (qw(7) describes the keys).
Held-out accuracy is the mean verifier reward of the greedy completions,
with its binomial standard error sqrt(p(1-p)/n); the change GRPO makes
has the standard error of the paired differences.  Exits 1 if a log is
missing, a pretraining stage did not lower its validation loss, or a
held-out problem appears in a file trained on.  Standard library only.
"""
import argparse
import glob
import json
import math
import os
import sys

STAGES = [(1, "S1 general"), (2, "S2 reasoning"), (3, "S3 long context")]


def read_log(path):
    train, val = [], []
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            (val if "val_loss" in r else train).append(r)
    return train, val


def summarise(out, models):
    rows, bad = [], []
    for m in models:
        for n, name in STAGES:
            path = os.path.join(out, "logs", f"{m}-s{n}.jsonl")
            if not os.path.exists(path):
                sys.exit(f"demo_report.py: '{path}': no such log")
            train, val = read_log(path)
            if not train or len(val) < 2:
                sys.exit(f"demo_report.py: '{path}': needs training records and two validation records")
            per_step = train[0]["tokens"] / train[0]["step"]
            secs = sum(per_step / r["tok_per_s"] for r in train)
            before, after = val[0]["val_loss"], val[-1]["val_loss"]
            if not after < before:
                bad.append(f"{m} {name}: validation loss {before:.4f} -> {after:.4f} did not fall")
            tokens = train[-1]["tokens"]
            rows.append((m, name, len(train), tokens, before, after, tokens / secs, secs))
    return rows, bad


def table(rows):
    lines = ["| model | stage | steps | tokens | val loss before | val loss after | tok/s | time |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for m, name, steps, tokens, before, after, tps, secs in rows:
        lines.append(f"| {m} | {name} | {steps} | {tokens} | {before:.4f} | {after:.4f} | {tps:.0f} | {secs:.1f} s |")
    return "\n".join(lines)


def load(path):
    if not os.path.exists(path):
        sys.exit(f"demo_report.py: '{path}': no such file")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def seconds(out, name):
    """The wall-clock seconds timed.sh recorded for a stage (None if none)."""
    path = os.path.join(out, "times", name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return sum(float(x) for x in f if x.strip())


def accuracy(out, name):
    """Held-out accuracy of OUT/eval/NAME.jsonl: n, p, its standard error,
    the mean completion length, the fraction that ended (EOS), the rewards."""
    recs = load(os.path.join(out, "eval", name + ".jsonl"))
    n = len(recs)
    r = [float(x["reward"]) for x in recs]
    p = sum(r) / n
    return {"n": n, "accuracy": p, "stderr": math.sqrt(p * (1 - p) / n),
            "completion_tokens": sum(len(x["completion_ids"]) for x in recs) / n,
            "finished": sum(x["finish_reason"] == "stop" for x in recs) / n,
            "seconds": seconds(out, "eval-" + name)}, r


def sft_stage(out, name):
    train, val = read_log(os.path.join(out, "logs", f"sft-{name}.jsonl"))
    if not train or not val:
        sys.exit(f"demo_report.py: '{out}/logs/sft-{name}.jsonl': needs training and validation records")
    per_step = train[0]["tokens"] / train[0]["step"]
    return {"steps": len(train), "tokens": train[-1]["tokens"],
            "val_loss_before": val[0]["val_loss"], "val_loss_after": val[-1]["val_loss"],
            "seconds": sum(per_step / r["tok_per_s"] for r in train)}


def questions(path):
    """The user questions of a task file (prompts or conversations) or, for
    a corpus file, the questions its documents ask."""
    qs = set()
    for rec in load(path):
        if "messages" in rec:
            qs.add(next(m["content"] for m in rec["messages"] if m["role"] == "user"))
        elif "text" in rec and rec["text"].startswith("Question: "):
            qs.add(rec["text"][len("Question: "):].split("\n", 1)[0])
    return qs


def pick(rec, *names):
    for k in names:
        if k in rec:
            return rec[k]
    return None


def fmt_acc(a):
    return f"{100 * a['accuracy']:.1f}% ± {100 * a['stderr']:.1f}"


def fmt_s(x):
    return "–" if x is None else f"{x:.1f} s"


def post(out):
    """The post-training stages: (markdown, summary dict)."""
    heldout = questions(os.path.join(out, "tasks", "heldout.jsonl"))
    trained = ["tasks/cot.jsonl", "tasks/fusion-src.jsonl", "tasks/grpo.jsonl", "tasks/dpo.jsonl",
               "corpus/reasoning.jsonl"]
    overlap = {f: len(heldout & questions(os.path.join(out, f))) for f in trained
               if os.path.exists(os.path.join(out, f))}
    if any(overlap.values()):
        sys.exit(f"demo_report.py: held-out problems in files trained on: {overlap}")
    md = []

    # cold-start SFT
    cold = sft_stage(out, "cold")
    sft_acc, r_before = accuracy(out, "sft-think")
    cold["conversations"] = len(load(os.path.join(out, "tasks", "cot.jsonl")))
    cold["heldout_accuracy"], cold["heldout_accuracy_stderr"] = sft_acc["accuracy"], sft_acc["stderr"]
    md += ["## Cold-start SFT", "",
           "| conversations | steps | tokens | val loss before | val loss after | held-out accuracy (thinking) | time |",
           "|---:|---:|---:|---:|---:|---:|---:|",
           f"| {cold['conversations']} | {cold['steps']} | {cold['tokens']} | {cold['val_loss_before']:.4f} | "
           f"{cold['val_loss_after']:.4f} | {fmt_acc(sft_acc)} | {fmt_s(cold['seconds'])} |", ""]

    # GRPO
    its = sorted(glob.glob(os.path.join(out, "ckpt", "grpo", "it-*", "grpo.jsonl")))
    if not its:
        sys.exit(f"demo_report.py: '{out}/ckpt/grpo': no iterations")
    per_it, secs = [], 0.0
    for i, path in enumerate(its, 1):
        rec = dict(load(path)[0])
        rec["step"] = i
        per_it.append(rec)
        t = os.path.join(os.path.dirname(path), "seconds")
        if os.path.exists(t):
            secs += float(open(t).read())
    with open(os.path.join(out, "logs", "grpo.jsonl"), "w") as f:
        for rec in per_it:
            f.write(json.dumps(rec) + "\n")
    grpo_acc, r_after = accuracy(out, "grpo-think")
    n = len(r_before)
    d = [a - b for a, b in zip(r_after, r_before)]
    dm = sum(d) / n
    d_se = math.sqrt(sum((x - dm) ** 2 for x in d) / (n - 1) / n) if n > 1 else 0.0
    prompts = len(load(os.path.join(its[0].rsplit("/", 1)[0], "prompts.jsonl")))
    group = len(load(os.path.join(its[0].rsplit("/", 1)[0], "scored.jsonl"))) // max(prompts, 1)
    grpo = {"iterations": len(per_it), "prompts_per_iteration": prompts, "group": group,
            "heldout_n": n, "heldout_overlap": sum(overlap.values()),
            "heldout_accuracy_before": sft_acc["accuracy"], "heldout_accuracy_before_stderr": sft_acc["stderr"],
            "heldout_accuracy_after": grpo_acc["accuracy"], "heldout_accuracy_after_stderr": grpo_acc["stderr"],
            "heldout_accuracy_change": dm, "heldout_accuracy_change_stderr": d_se,
            "reward_per_iteration": [r["reward_mean"] for r in per_it],
            "loss_per_iteration": [r["loss"] for r in per_it],
            "frac_reward_zero_std_per_iteration": [r.get("frac_reward_zero_std") for r in per_it],
            "completion_length_per_iteration": [r.get("completion_length") for r in per_it],
            "seconds": secs}
    k = max(1, len(per_it) // 5)
    first = sum(grpo["reward_per_iteration"][:k]) / k
    last = sum(grpo["reward_per_iteration"][-k:]) / k
    md += ["## GRPO (reasoning RL)", "",
           f"{grpo['iterations']} iterations of {prompts} new prompts × {group} samples at temperature 1, "
           f"rewarded by the math verifier; held-out accuracy on {n} problems never trained on "
           "(greedy, thinking), ± the binomial standard error; the change ± the standard error of the paired "
           "differences.  Reward: the mean training reward of the first and last "
           f"{k} iteration(s).", "",
           "| iterations | reward first → last | held-out before | held-out after | change | time |",
           "|---:|---:|---:|---:|---:|---:|",
           f"| {grpo['iterations']} | {first:.3f} → {last:.3f} | {fmt_acc(sft_acc)} | {fmt_acc(grpo_acc)} | "
           f"{100 * dm:+.1f} ± {100 * d_se:.1f} points | {secs:.1f} s |", "",
           "![GRPO reward and loss per iteration](grpo.svg)", ""]

    # fusion SFT
    fusion = sft_stage(out, "fusion")
    f_on, _ = accuracy(out, "fusion-think")
    f_off, _ = accuracy(out, "fusion-off")
    fusion.update({"heldout_accuracy_thinking": f_on["accuracy"], "heldout_accuracy_thinking_stderr": f_on["stderr"],
                   "heldout_accuracy_non_thinking": f_off["accuracy"],
                   "heldout_accuracy_non_thinking_stderr": f_off["stderr"],
                   "non_thinking_completion_tokens": f_off["completion_tokens"],
                   "thinking_completion_tokens": f_on["completion_tokens"]})
    md += ["## Thinking-mode fusion SFT", "",
           "| steps | val loss before | val loss after | held-out thinking | held-out non-thinking | "
           "tokens thinking / non-thinking | time |",
           "|---:|---:|---:|---:|---:|---:|---:|",
           f"| {fusion['steps']} | {fusion['val_loss_before']:.4f} | {fusion['val_loss_after']:.4f} | {fmt_acc(f_on)} | "
           f"{fmt_acc(f_off)} | {f_on['completion_tokens']:.0f} / {f_off['completion_tokens']:.0f} | "
           f"{fmt_s(fusion['seconds'])} |", ""]

    # DPO
    final, final_name = ("dpo", "DPO") if os.path.exists(os.path.join(out, "eval", "dpo-think.jsonl")) \
        else ("fusion", "fusion SFT")
    dpo = None
    if final == "dpo":
        log = load(os.path.join(out, "logs", "dpo.jsonl"))
        train = [r for r in log if "loss" in r]
        pairs = len(load(os.path.join(out, "dpo", "pairs.jsonl")))
        samples = load(os.path.join(out, "dpo", "scored.jsonl"))
        d_on, _ = accuracy(out, "dpo-think")
        series = {}
        for key, names in (("loss", ("loss",)),
                           ("rewards_chosen", ("rewards/chosen", "rewards_chosen")),
                           ("rewards_rejected", ("rewards/rejected", "rewards_rejected")),
                           ("margins", ("rewards/margins", "margins", "rewards_margins")),
                           ("accuracies", ("rewards/accuracies", "accuracies", "rewards_accuracies"))):
            series[key] = [pick(r, *names) for r in train]
        dpo = {"pairs": pairs, "prompts": len({s["idx"] for s in samples}),
               "sample_reward_mean": sum(float(s["reward"]) for s in samples) / len(samples),
               "steps": len(train), "seconds": seconds(out, "dpo"),
               "heldout_accuracy_thinking_before": f_on["accuracy"], "heldout_accuracy_thinking_after": d_on["accuracy"]}
        for key, v in series.items():
            dpo[key + "_per_step"] = v
            dpo[key + "_first"], dpo[key + "_last"] = (v[0], v[-1]) if v else (None, None)

        def g(x):
            return "–" if x is None else f"{x:.4f}"
        md += ["## DPO", "",
               f"Pairs from the fusion model's own samples ({len(samples)} at temperature 1 of {dpo['prompts']} "
               "prompts), a right answer chosen and a wrong one rejected by the math verifier; the fusion model "
               "is the reference.  First → last step.", "",
               "| pairs | steps | loss | margins | accuracies | rewards chosen | rewards rejected | "
               "held-out thinking before → after | time |",
               "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
               f"| {pairs} | {dpo['steps']} | {g(dpo['loss_first'])} → {g(dpo['loss_last'])} | "
               f"{g(dpo['margins_first'])} → {g(dpo['margins_last'])} | "
               f"{g(dpo['accuracies_first'])} → {g(dpo['accuracies_last'])} | "
               f"{g(dpo['rewards_chosen_first'])} → {g(dpo['rewards_chosen_last'])} | "
               f"{g(dpo['rewards_rejected_first'])} → {g(dpo['rewards_rejected_last'])} | "
               f"{fmt_acc(f_on)} → {fmt_acc(d_on)} | {fmt_s(dpo['seconds'])} |", "",
               "![DPO loss and margins](dpo.svg)", ""]
    else:
        md += ["## DPO", "", "Not run: qw-dpo is not built.", ""]

    # evaluation of the final model
    e_on, _ = accuracy(out, f"{final}-think")
    e_off, _ = accuracy(out, f"{final}-off")
    ev = {"model": final, "heldout_n": e_on["n"],
          "thinking": {k: e_on[k] for k in ("accuracy", "stderr", "completion_tokens", "finished")},
          "non_thinking": {k: e_off[k] for k in ("accuracy", "stderr", "completion_tokens", "finished")},
          "val_loss": fusion["val_loss_after"],
          "seconds": (e_on["seconds"] or 0) + (e_off["seconds"] or 0)}
    md += ["## Evaluation", "",
           f"The final model ({final_name}) on the {e_on['n']} held-out problems, greedy; validation loss: the "
           "fusion data's held-out split after fusion SFT.", "",
           "| mode | accuracy | completion tokens | ended with EOS | time |", "|---|---:|---:|---:|---:|",
           f"| thinking | {fmt_acc(e_on)} | {e_on['completion_tokens']:.1f} | {100 * e_on['finished']:.0f}% | "
           f"{fmt_s(e_on['seconds'])} |",
           f"| non-thinking (/no_think) | {fmt_acc(e_off)} | {e_off['completion_tokens']:.1f} | "
           f"{100 * e_off['finished']:.0f}% | {fmt_s(e_off['seconds'])} |", ""]
    return "\n".join(md), {"sft": {"cold": cold, "fusion": fusion}, "grpo": grpo, "dpo": dpo, "eval": ev}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--models", default="dense moe")
    ap.add_argument("--post", action="store_true", help="the post-training stages too, and summary.json")
    args = ap.parse_args()
    rows, bad = summarise(args.out, args.models.split())
    text = table(rows)
    report = "# qw demo\n\n## Pretraining\n\n" + text + "\n\n![training curves](loss.svg)\n"
    if args.post:
        md, summary = post(args.out)
        report += "\n# Post-training\n\n" + md
        summary["pretrain"] = [dict(zip(("model", "stage", "steps", "tokens", "val_loss_before", "val_loss_after",
                                         "tok_per_s", "seconds"), r)) for r in rows]
        summary = {k: summary[k] for k in ("pretrain", "sft", "grpo", "dpo", "eval")}
        with open(os.path.join(args.out, "summary.json"), "w") as f:
            f.write(json.dumps(summary, indent=1) + "\n")
    with open(os.path.join(args.out, "report.md"), "w") as f:
        f.write(report)
    print(text)
    if args.post:
        print("\n" + md)
    print(f"\nwrote {args.out}/report.md" + (f" and {args.out}/summary.json" if args.post else ""))
    if bad:
        sys.exit("demo_report.py: " + "; ".join(bad))


if __name__ == "__main__":
    main()
