#!/usr/bin/env bash
# qw-sft: the loss is the mean over the global batch's masked-in targets
# (checked against qw-eval forward logits, document by document); the
# gradient of an all-token row equals qw-eval forward's; masked-out targets
# change nothing; SIGTERM + resume equals one run bit for bit; 2 MPI ranks
# follow 1 rank; shards without masks or of another tokenizer exit 3.
. "$QW_SRCDIR/tests/tools/lib.sh"
plan 28
cd "$tmp"
gen=$QW_SRCDIR/tests/tools/gen_sft_stream.py
st=$QW_SRCDIR/tests/tools/eval_st.py

cat >cfg.json <<'JSON'
{"model_type":"qwen3","vocab_size":256,"hidden_size":48,"intermediate_size":96,"num_hidden_layers":2,
 "num_attention_heads":4,"num_key_value_heads":2,"head_dim":16,"max_position_embeddings":256,
 "rms_norm_eps":1e-6,"rope_theta":10000,"tie_word_embeddings":false,"initializer_range":0.02}
JSON
python3 "$gen" 00000000c0ffee01 256 40 1 >s.qwt
python3 "$gen" 00000000c0ffee01 256 40 1 --json >s.json
qw-pack -q -T 64 --mode sft --zstd 0 -o sd s.qwt
rows=$(qw-pack --inspect sd | sed -n 's/^rows: //p')
# the starting weights: a random model saved unchanged (learning rate 0)
qw-pretrain --config cfg.json --data sd -T 64 --batch-tokens 64 --steps 1 --lr 0 --threads 1 -q --out init

# 1. the loss of step 1 (every row in one batch) against qw-eval forward:
# each sample alone in a row of its own, padded at the end (causal: the
# padding changes no logit before it), −log p summed over the mask's targets
expect_status "one step over every row" 0 qw-sft --model init/step-000001 --data sd -T 64 \
    --batch-tokens $((rows * 64)) --steps 1 --threads 1 -q --out one --log one.jsonl
python3 - s.json <<'PY'
import json, sys
docs = [json.loads(l) for l in open(sys.argv[1])]
L = max(len(d["ids"]) for d in docs)
flat = [i for d in docs for i in d["ids"] + [0] * (L - len(d["ids"]))]
open("batch.spec", "w").write("input_ids:I64:%d,%d:%s" % (len(docs), L, ",".join(map(str, flat))))
PY
python3 "$st" write in.safetensors "$(cat batch.spec)"
qw-eval forward --model init/step-000001 --input in.safetensors --output out.safetensors --threads 1
check "step-1 loss is the mean -log p over the masked-in targets" python3 - s.json one.jsonl <<PY
import json, math, subprocess, sys
docs = [json.loads(l) for l in open(sys.argv[1])]
L = max(len(d["ids"]) for d in docs)
logits = list(map(float, subprocess.run([sys.executable, "$st", "values", "out.safetensors", "logits"],
                                        capture_output=True, text=True, check=True).stdout.split()))
V = 256
total, n = 0.0, 0
for b, d in enumerate(docs):
    for t in range(1, len(d["ids"])):
        if not d["mask"][t]:
            continue
        row = logits[(b * L + t - 1) * V:(b * L + t) * V]
        m = max(row)
        lse = m + math.log(sum(math.exp(x - m) for x in row))
        total += lse - row[d["ids"][t]]
        n += 1
want = total / n
got = json.loads(open(sys.argv[2]).readline())["loss"]
assert n > 300 and abs(got - want) <= 1e-5 * want, (got, want, n)
PY

# 2. an all-token row (shards without masks, --all-tokens): loss and
# gradient norm equal qw-eval forward --grads on the same 65 tokens
python3 "$QW_SRCDIR/tests/tools/gen_stream.py" 00000000c0ffee01 256 1 3 >plain.qwt
qw-pack -q -T 64 -o pd plain.qwt
python3 "$QW_SRCDIR/tests/tools/qw_tokens_ref.py" plain.qwt | cut -d' ' -f1-65 | tr ' ' ',' >row.txt
python3 "$st" write row.safetensors "input_ids:I64:1,65:$(cat row.txt)"
qw-eval forward --model init/step-000001 --input row.safetensors --output row_out.safetensors --grads --threads 1
expect_status "--all-tokens on shards without masks" 0 qw-sft --model init/step-000001 --data pd --all-tokens -T 64 \
    --batch-tokens 64 --steps 1 --threads 1 -q --out allt --log allt.jsonl
check "loss and gradient norm equal qw-eval forward's" python3 - allt.jsonl <<PY
import json, math, subprocess, sys
def vals(name):
    return list(map(float, subprocess.run([sys.executable, "$st", "values", "row_out.safetensors", name],
                                          capture_output=True, text=True, check=True).stdout.split()))
names = [l.split()[0] for l in subprocess.run([sys.executable, "$st", "header", "row_out.safetensors"],
                                              capture_output=True, text=True, check=True).stdout.splitlines()]
norm = math.sqrt(sum(v * v for n in names if n.startswith("grad.") for v in vals(n)))
r = json.loads(open(sys.argv[1]).readline())
assert abs(r["loss"] - vals("loss")[0]) <= 1e-5 * r["loss"], (r, vals("loss"))
assert abs(r["grad_norm"] - norm) <= 1e-4 * norm, (r["grad_norm"], norm)
assert len([n for n in names if n.startswith("grad.")]) > 10
PY

# 3. masked-out targets contribute nothing: other trailer tokens (targets
# whose mask is 0 and that are no token's input) give the same update
python3 "$gen" 00000000c0ffee01 256 40 1 --trailer 100 >t.qwt
qw-pack -q -T 64 --mode sft --zstd 0 -o td t.qwt
check "the trailers change the shards" sh -c '! cmp -s sd/train-00000.qwp td/train-00000.qwp'
for d in sd td; do
    qw-sft --model init/step-000001 --data $d -T 64 --batch-tokens 256 --steps 3 --lr 1e-2 --threads 1 -q --out u$d
done
check "masked-out targets give a bitwise identical update" cmp -s usd/step-000003/model.safetensors utd/step-000003/model.safetensors
check "the update moved the weights" sh -c '! cmp -s usd/step-000003/model.safetensors init/step-000001/model.safetensors'

# 4. learning, validation and metrics
python3 "$gen" 00000000c0ffee01 256 400 2 >big.qwt
qw-pack -q -T 64 --mode sft --val-frac 0.1 -o bd big.qwt
common=(--config cfg.json --data bd -T 64 --batch-tokens 512 --lr 1e-2 --warmup 2 --threads 1 -q)
expect_status "40-step run" 0 qw-sft "${common[@]}" --steps 40 --out full --log full.jsonl --eval-every 20 --tensorboard tb
check "loss and val_loss fall" python3 - full.jsonl <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
train = [r for r in recs if "loss" in r]
val = [r["val_loss"] for r in recs if "val_loss" in r]
assert len(train) == 40 and len(val) == 3
assert sum(r["loss"] for r in train[-3:]) < 0.8 * sum(r["loss"] for r in train[:3])
assert val[2] < 0.8 * val[0], val
PY
check "TensorBoard events written" sh -c 'ls tb/events.out.tfevents.* >/dev/null'

# 5. SIGTERM saves; --resume continues to the same bits as one run
expect_status "uninterrupted 150 steps" 0 qw-sft "${common[@]}" --steps 150 --out ref --log ref.jsonl
qw-sft "${common[@]}" --steps 150 --out cut --log cut.jsonl 2>cut.err &
pid=$!
for _ in $(seq 600); do [ -f cut.jsonl ] && [ "$(wc -l <cut.jsonl)" -ge 5 ] && break; sleep 0.02; done
kill -TERM $pid
wait $pid
code=$?
if [ "$code" -eq 0 ]; then   # finished before the signal arrived: nothing to resume, nothing tested
    fail "SIGTERM exits 143" "the run ended before SIGTERM"
else
    check "SIGTERM exits 143" test "$code" -eq 143
fi
expect_status "resume after SIGTERM" 0 qw-sft --resume cut "${common[@]}" --steps 150 --out cut --log cut.jsonl
check "resumed weights are bitwise equal" cmp -s ref/step-000150/model.safetensors cut/step-000150/model.safetensors
check "resumed moments are bitwise equal" cmp -s ref/step-000150/trainer_state/optimizer.safetensors \
    cut/step-000150/trainer_state/optimizer.safetensors
check "resumed log equals the one-run log" cmp -s <(grep -o '"loss":[^,]*' ref.jsonl) <(grep -o '"loss":[^,]*' cut.jsonl)

# 6. data parallel: 2 ranks follow 1 rank
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 \
       OMPI_MCA_btl=self,vader,tcp OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_plm_rsh_agent=false
expect_status "2-rank run" 0 mpirun -np 2 --oversubscribe qw-sft "${common[@]}" --steps 8 --out mpi2 --log mpi2.jsonl
expect_status "1-rank run" 0 qw-sft "${common[@]}" --steps 8 --out one8 --log one8.jsonl
check "2 ranks match 1 rank" python3 - one8.jsonl mpi2.jsonl <<'PY'
import json, sys
a, b = [[json.loads(l)["loss"] for l in open(f)] for f in sys.argv[1:]]
assert len(a) == len(b) == 8
assert all(abs(x - y) <= 1e-5 * abs(x) for x, y in zip(a, b)), (a, b)
PY

# 7. bad input
expect_status "shards without masks" 3 qw-sft --config cfg.json --data pd -T 64 --batch-tokens 64 --steps 1 --out x -q
expect_stderr "says how to get masks" "^qw-sft: 'pd/train-00000.qwp': shards without loss masks \(pack conversations with qw-tokenize --chat or qw-pack --chat; --all-tokens learns every token\)$"
python3 "$gen" 00000000c0ffee02 256 40 3 >other.qwt
qw-pack -q -T 64 --mode sft -o od other.qwt
expect_status "shards of another tokenizer" 3 qw-sft --resume full --data od -T 64 --batch-tokens 512 --steps 50 --out full -q
expect_stderr "names the tokenizers" "trained on data of tokenizer 00000000c0ffee01, but --data is of tokenizer 00000000c0ffee02"
expect_status "a corrupt shard" 3 sh -c 'cp -r sd bad && printf XXXX | dd of=bad/train-00000.qwp conv=notrunc 2>/dev/null &&
    qw-sft --config cfg.json --data bad -T 64 --batch-tokens 64 --steps 1 --out x -q'
python3 "$st" write badl.safetensors "input_ids:I64:1,4:1,2,3,4" "labels:I64:1,4:-100,2,-7,4"
expect_status "qw-eval forward: a label neither a token nor -100" 3 qw-eval forward --model init/step-000001 \
    --input badl.safetensors --output x.st
expect_stderr "names the label" "labels\[0\]\[2\] = -7: a label is a token id or -100"
python3 "$st" write badp.safetensors "input_ids:I64:1,4:1,2,3,4" "position_ids:I64:1,3:0,1,2"
expect_status "qw-eval forward: position_ids of another shape" 3 qw-eval forward --model init/step-000001 \
    --input badp.safetensors --output x.st
expect_status "no model" 2 qw-sft --data sd -T 64 --batch-tokens 64 --steps 1 --out x
