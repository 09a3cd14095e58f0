#!/usr/bin/env bash
# ZeRO and the parallel layout flags on CPU ranks (mpirun --oversubscribe,
# 2 ranks): --zero 1 and 2 follow the one-process loss curve over 20 steps
# (relative gap <= 1e-4 per step) and save the checkpoint plain data
# parallel saves; the optimizer memory per rank is half the one-process
# figure (the metrics); a ZeRO checkpoint resumes on one process and a
# one-process checkpoint under ZeRO with the same losses; layouts not built
# yet and products that do not match the rank count are usage errors; a
# rank killed mid-run or stopped makes the job end with a clear message
# within 60 s, the last checkpoint whole.
. "$QW_SRCDIR/tests/tools/lib.sh"
plan 38
cd "$tmp"

cat >cfg.json <<'JSON'
{"model_type":"qwen3","vocab_size":256,"hidden_size":48,"intermediate_size":96,"num_hidden_layers":2,
 "num_attention_heads":4,"num_key_value_heads":2,"head_dim":16,"max_position_embeddings":256,
 "rms_norm_eps":1e-6,"rope_theta":10000,"tie_word_embeddings":false,"initializer_range":0.02}
JSON
python3 "$QW_SRCDIR/tests/tools/gen_stream.py" 00000000c0ffee01 256 400 1 >a.qwt
qw-pack -q -T 32 -o data --val-frac 0.1 a.qwt

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 \
       OMPI_MCA_btl=self,vader,tcp OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_plm_rsh_agent=false \
       OMPI_MCA_hwloc_base_binding_policy=none
common=(--config cfg.json --data data -T 32 --batch-tokens 256 --lr 1e-2 --warmup 4 --threads 1 -q --steps 20)
# curves A B...: every file's losses within 1e-4 of A's, step by step (same steps)
curves() { python3 - "$@" <<'PY'
import json, sys
def load(f): return [json.loads(l) for l in open(f) if '"loss"' in l]
a = load(sys.argv[1])
for f in sys.argv[2:]:
    b = load(f)
    assert [r["step"] for r in a] == [r["step"] for r in b], (f, len(a), len(b))
    for x, y in zip(a, b):
        assert abs(x["loss"] - y["loss"]) <= 1e-4 * abs(x["loss"]), (f, x, y)
PY
}

expect_status "one process, 20 steps" 0 qw-pretrain "${common[@]}" --out one --log one.jsonl --save-every 10
expect_status "2 ranks, plain data parallel" 0 mpirun -np 2 qw-pretrain "${common[@]}" --out dp --log dp.jsonl
expect_status "2 ranks, --zero 1" 0 mpirun -np 2 qw-pretrain "${common[@]}" --out z1 --log z1.jsonl --zero 1 --save-every 10
expect_status "2 ranks, --zero 2" 0 mpirun -np 2 qw-pretrain "${common[@]}" --out z2 --log z2.jsonl --zero 2 --dp 2
check "--zero 1 follows the one-process curve" curves one.jsonl z1.jsonl
expect_status "--zero 2 on one process" 0 qw-pretrain "${common[@]}" --out onez --log onez.jsonl --zero 2
check "is the one-process run, bit for bit" cmp -s one/step-000020/model.safetensors onez/step-000020/model.safetensors
check "--zero 2 follows the one-process curve" curves one.jsonl z2.jsonl
check "--zero 1 saves the weights plain data parallel saves" cmp -s dp/step-000020/model.safetensors z1/step-000020/model.safetensors
check "--zero 1 saves the moments plain data parallel saves (gathered by name)" \
    cmp -s dp/step-000020/trainer_state/optimizer.safetensors z1/step-000020/trainer_state/optimizer.safetensors
check "--zero 2 saves those moments within 1e-6" python3 "$QW_SRCDIR/tests/tools/eval_st.py" close \
    dp/step-000020/trainer_state/optimizer.safetensors z2/step-000020/trainer_state/optimizer.safetensors 1e-6
check "ZeRO checkpoints verify" qw-ckpt verify -q z2/step-000020
check "optimizer memory per rank: half the one-process figure, weights whole" python3 - one.jsonl dp.jsonl z1.jsonl z2.jsonl <<'PY'
import json, sys
last = [[json.loads(l) for l in open(f) if '"loss"' in l][-1] for f in sys.argv[1:]]
one, dp, z1, z2 = last
for r in last:
    assert {"mem_params_bytes", "mem_grads_bytes", "mem_optim_bytes", "mem_peak_bytes"} <= set(r), r
assert dp["mem_optim_bytes"] == one["mem_optim_bytes"] > 0
for z in (z1, z2):
    assert abs(2 * z["mem_optim_bytes"] / one["mem_optim_bytes"] - 1) < 0.01, (z, one)
    assert z["mem_params_bytes"] == one["mem_params_bytes"]
    # the backend's high-water mark falls by the moments given up
    saved = dp["mem_peak_bytes"] - z["mem_peak_bytes"]
    assert abs(saved - one["mem_optim_bytes"] / 2) < 0.02 * one["mem_optim_bytes"], (saved, dp, z)
PY

# resume under another layout: ZeRO-1 on 2 ranks -> one process, and back
cp -r z1 z1to1 && echo step-000010 >z1to1/latest && rm -rf z1to1/step-000020
head -10 z1.jsonl >z1to1.jsonl
expect_status "a ZeRO-1 checkpoint of 2 ranks resumes on one process" 0 \
    qw-pretrain --resume z1to1 "${common[@]}" --out z1to1 --log z1to1.jsonl
check "its losses follow the one-process run" curves one.jsonl z1to1.jsonl
cp -r one oneto2 && echo step-000010 >oneto2/latest && rm -rf oneto2/step-000020
head -10 one.jsonl >oneto2.jsonl
expect_status "a one-process checkpoint resumes under ZeRO-2 on 2 ranks" 0 \
    mpirun -np 2 qw-pretrain --resume oneto2 "${common[@]}" --out oneto2 --log oneto2.jsonl --zero 2
check "its losses follow the one-process run" curves one.jsonl oneto2.jsonl
check "and its weights" python3 "$QW_SRCDIR/tests/tools/eval_st.py" close \
    one/step-000020/model.safetensors oneto2/step-000020/model.safetensors 1e-5

# layouts: checked against the rank count, the ones not built refused
expect_status "--dp 2 on one process" 2 qw-pretrain "${common[@]}" --out x --dp 2
expect_stderr "names both counts" "^qw-pretrain: --tp 1 × --pp 1 × --cp 1 × --dp 2 = 2 ranks, but 1 was started$"
expect_status "--dp 3 on 2 ranks" 2 mpirun -np 2 qw-pretrain "${common[@]}" --out x --dp 3
expect_stderr "names both counts" "--tp 1 × --pp 1 × --cp 1 × --dp 3 = 3 ranks, but 2 were started"
expect_status "--tp 2 on 2 ranks" 2 mpirun -np 2 qw-pretrain "${common[@]}" --out x --tp 2
expect_stderr "tensor parallel: not implemented yet" "--tp 2: tensor parallel is not implemented yet"
expect_status "--zero 3" 2 qw-pretrain "${common[@]}" --out x --zero 3
expect_stderr "ZeRO-3: not implemented yet" "--zero 3 \(sharded parameters\): not implemented yet"
expect_status "--comm nccl on the cpu" 2 qw-pretrain "${common[@]}" --out x --comm nccl --device cpu
expect_stderr "nccl: GPU buffers only" "--comm nccl: (this build has no NCCL|needs --device cuda)"
expect_status "qw-sft takes the same flags" 2 qw-sft --model one --data data -T 32 --batch-tokens 256 --steps 2 --out x --pp 2
expect_stderr "pipeline parallel: not implemented yet" "--pp 2: pipeline parallel is not implemented yet"

# faults.  The rank process of rank $1 under mpirun pid $2.
rank_pid() {
    local p
    for p in $(pgrep -P "$2"); do
        tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$1" && { echo "$p"; return; }
    done
}
# wait_step FILE N: until the metrics reach step N (at most 60 s)
wait_step() { for _ in $(seq 600); do [ "$(cat "$1" 2>/dev/null | grep -c '"loss"')" -ge "$2" ] && return 0; sleep 0.1; done; return 1; }
long=(--config cfg.json --data data -T 32 --batch-tokens 256 --threads 1 -q --steps 100000 --save-every 5)

# a rank killed: Open MPI's mpirun ends the job
mpirun -np 2 qw-pretrain "${long[@]}" --out kill --log kill.jsonl >kill.out 2>&1 &
job=$!
wait_step kill.jsonl 12
victim=$(rank_pid 1 $job)
t0=$(date +%s)
kill -9 "$victim"
wait $job
st=$?
t1=$(date +%s)
check "a rank killed by SIGKILL: the job fails" [ $st -ne 0 ]
check "within 60 s ($((t1 - t0)) s)" [ $((t1 - t0)) -le 60 ]
check "with a message naming the rank" grep -q "rank 1 .*exited on signal 9" kill.out
check "the last checkpoint is whole" qw-ckpt verify -q kill

# a rank that hangs (stopped): the others' watchdog ends the job
QW_COMM_TIMEOUT=3 mpirun -np 2 qw-pretrain "${long[@]}" --out hang --log hang.jsonl >hang.out 2>&1 &
job=$!
wait_step hang.jsonl 12
victim=$(rank_pid 1 $job)
t0=$(date +%s)
kill -STOP "$victim"
wait $job
st=$?
t1=$(date +%s)
kill -KILL "$victim" 2>/dev/null
check "a stopped rank: the job fails" [ $st -ne 0 ]
check "within 60 s ($((t1 - t0)) s)" [ $((t1 - t0)) -le 60 ]
check "rank 0 says which collective of which step timed out" \
    grep -Eq "^qw-pretrain: rank 0: 'MPI_[A-Za-z_]+' \(step [0-9]+\) did not finish within 3 s: another rank died or hangs; stopping$" hang.out
check "the last checkpoint is whole" qw-ckpt verify -q hang
