#!/usr/bin/env bash
# gen_rollout_model.sh DIR — a small demo-like model with a tokenizer, for
# qw-rollout's tests and man-page examples: a byte-level BPE trained by
# qw-tokenize on a made-up corpus (Qwen3's special tokens included, so the
# chat template and <think> work), and the demo-dense shape
# (pipelines/configs/demo-dense.json) with that vocabulary, trained one step
# by qw-pretrain so that DIR/model is a checkpoint as the pipeline writes
# them (config.json, generation_config.json with <|im_end|> as EOS,
# model.safetensors, tokenizer.json).  Deterministic; a few seconds.
set -eu
dir=$1
src=${QW_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
mkdir -p "$dir"
cd "$dir"
python3 - <<'PY' >corpus.txt
import random
r = random.Random(1)
w = "the cat sat on a mat and then it ran to the red house where two dogs play with one ball every day".split()
for i in range(400):
    print(" ".join(r.choice(w) for _ in range(r.randint(5, 30))) + ".")
PY
qw-tokenize --train --vocab-size 400 -q -o tok corpus.txt
python3 - "$src/pipelines/configs/demo-dense.json" tok/tokenizer.json <<'PY' >cfg.json
import json, sys
c = json.load(open(sys.argv[1]))
t = json.load(open(sys.argv[2]))
ids = {a["content"]: a["id"] for a in t["added_tokens"]}
n = max(list(t["model"]["vocab"].values()) + list(ids.values())) + 1
c["vocab_size"] = (n + 31) // 32 * 32          # padded, as published embeddings are
c["eos_token_id"] = ids["<|im_end|>"]
print(json.dumps(c))
PY
qw-tokenize -q -t tok corpus.txt | qw-pack -q -T 32 -o data
qw-pretrain -q --config cfg.json --data data -T 32 --batch-tokens 64 --steps 1 --tokenizer tok --out run --threads 1
rm -rf model
mv "run/$(cat run/latest)" model
rm -rf model/trainer_state run data
