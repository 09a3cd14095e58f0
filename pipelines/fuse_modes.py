#!/usr/bin/env python3
"""fuse_modes.py — thinking-mode fusion data (Qwen3's third post-training
stage) from conversations whose last assistant turn thinks first.

Reads chat JSONL ({"messages": [...]}, the last message an assistant answer
"<think>\\nR\\n</think>\\n\\nA", or with "reasoning_content") and writes chat
JSONL in which a fraction of the conversations are non-thinking: " /no_think"
is appended to the last user turn and the answer keeps an empty think block,
"<think>\\n\\n</think>\\n\\nA" — the form Qwen3's chat template renders with
enable_thinking=false, so the model learns the block the generation prompt
will hold.  The other conversations keep their reasoning; since thinking is
the default, only some of them (--think-flag-frac) get " /think".  The last
flag in a conversation is the one that counts, so flags go in the last
user turn.

--no-think-frac F is the mixing ratio: exactly round(F × N) of the N
conversations become non-thinking, chosen by --seed; output order is input
order.  Deterministic; standard library only.

  python3 pipelines/fuse_modes.py --no-think-frac 0.3 --seed 1 cot.jsonl >fusion.jsonl
"""
import argparse
import json
import random
import signal
import sys


def split_answer(msg):
    """(reasoning, answer) of an assistant message, as the template reads it."""
    content = msg.get("content") or ""
    if msg.get("reasoning_content") is not None:
        return msg["reasoning_content"].strip("\n"), content
    if "</think>" in content:
        before, after = content.split("</think>", 1)[0], content.rsplit("</think>", 1)[1]
        return before.rsplit("<think>", 1)[-1].strip("\n"), after.lstrip("\n")
    return "", content


def last_user(msgs):
    for m in reversed(msgs):
        if m.get("role") == "user":
            return m
    return None


def main():
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-think-frac", type=float, required=True, help="fraction made non-thinking, in [0, 1]")
    ap.add_argument("--think-flag-frac", type=float, default=0.5,
                    help="fraction of the thinking ones given an explicit /think (default 0.5)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("files", nargs="*")
    a = ap.parse_args()
    if not 0 <= a.no_think_frac <= 1 or not 0 <= a.think_flag_frac <= 1:
        ap.error("fractions must be in [0, 1]")
    recs = []
    for name in a.files or ["-"]:
        f = sys.stdin if name == "-" else open(name, encoding="utf-8")
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            rec = json.loads(line)
            msgs = rec.get("messages")
            if not msgs or msgs[-1].get("role") != "assistant" or last_user(msgs) is None:
                sys.exit(f"fuse_modes.py: '{name}': line {i}: needs a user turn and a last assistant turn")
            recs.append(rec)
    r = random.Random(a.seed)
    order = list(range(len(recs)))
    r.shuffle(order)
    n_off = round(a.no_think_frac * len(recs))
    off = set(order[:n_off])
    for i, rec in enumerate(recs):
        msgs = rec["messages"]
        user, asst = last_user(msgs), msgs[-1]
        if i in off:
            _, answer = split_answer(asst)
            user["content"] += " /no_think"
            asst.pop("reasoning_content", None)
            asst["content"] = "<think>\n\n</think>\n\n" + answer
        elif r.random() < a.think_flag_frac:
            user["content"] += " /think"
        sys.stdout.write(json.dumps(rec, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
