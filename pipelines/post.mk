# pipelines/post.mk — the demo's post-training: Qwen3's four stages on the
# pretrained dense model, for a small verifiable task (pipelines/gen_corpus.py
# --stage cot and problems: addition and subtraction of 2- to TASK_DIGITS-digit
# numbers, bare or as a word problem, answered after a column-by-column trace
# in <think>…</think> with "The answer is \boxed{N}"):
#
#   cold    cold-start SFT on worked problems that think (pipelines/sft.mk)
#   grpo    reasoning RL: GRPO_ITERS iterations of offline GRPO on new
#           problems, GRPO_G samples each at temperature 1, rewarded by
#           qw-reward --verifier math (pipelines/grpo_loop.sh)
#   fusion  thinking-mode fusion SFT from the GRPO policy (pipelines/sft.mk:
#           /no_think with an empty think block for NO_THINK_FRAC of the
#           conversations)
#   dpo     DPO on pairs of the fusion model's own samples, ranked by the math
#           verifier: a right answer chosen, a wrong one rejected
#           (pipelines/dpo_pairs.py, qw-dpo)
#   eval    held-out accuracy, greedy, in thinking and non-thinking mode
#
# The held-out problems ($(HELDOUT), demo.mk: their own seed, generated
# first) are excluded from every file trained on: the pretraining corpus,
# the SFT conversations, the GRPO and DPO prompts.  The accuracy before and
# after GRPO is on them.
#
# Included by pipelines/demo.mk, which sets the sizes.  Outputs under
# $(OUT): tasks/ (the problems), ckpt/sft/{cold,fusion}, ckpt/grpo/it-NNN,
# ckpt/dpo (checkpoints; each stage with `done` once finished), logs/
# (metrics), eval/*.jsonl (the held-out completions, scored), dpo/ (samples
# and pairs).  demo_report.py turns them into report.md and summary.json.

CHAT_BASE   = $(OUT)/ckpt/chat-base
TASKS       = $(OUT)/tasks
TASK_MAX_NEW ?= 160
GRPO_FINAL  = $(OUT)/ckpt/grpo/it-$(shell printf %03d $(GRPO_ITERS))
HAVE_DPO   := $(wildcard $(QW_BIN)/qw-dpo)
FINAL       = $(if $(HAVE_DPO),$(OUT)/ckpt/dpo,$(OUT)/ckpt/sft/fusion)

# the supervised stages: sft.mk, the cold start from the pretrained model,
# fusion from the GRPO policy
SFT_FROM     = --model $(CHAT_BASE)
COT_DATA     = $(TASKS)/cot.jsonl
FUSION_DATA  = $(TASKS)/fusion-src.jsonl
FUSION_FROM  = $(GRPO_FINAL)
FUSION_AFTER = $(OUT)/ckpt/grpo/done
include pipelines/sft.mk

POST_EVALS = sft-think grpo-think fusion-think fusion-off $(if $(HAVE_DPO),dpo-think dpo-off)

TIMED = pipelines/timed.sh $(OUT)/times/

.PHONY: post
post: $(foreach e,$(POST_EVALS),$(OUT)/eval/$(e).jsonl)

# the chat model's base: the pretrained dense model with <|im_end|>, the
# token that closes an assistant turn, as its end-of-sequence id (as
# Qwen3's post-trained configs have it): sampling stops there and GRPO
# learns up to it
$(CHAT_BASE)/config.json: $(OUT)/ckpt/dense/s3/done
	rm -rf $(@D)
	$(QW)qw-ckpt export $(OUT)/ckpt/dense/s3 -o $(@D) --dtype f32
	eos=$$(printf '<|im_end|>' | $(QW)qw-tokenize -t $(TOKENIZER) --ids -q) && \
	$(PY) -c 'import json, sys; c = json.load(open(sys.argv[1])); c["eos_token_id"] = int(sys.argv[2]); \
	    open(sys.argv[1], "w").write(json.dumps(c, indent=2) + "\n")' $@ $$eos
$(OUT)/sft/data/cold/index.json: $(CHAT_BASE)/config.json

$(TASKS)/cot.jsonl: $(HELDOUT)
	$(PY) pipelines/gen_corpus.py --stage cot --docs $(COT_N) --seed 11 $(TASK_OPTS) >$@
$(TASKS)/grpo.jsonl: $(HELDOUT)
	$(PY) pipelines/gen_corpus.py --stage problems --docs $(shell echo $$(($(GRPO_ITERS) * $(GRPO_PROMPTS)))) \
	    --seed 12 $(TASK_OPTS) >$@
$(TASKS)/dpo.jsonl: $(HELDOUT)
	$(PY) pipelines/gen_corpus.py --stage problems --docs $(DPO_PROMPTS) --seed 13 $(TASK_OPTS) >$@
$(TASKS)/fusion-src.jsonl: $(HELDOUT)
	$(PY) pipelines/gen_corpus.py --stage cot --docs $(FUSION_N) --seed 14 $(TASK_OPTS) >$@

# GRPO: a stage rebuilt (its inputs changed) starts afresh; one interrupted
# resumes at its first unfinished iteration
$(OUT)/ckpt/grpo/done: $(OUT)/ckpt/sft/cold/done $(TASKS)/grpo.jsonl
	if [ -e $@ ]; then rm -rf $(@D); fi
	QW_BIN=$(QW_BIN) THREADS=$(THREADS) MAX_NEW=$(TASK_MAX_NEW) SEED=1 pipelines/grpo_loop.sh \
	    $(OUT)/ckpt/sft/cold/$$(cat $(OUT)/ckpt/sft/cold/latest) $(TASKS)/grpo.jsonl $(@D) \
	    $(GRPO_ITERS) $(GRPO_PROMPTS) $(GRPO_G) -- $(GRPO_OPTS)
	touch $@

# DPO: the fusion model samples DPO_SAMPLES answers to each prompt; pairs
# of a right and a wrong one train it against itself as the reference
$(OUT)/dpo/scored.jsonl: $(OUT)/ckpt/sft/fusion/done $(TASKS)/dpo.jsonl
	@mkdir -p $(@D) $(OUT)/times && rm -f $(OUT)/times/dpo
	$(TIMED)dpo $(QW)qw-rollout -m $(OUT)/ckpt/sft/fusion/$$(cat $(OUT)/ckpt/sft/fusion/latest) -p $(TASKS)/dpo.jsonl \
	    --chat -n $(DPO_SAMPLES) --temperature 1 --max-new-tokens $(TASK_MAX_NEW) --seed 3 \
	    --threads $(THREADS) -q -o $(OUT)/dpo/rollouts.jsonl
	$(TIMED)dpo $(QW)qw-reward --verifier math -q -o $@ $(OUT)/dpo/rollouts.jsonl
$(OUT)/dpo/pairs.jsonl: $(OUT)/dpo/scored.jsonl
	$(PY) pipelines/dpo_pairs.py $< >$@
# (no pair at all — every prompt's samples all right or all wrong, as with
# the smoke run's untrained model — leaves the fusion model as it is)
$(OUT)/ckpt/dpo/done: $(OUT)/dpo/pairs.jsonl
	rm -rf $(@D) $(OUT)/logs/dpo.jsonl && mkdir -p $(OUT)/logs
	fusion=$(OUT)/ckpt/sft/fusion/$$(cat $(OUT)/ckpt/sft/fusion/latest); \
	if [ -s $< ]; then \
	    $(TIMED)dpo $(QW)qw-dpo -m $$fusion -o $(@D) --ref $$fusion --beta $(DPO_BETA) --lr $(DPO_LR) \
	        --steps $(DPO_STEPS) --batch-pairs $(DPO_BATCH) --log $(OUT)/logs/dpo.jsonl --threads $(THREADS) -q $<; \
	else \
	    echo "post.mk: no preference pairs in $<: DPO skipped, the fusion model kept" >&2; \
	    mkdir -p $(@D) && cp -r $$fusion $(@D)/step-000000 && echo step-000000 >$(@D)/latest && \
	    : >$(OUT)/logs/dpo.jsonl; \
	fi
	touch $@

# held-out accuracy: greedy completions of every held-out problem, thinking
# on or off (the chat template's enable_thinking), scored by the verifier.
# $(call heldout,MODEL-OUT-DIR,on|off)
define heldout
	@mkdir -p $(@D) $(OUT)/times && rm -f $(OUT)/times/eval-$(notdir $(basename $@))
	$(TIMED)eval-$(notdir $(basename $@)) $(QW)qw-rollout -m $(1)/$$(cat $(1)/latest) -p $(HELDOUT) --chat --thinking $(2) --temperature 0 \
	    --max-new-tokens $(TASK_MAX_NEW) --threads $(THREADS) -q -o $(@:.jsonl=.rollouts)
	$(TIMED)eval-$(notdir $(basename $@)) $(QW)qw-reward --verifier math -q -o $@ $(@:.jsonl=.rollouts)
endef

$(OUT)/eval/sft-think.jsonl: $(OUT)/ckpt/sft/cold/done $(HELDOUT)
	$(call heldout,$(OUT)/ckpt/sft/cold,on)
$(OUT)/eval/grpo-think.jsonl: $(OUT)/ckpt/grpo/done $(HELDOUT)
	$(call heldout,$(GRPO_FINAL),on)
$(OUT)/eval/fusion-think.jsonl: $(OUT)/ckpt/sft/fusion/done $(HELDOUT)
	$(call heldout,$(OUT)/ckpt/sft/fusion,on)
$(OUT)/eval/fusion-off.jsonl: $(OUT)/ckpt/sft/fusion/done $(HELDOUT)
	$(call heldout,$(OUT)/ckpt/sft/fusion,off)
$(OUT)/eval/dpo-think.jsonl: $(OUT)/ckpt/dpo/done $(HELDOUT)
	$(call heldout,$(OUT)/ckpt/dpo,on)
$(OUT)/eval/dpo-off.jsonl: $(OUT)/ckpt/dpo/done $(HELDOUT)
	$(call heldout,$(OUT)/ckpt/dpo,off)
