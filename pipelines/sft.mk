# pipelines/sft.mk — the two supervised stages of Qwen3's post-training, as
# a recipe (the reinforcement-learning stages between and after them come
# with qw-grpo and qw-dpo).
#
#   cold    long chain-of-thought cold start: a short SFT run on verified
#           problems whose answers think first (<think>…</think>), from the
#           pretrained model, deliberately few samples and steps;
#   fusion  thinking-mode fusion: continual SFT, from the cold start or from
#           the reasoning-RL model (FUSION_FROM), on a mix of thinking answers and
#           non-thinking ones — " /no_think" in the user turn and an empty
#           "<think>\n\n</think>\n\n" block, the block Qwen3's template
#           writes for enable_thinking=false — with " /think" on some of
#           the thinking ones (thinking is the default).  NO_THINK_FRAC is
#           the mixing ratio: the fraction of conversations made
#           non-thinking (pipelines/fuse_modes.py).
#
# Both stages learn the assistant turns only (qw-pack --chat: loss masks;
# qw-sft: the mean over the masked-in tokens of each global batch).
#
# Inputs:  SFT_FROM (default --model $(SFT_BASE): a checkpoint or a run's
#          OUT directory), TOKENIZER (its tokenizer.json or directory),
#          COT_DATA (chat JSONL with reasoning), FUSION_DATA (chat JSONL
#          whose answers think; default COT_DATA), FUSION_FROM (the
#          checkpoint fusion starts from; default the cold start's) and
#          FUSION_AFTER (the marker it waits for; default the cold start's
#          `done`).
# Outputs: $(OUT)/sft/data/{cold,fusion} (qw-pack directories),
#          $(OUT)/sft/fusion.jsonl, $(OUT)/ckpt/sft/{cold,fusion} (each
#          with `done` once finished), $(OUT)/logs/sft-{cold,fusion}.jsonl.
#
#   make -f pipelines/sft.mk OUT=run SFT_BASE=run/ckpt/dense/s3 \
#       TOKENIZER=run/tokenizer COT_DATA=cot.jsonl
#
# A stage stopped by SIGINT or SIGTERM resumes when make runs again, as in
# pipelines/recipe.mk.

QW_BIN    ?= bin
QW         = $(QW_BIN)/
PY        ?= python3
MPIRUN    ?=
OUT       ?= sft-run
SFT_BASE  ?=
SFT_FROM  ?= --model $(SFT_BASE)
TOKENIZER ?=
COT_DATA  ?=
FUSION_DATA ?= $(COT_DATA)
FUSION_FROM ?= $(OUT)/ckpt/sft/cold
FUSION_AFTER ?= $(OUT)/ckpt/sft/cold/done
TRAIN_OPTS ?=

SFT_T ?= 4096
SFT_VAL_FRAC ?= 0.02
COLD_BATCH ?= 256k
COLD_STEPS ?= 200
COLD_LR ?= 2e-5
COLD_WARMUP ?= 10
FUSION_BATCH ?= $(COLD_BATCH)
FUSION_STEPS ?= 400
FUSION_LR ?= 1e-5
FUSION_WARMUP ?= 10
NO_THINK_FRAC ?= 0.3
THINK_FLAG_FRAC ?= 0.5
SFT_EVAL_EVERY ?= 50
SFT_SAVE_EVERY ?= 100
SFT_SEED ?= 1

.PHONY: sft sft-cold sft-fusion
.DELETE_ON_ERROR:
.SECONDARY:

sft: $(OUT)/ckpt/sft/fusion/done
sft-cold: $(OUT)/ckpt/sft/cold/done
sft-fusion: $(OUT)/ckpt/sft/fusion/done

$(OUT)/sft/fusion.jsonl: $(FUSION_DATA)
	@mkdir -p $(@D)
	$(PY) pipelines/fuse_modes.py --no-think-frac $(NO_THINK_FRAC) --think-flag-frac $(THINK_FLAG_FRAC) \
	    --seed $(SFT_SEED) $< >$@

$(OUT)/sft/data/cold/index.json: $(COT_DATA)
	@mkdir -p $(OUT)/sft/data
	$(QW)qw-pack -q -T $(SFT_T) --mode sft --chat --tokenizer $(TOKENIZER) --val-frac $(SFT_VAL_FRAC) \
	    --seed $(SFT_SEED) -o $(@D) $<
$(OUT)/sft/data/fusion/index.json: $(OUT)/sft/fusion.jsonl
	@mkdir -p $(OUT)/sft/data
	$(QW)qw-pack -q -T $(SFT_T) --mode sft --chat --tokenizer $(TOKENIZER) --val-frac $(SFT_VAL_FRAC) \
	    --seed $(SFT_SEED) -o $(@D) $<

# $(call sft_stage,NAME,FROM-OPTION,BATCH,STEPS,LR,WARMUP): resume the
# stage from its checkpoint when it has one and no `done`, else start afresh
define sft_stage
	@mkdir -p $(OUT)/logs $(OUT)/ckpt/sft
	if [ ! -e $@ ] && [ -e $(@D)/latest ]; then from="--resume $(@D)"; \
	else rm -rf $(OUT)/logs/sft-$(1).jsonl $(@D); from="$(2)"; fi; \
	$(MPIRUN) $(QW)qw-sft $$from --data $(OUT)/sft/data/$(1) --tokenizer $(TOKENIZER) -T $(SFT_T) \
	    --batch-tokens $(3) --steps $(4) --lr $(5) --warmup $(6) --eval-every $(SFT_EVAL_EVERY) \
	    --save-every $(SFT_SAVE_EVERY) --keep-last 1 --out $(@D) --log $(OUT)/logs/sft-$(1).jsonl $(TRAIN_OPTS)
	touch $@
endef

$(OUT)/ckpt/sft/cold/done: $(OUT)/sft/data/cold/index.json
	$(call sft_stage,cold,$(SFT_FROM),$(COLD_BATCH),$(COLD_STEPS),$(COLD_LR),$(COLD_WARMUP))

$(OUT)/ckpt/sft/fusion/done: $(FUSION_AFTER) $(OUT)/sft/data/fusion/index.json
	$(call sft_stage,fusion,--model $(FUSION_FROM),$(FUSION_BATCH),$(FUSION_STEPS),$(FUSION_LR),$(FUSION_WARMUP))
