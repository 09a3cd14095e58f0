#!/usr/bin/env bash
# test_eval.sh — qw-eval: forward outputs (names, dtypes, shapes, tied and
# MoE variants, I32 input), bad inputs and usage errors, bench, man page.
. "$QW_SRCDIR/tests/tools/lib.sh"
plan 73
st() { python3 "$QW_SRCDIR/tests/tools/eval_st.py" "$@"; }
g=$QW_SRCDIR/tests/golden

# forward without --grads: logits and loss only (dense, tied)
expect_status forward_dense 0 qw-eval forward --model "$g/dense_tied/model" \
    --input "$g/dense_tied/input.safetensors" --output "$tmp/a.st"
st header "$tmp/a.st" >"$tmp/a.hdr"
check forward_dense_tensors test "$(cat "$tmp/a.hdr")" = "$(printf 'logits F32 2,16,256\nloss F32 1')"

# --grads: one gradient per parameter (2 layers x 11 + embedding + final norm), none for the tied LM head
expect_status forward_grads 0 qw-eval forward -m "$g/dense_tied/model" -i "$g/dense_tied/input.safetensors" \
    -o "$tmp/b.st" --grads
st header "$tmp/b.st" >"$tmp/b.hdr"
check grads_count test "$(grep -c '^grad\.' "$tmp/b.hdr")" = 24
check grads_tied_no_lm_head test "$(grep -c 'lm_head' "$tmp/b.hdr")" = 0
check grads_embed_shape grep -q '^grad.model.embed_tokens.weight F32 256,32$' "$tmp/b.hdr"
check grads_same_forward test "$(st values "$tmp/a.st" loss)" = "$(st values "$tmp/b.st" loss)"

# I32 input_ids give the same bytes as I64
ids=$(st values "$g/dense_tied/input.safetensors" input_ids | tr ' ' ,)
st write "$tmp/i32.st" "input_ids:I32:2,16:$ids" "attention_mask:I64:1:1"
expect_status forward_i32 0 qw-eval forward -m "$g/dense_tied/model" -i "$tmp/i32.st" -o "$tmp/c.st"
check i32_same_as_i64 cmp -s "$tmp/a.st" "$tmp/c.st"

# MoE: aux_loss, per-expert gradients (3 layers: E=8 experts in layers 0 and 2)
expect_status forward_moe 0 qw-eval forward -m "$g/moe/model" -i "$g/moe/input.safetensors" -o "$tmp/m.st" --grads
st header "$tmp/m.st" >"$tmp/m.hdr"
check moe_aux_loss grep -q '^aux_loss F32 1$' "$tmp/m.hdr"
check moe_expert_grads test "$(grep -c '^grad.model.layers.[02].mlp.experts.[0-7].\(gate\|up\|down\)_proj.weight ' "$tmp/m.hdr")" = 48
check moe_router_grad grep -q '^grad.model.layers.2.mlp.gate.weight F32 8,64$' "$tmp/m.hdr"

# bad inputs
run_bad() {   # name status regex spec...
    local name=$1 status=$2 re=$3; shift 3
    st write "$tmp/bad.st" "$@"
    expect_status "$name" "$status" qw-eval forward -m "$g/dense_tied/model" -i "$tmp/bad.st" -o "$tmp/x.st"
    expect_stderr "${name}_msg" "$re"
}
run_bad no_input_ids 3 "no tensor 'input_ids'" "tokens:I64:1,4:1,2,3,4"
run_bad float_ids 3 "input_ids: dtype F32" "input_ids:F32:1,4:1,2,3,4"
run_bad ids_1d 3 "shape must be \[B,T\]" "input_ids:I64:4:1,2,3,4"
run_bad one_token 3 "T >= 2" "input_ids:I64:2,1:1,2"
run_bad id_too_big 3 "input_ids\[1\]\[0\] = 256 is outside the vocabulary \(256\)" "input_ids:I64:2,2:1,2,256,3"
run_bad negative_id 3 "outside the vocabulary" "input_ids:I32:1,2:-1,2"
run_bad vision 3 "vision inputs .* no vision tower" "input_ids:I64:1,2:1,2" "pixel_values:F32:1,2:0,0"
check bad_input_no_output test ! -e "$tmp/x.st"
# Qwen3-VL: pad tokens that do not match the grids, an odd grid, position_ids
vl=$g/vl/model px=$(printf '0,%.0s' $(seq 1535))0
st write "$tmp/vl1.st" "input_ids:I64:1,4:1,252,252,2" "image_grid_thw:I64:1,3:1,2,2" "pixel_values:F32:4,1536:$px,$px,$px,$px"
expect_status vl_pad_count 3 qw-eval forward -m "$vl" -i "$tmp/vl1.st" -o "$tmp/x.st"
expect_stderr vl_pad_count_msg "2 image pad tokens, but image 0 \(grid 1×2×2\) makes 1"
st write "$tmp/vl2.st" "input_ids:I64:1,4:1,252,2,3" "image_grid_thw:I64:1,3:1,1,4" "pixel_values:F32:4,1536:$px,$px,$px,$px"
expect_status vl_odd_grid 3 qw-eval forward -m "$vl" -i "$tmp/vl2.st" -o "$tmp/x.st"
expect_stderr vl_odd_grid_msg "image_grid_thw\[0\] = \(1, 1, 4\)"
st write "$tmp/vl3.st" "input_ids:I64:1,4:1,252,2,3" "image_grid_thw:I64:1,3:1,2,2" "pixel_values:F32:4,1536:$px,$px,$px,$px"
expect_status vl_one_image 0 qw-eval forward -m "$vl" -i "$tmp/vl3.st" -o "$tmp/x.st" --grads
st header "$tmp/x.st" >"$tmp/vl.hdr"
check vl_one_image_outputs grep -q '^grad.model.visual.pos_embed.weight F32 16,32$' "$tmp/vl.hdr"
check vl_one_image_positions grep -q '^position_ids I64 3,1,4$' "$tmp/vl.hdr"
rm -f "$tmp/x.st"
expect_status missing_input 1 qw-eval forward -m "$g/dense_tied/model" -i "$tmp/nonexistent.st" -o "$tmp/x.st"
expect_status missing_model 1 qw-eval forward -m "$tmp/nonexistent" -i "$g/dense_tied/input.safetensors" -o "$tmp/x.st"
printf '{"model_type": "qwen3", "vocab_size": 4}' >"$tmp/bad_cfg.json"
mkdir "$tmp/badmodel" && cp "$tmp/bad_cfg.json" "$tmp/badmodel/config.json"
expect_status bad_model_config 3 qw-eval forward -m "$tmp/badmodel" -i "$g/dense_tied/input.safetensors" -o "$tmp/x.st"
expect_status device_cuda 1 qw-eval forward --device cuda -m "$g/dense_tied/model" \
    -i "$g/dense_tied/input.safetensors" -o "$tmp/x.st"
expect_stderr device_cuda_msg "^qw-eval: --device cuda: no usable GPU \\(.+\\)$"

# usage errors
expect_status no_command 2 qw-eval
expect_status unknown_command 2 qw-eval frobnicate
expect_status forward_needs_output 2 qw-eval forward -m "$g/dense_tied/model" -i "$g/dense_tied/input.safetensors"
expect_status forward_bench_option 2 qw-eval forward -m "$g/dense_tied/model" -i "$g/dense_tied/input.safetensors" \
    -o "$tmp/x.st" --steps 2
expect_status bench_forward_option 2 qw-eval bench --config "$g/moe/model" --grads
expect_status two_commands 2 qw-eval forward bench

# bench on a fixture's config: one JSON line
expect_status bench_runs 0 qw-eval bench --config "$g/moe/model/config.json" -T 16 -B 2 --steps 1
check bench_json grep -qE '^\{"device":"cpu",.*"tokens_per_s":[0-9.]+,.*"gemm_fraction":[0-9.]+' "$last_out"
check bench_mem_peak grep -qE '"mem_peak_bytes":[1-9][0-9]{5,},' "$last_out"
expect_status bench_bf16_on_cpu 2 qw-eval bench --config "$g/moe/model/config.json" -T 16 --device cpu --precision bf16
expect_stderr bench_bf16_on_cpu_message "precision bf16: the cpu backend computes in fp32"

# sizes from options and configs: a usage error or bad data with a message, never a signal
expect_status bench_tokens_overflow 2 qw-eval bench --config "$g/moe/model/config.json" -B 65536 -T 65536
expect_stderr bench_tokens_overflow_msg "^qw-eval: --batch 65536 × --seq-len 65536 is more than 2147483647 tokens per step$"
expect_status bench_activations_beyond_memory 1 qw-eval bench --config "$g/moe/model/config.json" -B 16384 -T 16384
expect_stderr bench_activations_beyond_memory_msg "^qw-eval: batch shape 16384 x 16384: the activations need [0-9]+ bytes, more than the machine's memory \([0-9]+ bytes\)$"
absurd() {   # absurd NAME KEY=VALUE...: the dense fixture's config with some keys replaced
    python3 - "$g/dense_tied/model/config.json" "$@" >"$tmp/$1.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
for kv in sys.argv[3:]:
    k, v = kv.split("=")
    c[k] = int(v)
print(json.dumps(c))
PY
}
absurd heads head_dim=2000000000 num_attention_heads=2 num_key_value_heads=1
absurd mlp hidden_size=2000000000 intermediate_size=2000000000
absurd vocab vocab_size=2000000000 hidden_size=2000000000 num_attention_heads=1 num_key_value_heads=1 head_dim=2
for c in "heads:head_dim" "mlp:intermediate_size" "vocab:vocab_size"; do
    expect_status "config_${c%%:*}_overflow" 3 qw-eval bench --config "$tmp/${c%%:*}.json" -T 16
    expect_stderr "config_${c%%:*}_overflow_msg" "^qw-eval: '.*/${c%%:*}.json': key '${c#*:}': "
done

# subcommands: the program's help lists them, a command's help shows its own options only
expect_status help 0 qw-eval --help
check help_lists_commands grep -qE '^  bench +time forward\+backward steps' "$last_out"
check help_usage_lines grep -qx '       qw-eval bench --config FILE \[--seq-len T\] \[--batch B\] \[--steps N\] \[options\]' "$last_out"
expect_status bench_help 0 qw-eval bench --help
check bench_help_usage grep -qx 'usage: qw-eval bench --config FILE \[--seq-len T\] \[--batch B\] \[--steps N\] \[options\]' "$last_out"
check bench_help_own_options grep -q -- '--seq-len' "$last_out"
check bench_help_not_forward_options test "$(grep -c -- '--model\|--grads\|--input' "$last_out")" = 0
expect_status forward_help 0 qw-eval forward --help
check forward_help_not_bench_options test "$(grep -c -- '--config\|--seq-len\|--steps' "$last_out")" = 0
expect_status option_of_other_command 2 qw-eval bench --config "$g/moe/model/config.json" --grads
expect_stderr option_of_other_command_msg "try 'qw-eval bench --help'"

# the man page lists exactly the --help options
help_opts=$(qw-eval --help | grep -oE -- '--[a-z][a-z-]*' | sort -u)
man_opts=$(sed -n '/^\.SH OPTIONS/,/^\.SH EXIT/p' "$QW_SRCDIR/man/man1/qw-eval.1" | grep -oE -- '\\-\\-[a-z][a-z\\-]*' |
           sed 's/\\//g' | sort -u)
check man_options test "$help_opts" = "$man_opts"
