# Files the qw-ckpt(1) examples name: a downloaded model and a training run's output.
cp -r "$QW_SRCDIR/tests/golden/dense_tied/model" Qwen3-0.6B
mkdir -p runs/pretrain
cp -r "$QW_SRCDIR/tests/golden/dense_tied/model" runs/pretrain/step-001000
echo step-001000 >runs/pretrain/latest
