#!/usr/bin/env python3
"""dpo_pairs.py — preference pairs from a policy's own samples, ranked by a
verifier: the input for qw-dpo.

Reads scored rollouts (qw-reward's records: qw-rollout's fields plus
`reward`), several samples of each prompt (`idx`), and writes one pair per
prompt that has a sample with a reward of at least --good and one below it:
{"idx": I, "prompt_ids": [...], "chosen_ids": [...], "rejected_ids": [...]},
the chosen the first sample above the line, the rejected the first one
below.  Prompts whose samples are all right or all wrong give no pair (no
preference to learn).  Prints how many prompts gave a pair on stderr.
Exits 3 naming the line on a record without reward, idx, prompt_ids or
completion_ids.  Standard library only.

  python3 pipelines/dpo_pairs.py scored.jsonl >pairs.jsonl
"""
import argparse
import json
import signal
import sys


def main():
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--good", type=float, default=1.0, help="a reward of at least this is chosen (default 1)")
    ap.add_argument("file", nargs="?", default="-")
    a = ap.parse_args()
    f = sys.stdin if a.file == "-" else open(a.file, encoding="utf-8")
    groups = {}
    for n, line in enumerate(f, 1):
        if not line.strip():
            continue
        rec = json.loads(line)
        if not all(isinstance(rec.get(k), t) for k, t in
                   (("idx", int), ("prompt_ids", list), ("completion_ids", list), ("reward", (int, float)))):
            print(f"dpo_pairs.py: '{a.file}': line {n}: needs idx, prompt_ids, completion_ids and a numeric reward",
                  file=sys.stderr)
            sys.exit(3)
        g = groups.setdefault(rec["idx"], {"prompt_ids": rec["prompt_ids"], "good": [], "bad": []})
        g["good" if rec["reward"] >= a.good else "bad"].append(rec["completion_ids"])
    pairs = 0
    for idx, g in groups.items():
        if g["good"] and g["bad"]:
            out = {"idx": idx, "prompt_ids": g["prompt_ids"], "chosen_ids": g["good"][0], "rejected_ids": g["bad"][0]}
            sys.stdout.write(json.dumps(out) + "\n")
            pairs += 1
    print(f"dpo_pairs.py: {pairs} pairs from {len(groups)} prompts", file=sys.stderr)


if __name__ == "__main__":
    main()
