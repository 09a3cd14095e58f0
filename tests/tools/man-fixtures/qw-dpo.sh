# Files the qw-dpo(1) examples name: a tiny model, a reference (the same perturbed), id-form pairs.
mkdir model ref && cp "$QW_SRCDIR/tests/golden/dense_tied/model/"* model/
cp "$QW_SRCDIR/tests/golden/post/ref_model/"* ref/
cp "$QW_SRCDIR/tests/golden/post/dpo.jsonl" pairs.jsonl
