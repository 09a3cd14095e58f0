#!/usr/bin/env bash
# test_sft_images.sh — training a Qwen3-VL on shards with images (CPU):
# the loss falls and the tower learns; one step's gradient on one sample
# equals qw-eval forward's on the same sample, pixels and grid; two samples
# packed in a row give the target-weighted mean of their own gradients;
# --freeze-vision, and text-only data, leave the tower bit for bit as it was
# (no update, no weight decay); images for a model without a tower are
# exit 3.
. "$QW_SRCDIR/tests/tools/lib.sh"
plan 18

bash "$QW_SRCDIR/tests/tools/gen_vl_model.sh" "$tmp/m" >/dev/null 2>&1
m=$tmp/m
vl() { qw-pack -q --zstd 0 --mode sft --chat --tokenizer "$m/tok" --model "$m/model" "$@"; }
gc() { python3 "$QW_SRCDIR/tests/tools/vl_grad_check.py" "$@"; }
# same TENSOR in two safetensors files: "same" or "differ"
same() {
    python3 - "$@" <<'PY'
import json, struct, sys
def get(p, name):
    b = open(p, "rb").read(); n = struct.unpack_from("<Q", b, 0)[0]; h = json.loads(b[8:8 + n])
    keys = [k for k in h if k != "__metadata__" and (k == name or (name.endswith(".") and k.startswith(name)))]
    return b"".join(b[8 + n + h[k]["data_offsets"][0]:8 + n + h[k]["data_offsets"][1]] for k in sorted(keys)), len(keys)
a, na = get(sys.argv[1], sys.argv[3]); b, nb = get(sys.argv[2], sys.argv[3])
print("same" if a == b and na == nb and na > 0 else "differ")
PY
}

vl -T 160 -o "$tmp/d" "$m/chat.jsonl"
expect_status train 0 qw-sft --model "$m/model" --data "$tmp/d" -T 160 --batch-tokens 640 --steps 20 --lr 3e-3 \
    --out "$tmp/run" --log "$tmp/run.jsonl" --threads 2 -q
check loss_falls python3 -c "
import json, sys
l = [json.loads(x)['loss'] for x in open(sys.argv[1]) if '\"loss\"' in x]
sys.exit(not (len(l) == 20 and l[-1] < 0.6 * l[0]))" "$tmp/run.jsonl"
final=$tmp/run/$(cat "$tmp/run/latest")/model.safetensors
check tower_learns test "$(same "$m/model/model.safetensors" "$final" model.visual.)" = differ

expect_status freeze 0 qw-sft --model "$m/model" --data "$tmp/d" -T 160 --batch-tokens 640 --steps 3 --lr 3e-3 \
    --weight-decay 0.5 --freeze-vision --out "$tmp/frz" --threads 2 -q
ffinal=$tmp/frz/$(cat "$tmp/frz/latest")/model.safetensors
check freeze_keeps_tower test "$(same "$m/model/model.safetensors" "$ffinal" model.visual.)" = same
check freeze_trains_llm test "$(same "$m/model/model.safetensors" "$ffinal" model.language_model.)" = differ

# text-only data on a VL model: the tower is not decayed
qw-tokenize -q -t "$m/tok" "$m/corpus.txt" | qw-pack -q -T 32 -o "$tmp/text"
expect_status text_only 0 qw-pretrain --model "$m/model" --data "$tmp/text" -T 32 --batch-tokens 64 --steps 3 \
    --lr 1e-2 --weight-decay 0.5 --out "$tmp/txt" --threads 2 -q
tfinal=$tmp/txt/$(cat "$tmp/txt/latest")/model.safetensors
check text_only_keeps_tower test "$(same "$m/model/model.safetensors" "$tfinal" model.visual.)" = same
check text_only_trains_llm test "$(same "$m/model/model.safetensors" "$tfinal" model.language_model.)" = differ

# one sample: the training step's gradient is qw-eval forward's
sed -n 1p "$m/chat.jsonl" >"$m/one.jsonl"
sed -n 2p "$m/chat.jsonl" >"$m/two.jsonl"
cat "$m/one.jsonl" "$m/two.jsonl" >"$m/both.jsonl"
vl -T 64 -o "$tmp/d1" "$m/one.jsonl"
vl -T 64 -o "$tmp/d2" "$m/two.jsonl"
vl -T 128 -o "$tmp/d12" "$m/both.jsonl"
gc input "$tmp/d1/train-00000.qwp" "$tmp/in.safetensors"
expect_status grad_step 0 qw-sft --model "$m/model" --data "$tmp/d1" -T 64 --batch-tokens 64 --steps 1 --out "$tmp/r1" \
    --dump-grads "$tmp/g1.safetensors" --threads 1 -q
expect_status grad_forward 0 qw-eval forward --model "$m/model" --input "$tmp/in.safetensors" --output "$tmp/f.safetensors" --grads
expect_status grad_equal 0 gc compare "$tmp/g1.safetensors" "$tmp/f.safetensors" 1e-6
check grad_equal_all grep -q '^93 gradients' "$last_out"
# packed: documents do not see each other; their images stay theirs
qw-sft -q --model "$m/model" --data "$tmp/d2" -T 64 --batch-tokens 64 --steps 1 --out "$tmp/r2" --dump-grads "$tmp/g2.safetensors" --threads 1
expect_status packed_row 0 qw-sft --model "$m/model" --data "$tmp/d12" -T 128 --batch-tokens 128 --steps 1 --out "$tmp/r12" \
    --dump-grads "$tmp/g12.safetensors" --threads 1 -q
check packed_two_docs grep -q 'documents per row: min 2, mean 2.00, max 2' <(qw-pack --inspect "$tmp/d12")
expect_status packed_mean 0 gc packed "$tmp/g12.safetensors" "$tmp/g1.safetensors" "$(gc targets "$tmp/d1/train-00000.qwp")" \
    "$tmp/g2.safetensors" "$(gc targets "$tmp/d2/train-00000.qwp")" 1e-5

# images for a text model
python3 - "$m/model/config.json" >"$tmp/text.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))["text_config"]
c["model_type"] = "qwen3"; c.pop("rope_scaling", None)
print(json.dumps(c))
PY
expect_status text_model 3 qw-sft --config "$tmp/text.json" --data "$tmp/d" -T 160 --batch-tokens 160 --steps 1 --out "$tmp/x" -q
expect_stderr text_model_msg 'the data has images, but the model \(qwen3\) has no vision tower'
