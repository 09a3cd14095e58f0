# test_comm_mpi.sh — the collectives of qw/comm.h on MPI ranks: the unit
# test binary build/tests/test_comm run under mpirun with 2, 3 and 4 ranks
# (more ranks than cores: oversubscribed).  Each rank prints
# "comm mpi RANK SIZE" and its own PASS/FAIL lines.
. "$QW_SRCDIR/tests/tools/lib.sh"
plan 9

prog=$QW_SRCDIR/build/tests/test_comm
# Containers: allow root, oversubscribe, no CPU binding, the ob1 engine on
# shared memory without cross-process copies (no ptrace rights needed).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_hwloc_base_binding_policy=none
export OMPI_MCA_pml=ob1 OMPI_MCA_btl_vader_single_copy_mechanism=none

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
    else fail "comm_mpi_np${n}_exit" "$(grep -v '^PASS ' "$tmp/out" | head -20) $(head -c 600 "$tmp/err")"; fi
    ranks=$(grep -c "^comm mpi [0-9]* $n\$" "$tmp/out")
    check "comm_mpi_np${n}_ranks" [ "$ranks" -eq "$n" ]
    passed=$(grep -c '^PASS ' "$tmp/out")
    failed=$(grep -c '^FAIL ' "$tmp/out")
    check "comm_mpi_np${n}_cases" [ "$passed" -eq $((cases * n)) -a "$failed" -eq 0 ]
done
