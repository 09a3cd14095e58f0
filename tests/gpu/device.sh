#!/bin/bash
# tests/gpu/device.sh — the GPU suite and the GPU benchmarks in one call on a
# GPU machine that lacks the build's dependencies, from a folder made here.
#
#   tests/gpu/device.sh prepare [DIR]   (here, after `make`; DIR default .gpu)
#       builds the GPU test programs (tests/gpu/build.sh build/gpu), the
#       bundle (tests/gpu/bundle.sh DIR) and the bench's tokenized data
#       (tests/bench/train_cuda.sh --prepare, into DIR/bench-data); prints
#       DIR's size (DIR travels with the working tree: 64 MiB in all)
#   tests/gpu/device.sh run [DIR [all|test|bench]]   (there, in the repository root)
#       `make test-gpu` (tests/gpu/run.sh) and `make bench-gpu`
#       (tests/bench/attn_cuda.sh, tests/bench/train_cuda.sh) on DIR's
#       programs, within QW_DEVICE_BUDGET seconds (default 570): the suite
#       gets at most QW_DEVICE_TEST_LIMIT (default 240) and the training
#       bench whatever is left after the attention bench; test_ops prints
#       every measured error (QW_TEST_VERBOSE=1).  Logs and results
#       go to $OUT (default DIR/out): test-gpu.log, attn.log, bench.log,
#       results.jsonl, table.txt, tokens.svg and bench-parts.tar.gz (every
#       part's stderr and metrics).  Prints the suite's closing line and the
#       bench table last.  Exit status: the suite's (0 only when it passed
#       without skips, or QW_GPU_ALLOW_SKIP=1 is set), or the bench's.
#   tests/gpu/device.sh run [DIR] rollout   (there)
#       the decoding path alone, within QW_DEVICE_BUDGET seconds (default
#       570): test_ops (every op, the decoding ones included, errors
#       printed) and tests/gpu/rollout.sh (qw-rollout against the CPU and
#       the training forward) into $OUT/rollout-test.log, then
#       tests/bench/rollout_cuda.sh (qw-rollout against transformers
#       `generate`) with what is left, at most 360 s: $OUT/rollout.jsonl,
#       $OUT/rollout-bench.log.  Between them, tests/golden/make_golden.py
#       --generate writes transformers' greedy continuations of the fixtures
#       ($OUT/golden/NAME/generate.json: the reference of
#       tests/tools/test_rollout_hf.sh, to copy into tests/golden/NAME/).
#       Exit status: 0 when every case passed.
set -u
cd "$(dirname "$0")/../.." || exit 1
cmd=${1:-}
dir=${2:-.gpu}
case $cmd in
prepare)
    bash tests/gpu/build.sh build/gpu || exit 1
    make -s build/tests/test_model || exit 1
    QW_GPU_BIN=build/gpu bash tests/gpu/bundle.sh "$dir" || exit 1
    QW_BENCH_DATA=$dir/bench-data bash tests/bench/train_cuda.sh --prepare || exit 1
    echo "device.sh: '$dir' ready, $(du -sh "$dir" | cut -f1); the working tree without it: $(du -sh --exclude=.git --exclude="$dir" --exclude=build --exclude=bin . | cut -f1)"
    ;;
run)
    what=${3:-all}
    case $what in all|test|bench|rollout) ;; *) echo "device.sh: run: all, test, bench or rollout, not '$what'" >&2; exit 2 ;; esac
    [ -f "$dir/env.sh" ] || { echo "device.sh: no bundle in '$dir' (run 'device.sh prepare' where it is built)" >&2; exit 1; }
    . "$dir/env.sh"
    out=${OUT:-$dir/out}
    mkdir -p "$out" || exit 1
    budget=${QW_DEVICE_BUDGET:-570}
    end=$((SECONDS + budget))
    st=0
    nvidia-smi --query-gpu=name,memory.used,memory.total,clocks.sm,clocks.max.sm,driver_version --format=csv,noheader
    "$dir/check.sh" || exit 1
    if [ "$what" = rollout ]; then
        log=$out/rollout-test.log
        echo "device.sh: [${SECONDS}s] test_ops and rollout.sh"
        QW_TEST_VERBOSE=1 timeout -k 10 150 "$QW_GPU_BIN/test_ops" >"$log" 2>&1
        s1=$?
        timeout -k 10 240 bash tests/gpu/rollout.sh >>"$log" 2>&1
        s2=$?
        grep -E '^(FAIL|SKIP) |^# (cuda|cuda-fp32) (kv_write|attn_paged|sample)|^    (greedy|trainer)|limit' "$log"
        p=$(grep -c '^PASS ' "$log") f=$(grep -c '^FAIL ' "$log")
        echo "device.sh: [${SECONDS}s] test_ops exit $s1, rollout.sh exit $s2: $p passed, $f failed"
        st=0
        [ $s1 = 0 ] && [ $s2 = 0 ] && [ "$f" = 0 ] || st=1
        # transformers' greedy generate on the fixtures (test_rollout_hf.sh's reference), for the CPU suite
        echo "device.sh: [${SECONDS}s] make_golden.py --generate"
        (cd tests/golden && timeout -k 10 120 python3 make_golden.py --generate) >"$out/generate.log" 2>&1 ||
            echo "device.sh: make_golden.py --generate failed: $(tail -c 300 "$out/generate.log")"
        for g in tests/golden/*/generate.json; do
            [ -f "$g" ] && mkdir -p "$out/golden/$(basename "$(dirname "$g")")" && cp "$g" "$out/golden/$(basename "$(dirname "$g")")/"
        done
        left=$((end - SECONDS - 15))
        [ $left -gt 360 ] && left=360
        echo "device.sh: [${SECONDS}s] rollout bench, budget ${left}s"
        QW_BENCH_RESULTS=$out QW_BENCH_BUDGET=$left timeout -k 10 $((left + 10)) bash tests/bench/rollout_cuda.sh \
            >/dev/null 2>"$out/rollout-bench.log"
        echo "device.sh: [${SECONDS}s] rollout bench exit $?"
        cat "$out/rollout.jsonl" 2>/dev/null || tail -n 20 "$out/rollout-bench.log"
        exit $st
    fi
    if [ "$what" != bench ]; then
        lim=${QW_DEVICE_TEST_LIMIT:-240}
        echo "device.sh: [${SECONDS}s] test-gpu (limit ${lim}s)"
        QW_TEST_VERBOSE=1 timeout -k 10 "$lim" bash tests/gpu/run.sh >"$out/test-gpu.log" 2>&1
        st=$?
        if [ $st = 124 ] || [ $st = 137 ]; then
            echo "device.sh: test-gpu stopped at its ${lim}s limit: $(grep -c '^PASS ' "$out/test-gpu.log") passed," \
                "$(grep -c '^FAIL ' "$out/test-gpu.log") failed, $(grep -c '^SKIP ' "$out/test-gpu.log") skipped so far" \
                >>"$out/test-gpu.log"
        fi
        grep -E '^(FAIL|SKIP) |skipped|limit' "$out/test-gpu.log"
        echo "device.sh: [${SECONDS}s] test-gpu exit $st: $(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out/test-gpu.log" | tail -1)"
    fi
    if [ "$what" != test ]; then
        echo "device.sh: [${SECONDS}s] attention bench"
        timeout -k 10 60 bash tests/bench/attn_cuda.sh "$QW_GPU_BIN" >"$out/attn.log" 2>&1 || echo "device.sh: attention bench exit $?"
        tail -n 6 "$out/attn.log"
        left=$((end - SECONDS - 10))
        echo "device.sh: [${SECONDS}s] training bench, budget ${left}s"
        res=$(mktemp -d)
        QW_BENCH_DATA=$dir/bench-data QW_BENCH_RESULTS=$res QW_BENCH_BUDGET=$left \
            bash tests/bench/train_cuda.sh >"$out/bench.log" 2>&1
        bst=$?
        cp "$res/results.jsonl" "$res/table.txt" "$res/tokens.svg" "$out/" 2>/dev/null
        tar -czf "$out/bench-parts.tar.gz" -C "$res" . 2>/dev/null
        [ $st = 0 ] && st=$bst
        echo "device.sh: [${SECONDS}s] done"
        cat "$out/table.txt" 2>/dev/null || tail -n 20 "$out/bench.log"
    fi
    exit $st
    ;;
*)
    echo "usage: tests/gpu/device.sh prepare [DIR] | run [DIR [all|test|bench]]" >&2
    exit 2
    ;;
esac
