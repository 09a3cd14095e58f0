#!/usr/bin/env bash
# qw-pretrain: the loss falls; 20 + resume + 20 steps equal 40 steps bit for
# bit; 2- and 4-rank MPI runs follow the 1-rank loss curve; checkpoints load
# in qw-eval forward; a 2-rank checkpoint continued on 1 rank gives what the
# 1-rank run gives; bad input is exit 3 with a clear message.
# (tests/tools/test_train_curve.sh checks the loop against PyTorch.)
. "$QW_SRCDIR/tests/tools/lib.sh"
plan 44
cd "$tmp"

cat >cfg.json <<'JSON'
{"model_type":"qwen3","vocab_size":256,"hidden_size":48,"intermediate_size":96,"num_hidden_layers":2,
 "num_attention_heads":4,"num_key_value_heads":2,"head_dim":16,"max_position_embeddings":256,
 "rms_norm_eps":1e-6,"rope_theta":10000,"tie_word_embeddings":false,"initializer_range":0.02}
JSON
cat >moe.json <<'JSON'
{"model_type":"qwen3_moe","vocab_size":256,"hidden_size":48,"intermediate_size":96,"num_hidden_layers":2,
 "num_attention_heads":4,"num_key_value_heads":2,"head_dim":16,"max_position_embeddings":256,
 "rms_norm_eps":1e-6,"rope_theta":10000,"tie_word_embeddings":false,"initializer_range":0.02,
 "num_experts":4,"num_experts_per_tok":2,"moe_intermediate_size":32,"decoder_sparse_step":1,
 "mlp_only_layers":[0],"norm_topk_prob":true,"router_aux_loss_coef":0.01,"output_router_logits":true}
JSON
python3 "$QW_SRCDIR/tests/tools/gen_stream.py" 00000000c0ffee01 256 400 1 >a.qwt
python3 "$QW_SRCDIR/tests/tools/gen_stream.py" 00000000c0ffee02 256 50 2 >other.qwt
qw-pack -q -T 32 -o data --val-frac 0.1 a.qwt
qw-pack -q -T 32 -o other other.qwt
qw-pack -q -T 16 -o short a.qwt

common=(--data data -T 32 --batch-tokens 256 --lr 1e-2 --warmup 4 --threads 1 -q)
col() { python3 -c 'import json,sys
for l in open(sys.argv[1]):
    r=json.loads(l)
    if sys.argv[2] in r: print(repr(r[sys.argv[2]]))' "$@"; }

expect_status "40-step run" 0 qw-pretrain --config cfg.json "${common[@]}" --steps 40 --out full --log full.jsonl --eval-every 20
check "40 steps logged with the required fields" python3 - full.jsonl <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
train = [r for r in recs if "loss" in r]
val = [r for r in recs if "val_loss" in r]
assert len(train) == 40 and [r["step"] for r in train] == list(range(1, 41))
for r in train:
    assert {"step", "loss", "lr", "grad_norm", "tokens", "tok_per_s", "mem_peak_bytes"} <= set(r)
    assert r["mem_peak_bytes"] >= 16 * 70000, r   # P, G, M, V of ~71k fp32 parameters, plus activations
assert [r["step"] for r in val] == [0, 20, 40] and all("loss" not in r for r in val)
PY
check "the training loss falls by a third" python3 - full.jsonl <<'PY'
import json, sys
train = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l]
first = sum(r["loss"] for r in train[:3]) / 3
last = sum(r["loss"] for r in train[-3:]) / 3
assert last < first * 0.67, (first, last)
PY
check "the validation loss falls" python3 - full.jsonl <<'PY'
import json, sys
val = [json.loads(l)["val_loss"] for l in open(sys.argv[1]) if "val_loss" in l]
assert val[2] < val[1] < val[0], val
assert val[2] < 0.8 * val[0], val
PY
check "latest names step 40" grep -qx 'step-000040' full/latest

# resume: 20 steps, then continue to 40 from the checkpoint
expect_status "20-step run" 0 qw-pretrain --config cfg.json "${common[@]}" --steps 40 --out part --log part.jsonl --save-every 20 --eval-every 20
# simulate a kill after step 40 whose last save was step 20: the resumed run
# drops the log's records after step 20 and writes them again
rm -rf part/step-000040 && echo step-000020 >part/latest
expect_status "resume to 40" 0 qw-pretrain --resume part "${common[@]}" --steps 40 --out part --log part.jsonl --eval-every 20
check "resumed losses equal the one-run losses" cmp -s <(col full.jsonl loss) <(col part.jsonl loss)
check "resumed weights are bitwise equal" cmp -s full/step-000040/model.safetensors part/step-000040/model.safetensors
check "resumed optimizer moments are bitwise equal" cmp -s full/step-000040/trainer_state/optimizer.safetensors part/step-000040/trainer_state/optimizer.safetensors

# the checkpoint is a model directory qw-eval reads
python3 - <<'PY'
import json, struct
ids = [(7 * i + 3) % 256 for i in range(16)]
hdr = json.dumps({"input_ids": {"dtype": "I64", "shape": [1, 16], "data_offsets": [0, 128]}}).encode()
open("in.safetensors", "wb").write(struct.pack("<Q", len(hdr)) + hdr + struct.pack("<16q", *ids))
PY
expect_status "checkpoint loads in qw-eval forward" 0 qw-eval forward --model full/step-000040 --input in.safetensors --output out.safetensors

# data parallel: 2 and 4 ranks follow the 1-rank curve within fp32 tolerance
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 \
       OMPI_MCA_btl=self,vader,tcp OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_plm_rsh_agent=false
for np in 2 4; do
    expect_status "$np-rank run" 0 mpirun -np $np --oversubscribe qw-pretrain --config cfg.json "${common[@]}" \
        --steps 12 --out mpi$np --log mpi$np.jsonl
done
expect_status "1-rank run of 12 steps" 0 qw-pretrain --config cfg.json "${common[@]}" --steps 12 --out one --log one.jsonl
check "2 and 4 ranks match 1 rank" python3 - one.jsonl mpi2.jsonl mpi4.jsonl <<'PY'
import json, sys
curves = [[json.loads(l)["loss"] for l in open(f)] for f in sys.argv[1:]]
for c in curves[1:]:
    assert len(c) == len(curves[0])
    for a, b in zip(curves[0], c):
        assert abs(a - b) <= 1e-5 * abs(a), (a, b)
PY
expect_status "12 steps with --recompute" 0 qw-pretrain --config cfg.json "${common[@]}" --steps 12 --out rc --log rc.jsonl --recompute
check "--recompute gives the same losses and weights" sh -c \
    'cmp -s one/step-000012/model.safetensors rc/step-000012/model.safetensors &&
     [ "$(grep -o "\"loss\":[^,]*" one.jsonl)" = "$(grep -o "\"loss\":[^,]*" rc.jsonl)" ]'
expect_status "resume a 2-rank checkpoint on 1 rank" 0 qw-pretrain --resume mpi2 "${common[@]}" --steps 14 --out mpi2 --log mpi2.jsonl
expect_status "resume the 1-rank checkpoint on 1 rank" 0 qw-pretrain --resume one "${common[@]}" --steps 14 --out one --log one.jsonl
check "the 2-rank checkpoint continues as the 1-rank one: losses" python3 - one.jsonl mpi2.jsonl <<'PY'
import json, sys
a, b = [[json.loads(l) for l in open(f)] for f in sys.argv[1:]]
assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, 15)), (a, b)
for x, y in zip(a, b):
    assert abs(x["loss"] - y["loss"]) <= 1e-5 * abs(x["loss"]), (x, y)
PY
check "the 2-rank checkpoint continues as the 1-rank one: weights" python3 "$QW_SRCDIR/tests/tools/eval_st.py" close \
    one/step-000014/model.safetensors mpi2/step-000014/model.safetensors 1e-5

# MoE: the aux loss is logged and the loss falls
expect_status "MoE run" 0 qw-pretrain --config moe.json "${common[@]}" --steps 30 --out moe --log moe.jsonl
check "MoE logs aux_loss and learns" python3 - moe.jsonl <<'PY'
import json, sys
train = [json.loads(l) for l in open(sys.argv[1])]
assert all("aux_loss" in r for r in train)
assert train[-1]["loss"] < 0.8 * train[0]["loss"], (train[0], train[-1])
PY

# bad input
expect_status "shards of another tokenizer at resume" 3 qw-pretrain --resume full --data other -T 32 --batch-tokens 256 --steps 50 --out full -q
expect_stderr "names the tokenizer mismatch" "^qw-pretrain: 'full/step-000040': trained on data of tokenizer 00000000c0ffee01, but --data is of tokenizer 00000000c0ffee02$"
expect_status "row length other than --seq-len" 3 qw-pretrain --config cfg.json --data short -T 32 --batch-tokens 256 --steps 2 --out x -q
expect_stderr "names the row length" "^qw-pretrain: 'short/train-00000.qwp': rows of 17 tokens \\(seq-len 16\\), expected seq-len 32$"
mkdir empty
expect_status "empty data directory" 3 qw-pretrain --config cfg.json --data empty -T 32 --batch-tokens 256 --steps 2 --out x -q
sed 's/"hidden_size":48/"hidden_size":64/' cfg.json >wide.json
expect_status "config differs from the checkpoint at resume" 3 qw-pretrain --config wide.json --resume full "${common[@]}" --steps 50 --out full
expect_stderr "names the field" "^qw-pretrain: 'full/step-000040/config.json': hidden_size is 48, the run has 64$"
cp -r data bad && f=$(ls bad/train-*.qwp | head -1) && printf 'XXXX' | dd of="$f" bs=1 seek=0 conv=notrunc 2>/dev/null
expect_status "corrupt shard" 3 qw-pretrain --config cfg.json --data bad -T 32 --batch-tokens 256 --steps 2 --out x -q
expect_status "batch not a multiple of seq-len" 2 qw-pretrain --config cfg.json --data data -T 32 --batch-tokens 100 --steps 2 --out x -q
# sizes the options make: a usage error with a message, never a signal
expect_status "rows per step overflow an int" 2 qw-pretrain --config cfg.json --data data -T 256 --batch-tokens 1099511627776 --steps 2 --out x -q
expect_stderr "rows per step message" "^qw-pretrain: --batch-tokens 1099511627776: 4294967296 rows of 256 tokens per step, more than 2147483647$"
expect_status "staging larger than memory" 2 qw-pretrain --config cfg.json --data data -T 32 --batch-tokens 68719476704 --steps 2 --out x -q
expect_stderr "staging message" "^qw-pretrain: --batch-tokens 68719476704: staging 2147483647 rows of 33 tokens per step needs [0-9]+ bytes, more than the machine's memory \([0-9]+ bytes\)$"
expect_status "yarn positions overflow an int" 2 qw-pretrain --config cfg.json --data data -T 32 --batch-tokens 256 --steps 2 --out x -q --yarn-factor 1e300
expect_stderr "yarn positions message" "^qw-pretrain: --yarn-factor 1e\+300 × 256 original positions is more than 2147483647 positions$"
expect_status "missing --data" 2 qw-pretrain --config cfg.json -T 32 --batch-tokens 256 --steps 2 --out x
expect_status "--precision bf16 on the cpu" 2 qw-pretrain --config cfg.json "${common[@]}" --steps 8 --out x --device cpu --precision bf16
expect_stderr "says the cpu computes in fp32" "precision bf16: the cpu backend computes in fp32"
expect_status "unknown --precision" 2 qw-pretrain --config cfg.json "${common[@]}" --steps 8 --out x --precision fp16
expect_stderr "names the precision" "'fp16' is not fp32 or bf16"
expect_status "--precision fp32 --deterministic on the cpu" 0 qw-pretrain --config cfg.json "${common[@]}" --steps 4 --out det --precision fp32 --deterministic --warmup 0
