#!/usr/bin/env bash
# pipelines/sft.mk on a tiny scale: generated conversations that think
# (gen_corpus.py --stage chat) → a BPE → the cold-start SFT stage → the
# thinking-mode fusion data (fuse_modes.py: /no_think with an empty think
# block for the mixing ratio's share, /think on some others) → the fusion
# stage from the cold start.  The cold stage lowers its validation loss.
. "$QW_SRCDIR/tests/tools/lib.sh"
plan 9
cd "$tmp"

python3 "$QW_SRCDIR/pipelines/gen_corpus.py" --stage chat --docs 300 --seed 1 >cot.jsonl
qw-tokenize -q --train --vocab-size 500 --chat -o tok cot.jsonl
cat >cfg.json <<'JSON'
{"model_type":"qwen3","vocab_size":512,"hidden_size":48,"intermediate_size":96,"num_hidden_layers":2,
 "num_attention_heads":4,"num_key_value_heads":2,"head_dim":16,"max_position_embeddings":256,
 "rms_norm_eps":1e-6,"rope_theta":10000,"tie_word_embeddings":true,"initializer_range":0.02}
JSON
sft() {
    make --no-print-directory -C "$QW_SRCDIR" -f pipelines/sft.mk QW_BIN="$QW_BIN" OUT="$tmp/run" \
        SFT_FROM="--config $tmp/cfg.json" TOKENIZER="$tmp/tok" COT_DATA="$tmp/cot.jsonl" SFT_T=128 \
        SFT_VAL_FRAC=0.1 COLD_BATCH=1024 COLD_STEPS=12 COLD_LR=3e-3 COLD_WARMUP=2 FUSION_STEPS=6 \
        FUSION_LR=1e-3 FUSION_WARMUP=0 SFT_EVAL_EVERY=6 NO_THINK_FRAC=0.3 TRAIN_OPTS="--threads 1 -q" "$@"
}
expect_status "both stages run" 0 sft
check "both stages marked done" test -e run/ckpt/sft/cold/done -a -e run/ckpt/sft/fusion/done
check "up to date afterwards" sft -q
check "the mixing ratio: exactly 90 of 300 non-thinking, with empty think blocks" python3 - run/sft/fusion.jsonl <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
off = [r for r in recs if r["messages"][0]["content"].endswith(" /no_think")]
on = [r for r in recs if not r["messages"][0]["content"].endswith(" /no_think")]
assert len(recs) == 300 and len(off) == 90, (len(recs), len(off))
assert all(r["messages"][-1]["content"].startswith("<think>\n\n</think>\n\nAnswer: ") for r in off)
assert all(r["messages"][-1]["content"].startswith("<think>\n") and
           not r["messages"][-1]["content"].startswith("<think>\n\n</think>") for r in on)
PY
check "some thinking ones flagged /think, some not" python3 - run/sft/fusion.jsonl <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
flagged = sum(r["messages"][0]["content"].endswith(" /think") for r in recs)
assert 40 < flagged < 170, flagged
PY
# the answers are what the template renders for enable_thinking=false
printf '%s\n' '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "<think>\n\n</think>\n\nAnswer: 1"}]}' >one.jsonl
qw-tokenize -q -t tok --chat --ids one.jsonl >one.ids
qw-tokenize -q -t tok --decode --ids one.ids >one.txt
check "an empty think block renders as the non-thinking prompt's" python3 -c '
import sys
t = open("one.txt").read()
assert "<|im_start|>assistant\n<think>\n\n</think>\n\nAnswer: 1<|im_end|>" in t, repr(t)'

check "cold start lowers the validation loss" python3 - run/logs/sft-cold.jsonl <<'PY'
import json, sys
val = [json.loads(l)["val_loss"] for l in open(sys.argv[1]) if "val_loss" in l]
assert len(val) == 3 and val[-1] < 0.8 * val[0], val
PY
check "fusion starts from the cold start" python3 - run/logs/sft-cold.jsonl run/logs/sft-fusion.jsonl <<'PY'
import json, sys
cold, fusion = ([json.loads(l)["val_loss"] for l in open(f) if "val_loss" in l] for f in sys.argv[1:])
assert fusion[0] < 0.8 * cold[0], (cold, fusion)
PY
check "fusion shards carry loss masks" grep -Eq '"loss_mask":[[:space:]]*true' run/sft/data/fusion/index.json
