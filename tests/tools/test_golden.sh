#!/usr/bin/env bash
# test_golden.sh — HF parity: qw-eval forward --grads on every
# tests/golden/*/ fixture against what transformers computed
# (expected.safetensors): logits max|diff| <= 1e-4 of max|logits|, loss and
# aux_loss |diff| <= 1e-5, every gradient relative error <= 1e-3 (sft: the masked,
# packed loss of TRL, with labels and position_ids).  The fused
# MoE layout (model_fused/) must give what model/ gives.  Prints the worst
# numbers of each fixture.
. "$QW_SRCDIR/tests/tools/lib.sh"
plan 12
compare=$QW_SRCDIR/build/tests/test_model
n=0
for dir in "$QW_SRCDIR"/tests/golden/*/; do
    [ -f "$dir/expected.safetensors" ] && [ -f "$dir/input.safetensors" ] || continue
    # the Qwen3-VL fixtures (vl/, vl_moe/) have their own test
    grep -q '"vision_config"' "$dir/model/config.json" 2>/dev/null && continue
    name=$(basename "$dir")
    n=$((n + 1))
    for variant in model model_fused; do
        [ -d "$dir/$variant" ] || continue
        out=$tmp/$name-$variant.st
        expect_status "${name}_${variant}_runs" 0 qw-eval forward --model "$dir/$variant" \
            --input "$dir/input.safetensors" --output "$out" --grads
        echo "$name/$variant:"
        "$compare" --compare "$dir/expected.safetensors" "$out" >"$tmp/cmp" 2>&1
        st=$?
        sed 's/^/    /' "$tmp/cmp"
        if [ $st -eq 0 ]; then pass "${name}_${variant}_matches_hf"
        else fail "${name}_${variant}_matches_hf" "$(tr '\n' ';' <"$tmp/cmp")"; fi
    done
    if [ -d "$dir/model_fused" ]; then
        check "${name}_fused_same_logits" "$compare" --compare "$tmp/$name-model.st" "$tmp/$name-model_fused.st"
    fi
done
check golden_fixtures_found test "$n" -ge 3
