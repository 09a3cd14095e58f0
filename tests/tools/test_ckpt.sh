#!/usr/bin/env bash
# qw-ckpt: inspect against an independent safetensors reader, verify (NaN and
# inf named, bad checkpoints exit 3), export bf16/f32 from both expert
# layouts, atomic export on a full disk, usage errors, man page.
. "${QW_SRCDIR:?run me through tests/run.sh}/tests/tools/lib.sh" || exit 1
plan 70
g=$QW_SRCDIR/tests/golden

# st.py CMD FILE...: an independent reader of safetensors (Python stdlib).
cat >"$tmp/st.py" <<'EOF'
import json, math, struct, sys
def read(path):
    b = open(path, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n])
    h.pop('__metadata__', None)
    return h, b, 8 + n
def values(path, name):
    h, b, base = read(path)
    t = h[name]
    s, e = t['data_offsets']
    raw = b[base + s:base + e]
    if t['dtype'] == 'F32': return list(struct.unpack('<%df' % (len(raw) // 4), raw))
    if t['dtype'] == 'BF16':
        return [struct.unpack('<f', struct.pack('<I', x << 16))[0] for x in struct.unpack('<%dH' % (len(raw) // 2), raw)]
def bf16(x):   # round to nearest even
    u = struct.unpack('<I', struct.pack('<f', x))[0]
    u = (u + 0x7fff + ((u >> 16) & 1)) >> 16
    return struct.unpack('<f', struct.pack('<I', u << 16))[0]
cmd = sys.argv[1]
if cmd == 'table':     # name dtype shape, sorted by name
    h, _, _ = read(sys.argv[2])
    for k in sorted(h): print(k, h[k]['dtype'], '[' + ','.join(map(str, h[k]['shape'])) + ']')
elif cmd == 'poke':    # poke FILE TENSOR INDEX VALUE: overwrite one F32 element
    path, name, i, v = sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
    h, b, base = read(path)
    off = base + h[name]['data_offsets'][0] + 4 * i
    b = bytearray(b); b[off:off + 4] = struct.pack('<f', v)
    open(path, 'wb').write(b)
elif cmd == 'dtypes':
    h, _, _ = read(sys.argv[2]); print(' '.join(sorted({t['dtype'] for t in h.values()})))
elif cmd == 'same':    # same A B [bf16]: every tensor of A equals B's (B rounded to bf16 if asked)
    ha, _, _ = read(sys.argv[2]); hb, _, _ = read(sys.argv[3])
    assert sorted(ha) == sorted(hb), (sorted(ha)[:3], sorted(hb)[:3])
    for k in ha:
        a, b = values(sys.argv[2], k), values(sys.argv[3], k)
        if len(sys.argv) > 4: b = [bf16(x) for x in b]
        assert a == b, k
elif cmd == 'active':  # parameter counts from config.json
    c = json.load(open(sys.argv[2]))
    H, d, L, V = c['hidden_size'], c['head_dim'], c['num_hidden_layers'], c['vocab_size']
    attn = 2 * H + 2 * c['num_attention_heads'] * d * H + 2 * c['num_key_value_heads'] * d * H + 2 * d
    tot = act = V * H * (1 if c['tie_word_embeddings'] else 2) + H + L * attn
    for i in range(L):
        if c.get('num_experts') and i not in c['mlp_only_layers'] and (i + 1) % c['decoder_sparse_step'] == 0:
            e = 3 * c['moe_intermediate_size'] * H
            tot += c['num_experts'] * (H + e); act += c['num_experts'] * H + c['num_experts_per_tok'] * e
        else:
            tot += 3 * c['intermediate_size'] * H; act += 3 * c['intermediate_size'] * H
    print('parameters: %d total, %d active' % (tot, act))
EOF
st() { python3 "$tmp/st.py" "$@"; }

# ---- inspect
for m in dense_yarn dense_tied moe; do
    expect_status inspect_$m 0 qw-ckpt inspect "$g/$m/model"
    sed -n '/^$/,$p' "$last_out" | sed 1d | awk '{print $1, $2, $3}' | sort >"$tmp/table"
    st table "$g/$m/model/model.safetensors" >"$tmp/want"
    check inspect_${m}_table cmp -s "$tmp/table" "$tmp/want"
    check inspect_${m}_counts grep -qx "$(st active "$g/$m/model/config.json")" "$last_out"
done
expect_status inspect_fused 0 qw-ckpt inspect "$g/moe/model_fused"
check inspect_fused_lists_fused grep -Eq '^model.layers.0.mlp.experts.gate_up_proj +F32 +\[8,32,64\]$' "$last_out"
check inspect_moe_layers grep -qx 'moe_layers: 0,2' "$last_out"
check inspect_yarn grep -qx 'rope: theta 1000000, yarn factor 4 over 64 positions' \
    <(qw-ckpt inspect "$g/dense_yarn/model")

# ---- verify
for d in dense_yarn/model dense_tied/model moe/model moe/model_fused; do
    expect_status verify_${d//\//_} 0 qw-ckpt verify "$g/$d"
done
check verify_summary grep -q ': ok: 80 tensors, 132640 values, all finite' <(qw-ckpt verify "$g/moe/model")

cp -r "$g/dense_tied/model" "$tmp/nan"
st poke "$tmp/nan/model.safetensors" model.layers.1.mlp.down_proj.weight 37 nan
expect_status verify_nan 3 qw-ckpt verify "$tmp/nan"
expect_stderr verify_nan_msg "^qw-ckpt: '.*nan/model.safetensors': tensor 'model.layers.1.mlp.down_proj.weight': element 37 \[0,37\] is nan$"
st poke "$tmp/nan/model.safetensors" model.layers.1.mlp.down_proj.weight 37 0.5
st poke "$tmp/nan/model.safetensors" model.norm.weight 31 -inf
expect_status verify_inf 3 qw-ckpt verify "$tmp/nan"
expect_stderr verify_inf_msg "tensor 'model.norm.weight': element 31 \[31\] is inf"

cp -r "$g/dense_yarn/model" "$tmp/shape"
sed -i 's/"intermediate_size": 64/"intermediate_size": 65/' "$tmp/shape/config.json"
expect_status verify_shape 3 qw-ckpt verify "$tmp/shape"
expect_stderr verify_shape_msg "tensor 'model.layers.0.mlp.(gate|up|down)_proj.weight': shape \[(64,64)\] does not match the config \(\[(65,64|64,65)\]\)"
cp -r "$g/dense_tied/model" "$tmp/untied"
sed -i 's/"tie_word_embeddings": true/"tie_word_embeddings": false/' "$tmp/untied/config.json"
expect_status verify_missing 3 qw-ckpt verify "$tmp/untied"
expect_stderr verify_missing_msg "missing tensor 'lm_head.weight'"
cp -r "$g/dense_yarn/model" "$tmp/extra"
sed -i 's/"tie_word_embeddings": false/"tie_word_embeddings": true/' "$tmp/extra/config.json"
expect_status verify_tied_ignores_head 0 qw-ckpt verify "$tmp/extra"
sed -i 's/"model_type": "qwen3"/"model_type": "llama"/' "$tmp/extra/config.json"
expect_status verify_bad_config 3 qw-ckpt verify "$tmp/extra"
expect_stderr verify_bad_config_msg "config.json': key 'model_type': 'llama' is not a Qwen3 model"
mkdir "$tmp/trunc" && cp "$g/dense_tied/model/config.json" "$tmp/trunc/"
head -c 5000 "$g/dense_tied/model/model.safetensors" >"$tmp/trunc/model.safetensors"
expect_status verify_truncated 3 qw-ckpt verify "$tmp/trunc"
expect_stderr verify_truncated_msg "header length [0-9]+ runs past the end of the file \(5000 bytes\)|outside the data area"

# ---- export
cp -r "$g/moe/model_fused" "$tmp/src"
echo '{"version": "1.0"}' >"$tmp/src/tokenizer.json"
echo '{"eos_token": "<|im_end|>"}' >"$tmp/src/tokenizer_config.json"
expect_status export_bf16 0 qw-ckpt export "$tmp/src" -o "$tmp/bf16"
check export_bf16_dtype test "$(st dtypes "$tmp/bf16/model.safetensors")" = BF16
check export_bf16_values st same "$tmp/bf16/model.safetensors" "$g/moe/model/model.safetensors" bf16
check export_bf16_config grep -q '"torch_dtype":[[:space:]]*"bfloat16"' "$tmp/bf16/config.json"
check export_tokenizer cmp -s "$tmp/src/tokenizer.json" "$tmp/bf16/tokenizer.json"
check export_tokenizer_config cmp -s "$tmp/src/tokenizer_config.json" "$tmp/bf16/tokenizer_config.json"
check export_generation_config test -s "$tmp/bf16/generation_config.json"
expect_status export_bf16_verify 0 qw-ckpt verify "$tmp/bf16"
expect_status export_f32 0 qw-ckpt export "$tmp/src" -o "$tmp/f32" --dtype f32
check export_f32_per_expert st same "$tmp/f32/model.safetensors" "$g/moe/model/model.safetensors"
expect_status export_from_bf16 0 qw-ckpt export "$tmp/bf16" -o "$tmp/f32b" --dtype f32
check export_bf16_to_f32_exact st same "$tmp/f32b/model.safetensors" "$g/moe/model/model.safetensors" bf16

# a full disk: nothing half-written under the final name, no temporary left
(trap '' XFSZ; ulimit -f 64; exec qw-ckpt export "$tmp/src" -o "$tmp/full" --dtype f32) >/dev/null 2>"$tmp/full.err"
check export_full_disk_status test $? -eq 1
check export_full_disk_msg grep -q "model.safetensors': write error: File too large" "$tmp/full.err"
check export_full_disk_clean test -z "$(ls "$tmp/full")"

# training output directory: 'latest' names the checkpoint
mkdir -p "$tmp/runs/pretrain" && cp -r "$g/dense_tied/model" "$tmp/runs/pretrain/step-001000"
echo step-001000 >"$tmp/runs/pretrain/latest"
expect_status verify_latest 0 qw-ckpt verify "$tmp/runs/pretrain"
echo ../../etc >"$tmp/runs/pretrain/latest"
expect_status bad_latest 3 qw-ckpt verify "$tmp/runs/pretrain"

# ---- usage
expect_status no_command 2 qw-ckpt
expect_status unknown_command 2 qw-ckpt frobnicate "$g/moe/model"
expect_status two_dirs 2 qw-ckpt inspect "$g/moe/model" "$g/moe/model"
expect_status output_on_inspect 2 qw-ckpt inspect -o x "$g/moe/model"
expect_status export_needs_output 2 qw-ckpt export "$g/moe/model"
expect_status bad_dtype 2 qw-ckpt export "$g/moe/model" -o "$tmp/x" --dtype f16
expect_status missing_dir 1 qw-ckpt inspect "$tmp/nonexistent"
expect_status option_before_command 2 qw-ckpt -q verify "$g/moe/model"
expect_stderr option_before_command_msg "give the command first"

# ---- subcommands: the program's help lists them; a command's help shows its own usage and options
expect_status help 0 qw-ckpt --help
check help_lists_commands grep -qE '^  verify +check every tensor' "$last_out"
check help_usage_lines test "$(grep -cE '^(usage:|      ) qw-ckpt (inspect|export|verify) DIR' "$last_out")" = 3
expect_status export_help 0 qw-ckpt export --help
check export_help_usage grep -qx 'usage: qw-ckpt export DIR -o OUT \[--dtype bf16|f32\] \[options\]' "$last_out"
check export_help_options grep -q -- '--dtype' "$last_out"
expect_status inspect_help 0 qw-ckpt inspect --help
check inspect_help_usage grep -qx 'usage: qw-ckpt inspect DIR \[options\]' "$last_out"
check inspect_help_no_export_options test "$(grep -c -- '--dtype\|--output' "$last_out")" = 0
expect_status inspect_with_export_option 2 qw-ckpt inspect --dtype f32 "$g/moe/model"
expect_stderr inspect_with_export_option_msg "try 'qw-ckpt inspect --help'"

# ---- man page: the same options as --help, and the examples run
help_opts=$(qw-ckpt --help | grep -oE -- '--[a-z][a-z-]*' | sort -u)
man_opts=$(sed -n '/^\.SH OPTIONS/,/^\.SH EXIT/p' "$QW_SRCDIR/man/man1/qw-ckpt.1" | grep -oE -- '\\-\\-[a-z][a-z\\-]*' |
           sed 's/\\//g' | sort -u)
check man_options test "$help_opts" = "$man_opts"
echo step-001000 >"$tmp/runs/pretrain/latest"
cp -r "$g/dense_tied/model" "$tmp/Qwen3-0.6B"
n=0
while read -r line; do
    n=$((n + 1))
    (cd "$tmp" && eval "$line") >/dev/null 2>"$tmp/ex.err" || fail man_example_$n "$line: $(cat "$tmp/ex.err")"
done < <(sed -n '/^\.SH EXAMPLES/,/^\.SH SEE/p' "$QW_SRCDIR/man/man1/qw-ckpt.1" | grep '^\$ qw\\-ckpt' | sed -e 's/^\$ //' -e 's/\\-/-/g')
check man_examples test "$n" -eq 3 -a -s "$tmp/release/model.safetensors"
