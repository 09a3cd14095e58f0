# Files the qw-sft(1) examples name: a stream of samples with loss masks and a tiny config.
python3 "$QW_SRCDIR/tests/tools/gen_sft_stream.py" 00000000c0ffee01 256 200 1 >samples.qwt
cat >tiny.json <<'JSON'
{"model_type":"qwen3","vocab_size":256,"hidden_size":32,"intermediate_size":64,"num_hidden_layers":1,
 "num_attention_heads":2,"num_key_value_heads":1,"head_dim":16,"max_position_embeddings":128,
 "rms_norm_eps":1e-6,"rope_theta":10000,"tie_word_embeddings":true,"initializer_range":0.02}
JSON
