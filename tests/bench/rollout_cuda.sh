#!/bin/bash
# tests/bench/rollout_cuda.sh — `make bench-gpu`: qw-rollout on the GPU (bf16)
# against transformers `generate` (bf16, KV cache, SDPA; tests/bench/
# rollout_torch.py) in the same run, on Qwen3-0.6B and Qwen3-1.7B with
# random weights (transformers' initialisation, saved once in bf16 and read
# by both sides), prompts of 128 random ids, 256 and 1024 new tokens with EOS
# ignored, greedy, batch 64 and 256 (qw-rollout --max-batch B over B prompts:
# every sequence decodes at once once prefilled).
#
# One JSON line per (side, model, batch, new tokens) on stdout and in
# $QW_BENCH_RESULTS/rollout.jsonl: generated tokens, seconds (qw: its closing
# line, prefill included, model loading not; torch: the timed generate call),
# tokens/s and the share of the HBM roofline (rollout_torch.py report: bytes
# per decode step = bf16 weights + batch × mean context × K/V bytes per
# token, over 4.8 TB/s).  A part that fails or runs out of time is a line
# with "error".  transformers is slow at batch 256 × 1024 new tokens: its
# runs are capped at QW_BENCH_TORCH_NEW new tokens (default 256; the line
# says "new_tokens_run"), and the roofline share uses what it ran.
#
#   QW_BIN               qw programs (default bin/)
#   QW_BENCH_MODELS      config names in pipelines/configs, or model directories
#                        (default "qwen3-0.6b qwen3-1.7b")
#   QW_BENCH_SHAPES      "BATCH:NEW ..." (default "256:256 64:256 256:1024 64:1024")
#   QW_BENCH_BUDGET      seconds for the whole run (default 360)
#   QW_BENCH_PART_LIMIT  seconds for one part at most (default 90)
#   QW_BENCH_VARIANTS    how qw runs, each a line with "variant" (default "graphs
#                        nographs"): graphs (as it is: decode steps as CUDA graphs),
#                        nographs (QW_ENGINE_GRAPHS=0), deterministic (--deterministic)
#   QW_BENCH_TORCH       0: qw only
#   QW_BENCH_DEVICE      qw's device (default cuda; cpu only to try the script out)
#   QW_BENCH_RESULTS     where results go (default build/bench-gpu)
#   PYTHON               the Python with torch and transformers (default python3)
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
PATH=${QW_BIN:-$root/bin}:$PATH
models=${QW_BENCH_MODELS:-qwen3-0.6b qwen3-1.7b}
shapes=${QW_BENCH_SHAPES:-256:256 64:256 256:1024 64:1024}
variants=${QW_BENCH_VARIANTS:-graphs nographs}
budget=${QW_BENCH_BUDGET:-360}
part_limit=${QW_BENCH_PART_LIMIT:-90}
torch_new=${QW_BENCH_TORCH_NEW:-256}
dev=${QW_BENCH_DEVICE:-cuda}
res=${QW_BENCH_RESULTS:-build/bench-gpu}
py=${PYTHON:-python3}
rt=tests/bench/rollout_torch.py
L=128
deadline=$((SECONDS + budget))
mkdir -p "$res" || exit 1
out=$res/rollout.jsonl
w=$(mktemp -d) || exit 1
trap 'rm -rf "$w"' EXIT

say() { echo "rollout bench: [${SECONDS}s] $*" >&2; }
# lim N: this part's limit within what is left (0: skip)
lim() { local c=$1 r=$((deadline - SECONDS - 5)); [ $r -lt $c ] && c=$r; [ $c -lt 10 ] && c=0; echo $c; }
record() { tee -a "$out"; }

nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader >&2 2>/dev/null
for m in $models; do
    if [ -f "$m/config.json" ]; then
        dir=$m name=$(basename "$(dirname "$m")")/$(basename "$m") cfg=$m/config.json
    else
        name=$m cfg=pipelines/configs/$m.json dir=$w/$m
        c=$(lim 120)
        say "$name: making random bf16 weights (limit ${c}s)"
        if [ "$c" = 0 ] || ! timeout -k 10 "$c" "$py" $rt model --config "$cfg" --out "$dir" >"$w/make-$m.log" 2>&1; then
            tail -5 "$w/make-$m.log" >&2
            "$py" $rt report --impl both --model "$name" --config "$cfg" --batch 0 --prompt $L --new 0 \
                --error "could not make the model (see stderr)" | record
            continue
        fi
    fi
    vocab=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["vocab_size"])' "$cfg")
    "$py" $rt prompts --vocab "$vocab" --n 256 --len $L >"$w/prompts.jsonl"
    for s in $shapes; do
        B=${s%%:*} N=${s##*:}
        head -n "$B" "$w/prompts.jsonl" >"$w/p.jsonl"
        rep=("$py" $rt report --model "$name" --config "$cfg" --batch "$B" --prompt $L --new "$N")
        for v in $variants; do
            c=$(lim "$part_limit")
            if [ "$c" = 0 ]; then
                "${rep[@]}" --impl qw --variant "$v" --error "skipped: time budget spent" | record
                continue
            fi
            env=() opt=()
            case $v in
            nographs) env=(QW_ENGINE_GRAPHS=0) ;;
            deterministic) opt=(--deterministic) ;;
            esac
            say "qw $name B$B N$N $v (limit ${c}s)"
            env "${env[@]}" timeout -k 10 "$c" qw-rollout -m "$dir" -p "$w/p.jsonl" --max-new-tokens "$N" --ignore-eos \
                --temperature 0 --max-batch "$B" --device "$dev" "${opt[@]}" -o "$w/out.jsonl" 2>"$w/qw.log"
            st=$?
            tr '\r' '\n' <"$w/qw.log" | tail -3 >&2
            if [ $st = 0 ]; then "${rep[@]}" --impl qw --variant "$v" --log "$w/qw.log" | record
            else "${rep[@]}" --impl qw --variant "$v" --error "exit $st: $(tr '\r\n' '  ' <"$w/qw.log" | tail -c 300)" | record; fi
        done
        [ "${QW_BENCH_TORCH:-1}" = 0 ] && continue
        tn=$N
        [ "$tn" -gt "$torch_new" ] && tn=$torch_new
        c=$(lim "$part_limit")
        if [ "$c" = 0 ]; then
            "${rep[@]}" --impl transformers --run-new "$tn" --error "skipped: time budget spent" | record
            continue
        fi
        say "transformers $name B$B N$tn (limit ${c}s)"
        timeout -k 10 "$c" "$py" $rt generate --model "$dir" --prompts "$w/p.jsonl" --batch "$B" --new "$tn" \
            >"$w/t.json" 2>"$w/t.log"
        st=$?
        if [ $st = 0 ] && [ -s "$w/t.json" ]; then
            read -r tps tok sec < <("$py" -c 'import json,sys; r = json.load(open(sys.argv[1]))
print(r["tokens_per_s"], r["generated_tokens"], r["seconds"])' "$w/t.json")
            note=()
            [ "$tn" != "$N" ] && note=(--note "transformers capped at $tn new tokens (QW_BENCH_TORCH_NEW)")
            "${rep[@]}" --impl transformers --run-new "$tn" --tps "$tps" --tokens "$tok" --seconds "$sec" "${note[@]}" | record
        else
            tail -5 "$w/t.log" >&2
            "${rep[@]}" --impl transformers --run-new "$tn" --error "exit $st$([ $st = 124 ] && echo ": over ${c}s")" | record
        fi
    done
done
say "done: $out"
