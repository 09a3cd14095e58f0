#!/usr/bin/env python3
"""post_parity.py — compare a program's dumped gradient and logged loss with
tests/golden/post (make_post_golden.py: PyTorch + transformers).

    post_parity.py CASE GRADS.safetensors METRICS.jsonl REL

Every grad.<name> in GRADS must be within REL of the largest |value| of the
fixture's <CASE>.grad.<name> (and every fixture tensor must be there); the
first metrics line's `loss` within REL·max(1, |loss|) of <CASE>.loss.
Prints the worst relative difference; exit 1 on a mismatch.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import eval_st  # noqa: E402

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden", "post", "expected.safetensors")


def main(case, grads, metrics, rel):
    rel = float(rel)
    eh, ed = eval_st.read(GOLDEN)
    gh, gd = eval_st.read(grads)
    want = sorted(n[len(case) + 1:] for n in eh if n.startswith(case + ".grad."))
    have = sorted(n for n in gh if n.startswith("grad."))
    if not want:
        sys.exit(f"no case {case} in {GOLDEN}")
    if want != have:
        sys.exit(f"{case}: tensors differ: missing {sorted(set(want) - set(have))}, extra {sorted(set(have) - set(want))}")
    worst, wname = 0.0, None
    for n in want:
        e = eval_st.values(eh, ed, f"{case}.{n}")
        g = eval_st.values(gh, gd, n)
        scale = max(max(abs(x) for x in e), 1e-30)
        d = max(abs(a - b) for a, b in zip(e, g)) / scale
        if d > worst:
            worst, wname = d, n
    with open(metrics) as f:
        loss = json.loads(f.readline())["loss"]
    eloss = eval_st.values(eh, ed, f"{case}.loss")[0]
    dl = abs(loss - eloss) / max(1.0, abs(eloss))
    print(f"{case}: worst gradient difference {worst:.2e} of its scale ({wname}); loss {loss:.9g} vs {eloss:.9g}")
    if worst > rel or dl > rel:
        sys.exit(1)


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(*sys.argv[1:])
