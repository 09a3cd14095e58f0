#!/usr/bin/env bash
# tests/bench/cpu_model.sh — CPU training-step throughput of the fp32
# reference model: a ~29M-parameter dense Qwen3 (dense-25m.json: V 8192,
# H 512, L 8, nh 8, nkv 4, d 64, I 1536, tied) at T = 512, and what fraction
# of the machine's own sgemm rate its matmul FLOPs reach.  One JSON line
# per run (qw-eval(1), "bench").
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
PATH=${QW_BIN:-$root/bin}:$PATH
qw-eval bench --config "$root/tests/bench/dense-25m.json" --seq-len 512 --batch 1 --steps 3 "$@"
