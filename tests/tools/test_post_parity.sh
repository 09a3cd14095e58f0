#!/usr/bin/env bash
# test_post_parity.sh — whole-update parity of qw-grpo and qw-dpo with
# PyTorch + transformers (tests/golden/post, make_post_golden.py): one
# optimizer step's loss and the gradient of every parameter of a tiny Qwen3,
# for each GRPO loss aggregation, with and without the KL to a reference
# model, with old log-probs from the rollout (ratios that clip) or the
# forward's own, each reward scaling, and sampling temperatures 1 and 0.7
# (log-probs of logits/T, the reference's too); for each DPO loss against the
# perturbed reference model (on the fly, precomputed, one pair per
# micro-batch, two MPI ranks); within 1e-5 of each tensor's scale.
. "$QW_SRCDIR/tests/tools/lib.sh"
plan 30
cd "$tmp"
G=$QW_SRCDIR/tests/golden
P=$G/post
par() { python3 "$QW_SRCDIR/tests/tools/post_parity.py" "$@"; }
# name  loss-type  beta  old-from-rollout  scale-rewards  temperature
while read -r name lt beta old scale temp; do
    extra=()
    [ "$old" = 1 ] && extra+=(--old-from-rollout)
    [ "$beta" != 0 ] && extra+=(--ref "$P/ref_model")
    expect_status "qw-grpo $name" 0 qw-grpo -m "$G/dense_tied/model" -o o_$name --loss-type $lt --beta $beta \
        --scale-rewards $scale --epsilon 0.2 --epsilon-high 0.28 --max-completion-length 8 "${extra[@]}" \
        --temperature $temp --dump-grads g_$name.st --log m_$name.jsonl --threads 1 -q "$P/grpo_t$temp.jsonl"
    check "$name: loss and every gradient equal PyTorch's" par $name g_$name.st m_$name.jsonl 1e-5
done <<'CASES'
grpo_dapo dapo 0 0 group 1
grpo_dapo_kl_old dapo 0.04 1 group 1
grpo_grpo_kl_old grpo 0.04 1 group 1
grpo_bnpo_old bnpo 0 1 batch 1
grpo_drgrpo_kl_old dr_grpo 0.04 1 none 1
grpo_grpo grpo 0 0 group 1
grpo_dapo_kl_old_t07 dapo 0.04 1 group 0.7
grpo_grpo_old_t07 grpo 0 1 group 0.7
CASES
# micro-batches of 16 token positions: the same step
expect_status "qw-grpo grpo_grpo_kl_old, micro-batches of 16 tokens" 0 qw-grpo -m "$G/dense_tied/model" -o o_mb \
    --loss-type grpo --beta 0.04 --ref "$P/ref_model" --old-from-rollout --epsilon 0.2 --epsilon-high 0.28 \
    --micro-batch-tokens 16 --dump-grads g_mb.st --log m_mb.jsonl --threads 1 -q "$P/grpo_t1.jsonl"
check "micro-batched: loss and every gradient equal PyTorch's" par grpo_grpo_kl_old g_mb.st m_mb.jsonl 1e-5

# DPO: the four pairs in one step, the reference model beside the policy
# name  loss-type  beta  label-smoothing
while read -r name lt beta eps; do
    expect_status "qw-dpo $name" 0 qw-dpo -m "$G/dense_tied/model" --ref "$P/ref_model" -o o_$name --loss-type $lt \
        --beta $beta --label-smoothing $eps --batch-pairs 4 --dump-grads g_$name.st --log m_$name.jsonl --threads 1 -q "$P/dpo.jsonl"
    check "$name: loss and every gradient equal PyTorch's" par $name g_$name.st m_$name.jsonl 1e-5
done <<'CASES'
dpo_sigmoid sigmoid 0.1 0
dpo_hinge hinge 0.5 0
dpo_ipo ipo 0.1 0
dpo_robust robust 0.1 0.1
CASES
expect_status "qw-dpo dpo_ipo, one pair per micro-batch, reference precomputed" 0 qw-dpo -m "$G/dense_tied/model" \
    --ref "$P/ref_model" -o o_dmb --loss-type ipo --beta 0.1 --batch-pairs 4 --micro-batch-pairs 1 --precompute-ref \
    --dump-grads g_dmb.st --log m_dmb.jsonl --threads 1 -q "$P/dpo.jsonl"
check "micro-batched, precomputed: loss and every gradient equal PyTorch's" par dpo_ipo g_dmb.st m_dmb.jsonl 1e-5
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 \
       OMPI_MCA_btl=self,vader,tcp OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_plm_rsh_agent=false
expect_status "qw-dpo dpo_robust on 3 MPI ranks" 0 timeout 120 mpirun -np 3 --oversubscribe qw-dpo -m "$G/dense_tied/model" \
    --ref "$P/ref_model" -o o_dmpi --loss-type robust --beta 0.1 --label-smoothing 0.1 --batch-pairs 4 \
    --dump-grads g_dmpi.st --log m_dmpi.jsonl --threads 1 -q "$P/dpo.jsonl"
check "3 ranks: loss and every gradient equal PyTorch's" par dpo_robust g_dmpi.st m_dmpi.jsonl 1e-5
