# test_comm_mpi.sh — the collectives of qw/comm.h on MPI ranks: the unit
# test binary build/tests/test_comm run under mpirun with 2, 3 and 4 ranks
# (more ranks than cores: oversubscribed).  Each rank prints
# "comm mpi RANK SIZE" and its own PASS/FAIL lines.  First, the launchers
# this build's MPI does not speak, simulated: qw-pretrain must refuse.
. "$QW_SRCDIR/tests/tools/lib.sh"
plan 25

prog=$QW_SRCDIR/build/tests/test_comm
# Containers: allow root, oversubscribe, no CPU binding, the ob1 engine on
# shared memory without cross-process copies (no ptrace rights needed).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_hwloc_base_binding_policy=none
export OMPI_MCA_pml=ob1 OMPI_MCA_btl_vader_single_copy_mechanism=none

# Other launchers, simulated: one process given the environment of rank 0
# (or 1) of 2 by MPICH/Hydra, srun --mpi=pmi2, srun or PMIx, which this
# build's MPI does not speak (MPI counts 1 rank), must stop before writing
# anything, with exit 1 and a message naming the launcher and both counts.
python3 "$QW_SRCDIR/tests/tools/gen_stream.py" 00000000c0ffee01 256 100 1 >"$tmp/a.qwt"
qw-pack -q -T 16 -o "$tmp/data" "$tmp/a.qwt"
printf '%s' '{"model_type":"qwen3","vocab_size":256,"hidden_size":32,"intermediate_size":64,
 "num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":1,"head_dim":16,
 "max_position_embeddings":64,"rms_norm_eps":1e-6,"rope_theta":10000,"tie_word_embeddings":false,
 "initializer_range":0.02}' >"$tmp/cfg.json"
foreign() {   # foreign NAME REGEX VAR=VALUE...
    local name=$1 re=$2; shift 2
    rm -rf "$tmp/o" "$tmp/o.jsonl" "$tmp/tb"
    expect_status "$name: exit 1" 1 env "$@" timeout 120 qw-pretrain --config "$tmp/cfg.json" --data "$tmp/data" \
        -T 16 --batch-tokens 64 --steps 2 --threads 1 -q --out "$tmp/o" --log "$tmp/o.jsonl" --tensorboard "$tmp/tb"
    expect_stderr "$name: says why" "$re"
    check "$name: nothing written" test ! -e "$tmp/o" -a ! -e "$tmp/o.jsonl" -a ! -e "$tmp/tb"
}
foreign "MPICH/Hydra rank 0 of 2" "started as rank 0 of 2 by PMI .*PMI_RANK, PMI_SIZE.*MPI counts rank 0 of 1" \
    PMI_RANK=0 PMI_SIZE=2 MPI_LOCALRANKID=0 MPI_LOCALNRANKS=2
foreign "srun --mpi=pmi2 rank 1 of 2" "started as rank 1 of 2 by PMI .*MPI counts rank 0 of 1" \
    PMI_RANK=1 PMI_SIZE=2 SLURM_STEP_ID=0 SLURM_PROCID=1 SLURM_NTASKS=2 SLURM_LOCALID=1
foreign "srun rank 0 of 3" "started as rank 0 of 3 by srun \(SLURM_PROCID, SLURM_NTASKS\).*MPI counts rank 0 of 1" \
    SLURM_STEP_ID=0 SLURM_PROCID=0 SLURM_NTASKS=3 SLURM_LOCALID=0
foreign "PMIx rank 1" "started as rank 1 of 1 by PMIx \(PMIX_RANK\).*MPI counts rank 0 of 1" PMIX_RANK=1
foreign "bad launcher variable" "'PMI_SIZE': 'two' is not an integer" PMI_RANK=0 PMI_SIZE=two
# a batch script's environment outside srun is no launch: the run goes on alone
rm -rf "$tmp/o"
expect_status "Slurm batch script, no srun: runs alone" 0 env SLURM_PROCID=0 SLURM_NTASKS=2 qw-pretrain \
    --config "$tmp/cfg.json" --data "$tmp/data" -T 16 --batch-tokens 64 --steps 1 --threads 1 -q --out "$tmp/o"

if ! command -v mpirun >/dev/null; then
    fail comm_mpi "mpirun not found (openmpi-bin)"
    exit 0
fi

# mpi N: run the test on N ranks over shared memory; if MPI itself fails to
# start (no PASS line at all), try TCP over loopback once.
mpi() {
    timeout 120 mpirun -np "$1" --mca btl self,vader "$prog" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    if [ $rc -ne 0 ] && ! grep -q '^PASS ' "$tmp/out"; then
        timeout 120 mpirun -np "$1" --mca btl self,tcp --mca btl_tcp_if_include lo "$prog" >"$tmp/out" 2>"$tmp/err"
        rc=$?
    fi
    return $rc
}

cases=$(grep -c '^    RUN(' "$QW_SRCDIR/tests/unit/test_comm.c")
for n in 2 3 4; do
    if mpi "$n"; then pass "comm_mpi_np${n}_exit"
    else fail "comm_mpi_np${n}_exit" "$(grep -v -e '^PASS ' -e '^PLAN ' "$tmp/out" | head -20 | tr '\n' ' ') $(head -c 600 "$tmp/err" | tr '\n' ' ')"; fi
    ranks=$(grep -c "^comm mpi [0-9]* $n\$" "$tmp/out")
    check "comm_mpi_np${n}_ranks" [ "$ranks" -eq "$n" ]
    passed=$(grep -c '^PASS ' "$tmp/out")
    failed=$(grep -c '^FAIL ' "$tmp/out")
    check "comm_mpi_np${n}_cases" [ "$passed" -eq $((cases * n)) -a "$failed" -eq 0 ]
done
