# pipelines/recipe.mk — the three pretraining stages of Qwen3, as a recipe.
#
# Included by pipelines/demo.mk (tiny, CPU), which sets the variables
# below; a full-size run sets real sizes the same way.  Every stage starts from the
# previous stage's latest checkpoint; context length, RoPE base, data and
# schedule are settings here, not code.
#
#   S1  general text, 4k context: warmup + cosine (or WSD) over most tokens
#   S2  reasoning and code: same context, a shorter run with a faster decay
#   S3  long context: longer rows, RoPE base raised (ABF), YaRN available
#
# Inputs: $(OUT)/data/s1 s2 s3 (qw-pack directories), $(TOKENIZER).
# Outputs: $(OUT)/ckpt/$(MODEL)/s1 s2 s3 (each with a marker file `done`
# once finished), $(OUT)/logs/$(MODEL)-sN.jsonl,
# TensorBoard files under $(OUT)/tb/$(MODEL)-sN.

QW_BIN    ?= bin
QW         = $(QW_BIN)/
MPIRUN    ?=
TRAIN_OPTS ?=

# per stage: sequence length, global batch (tokens), steps, peak lr, warmup,
# schedule, RoPE base (empty: keep), extra options
S1_T ?= 4096
S1_BATCH ?= 1M
S1_STEPS ?= 10000
S1_LR ?= 3e-4
S1_WARMUP ?= 1000
S1_SCHED ?= --schedule cosine --min-lr-ratio 0.1
S1_EXTRA ?=

S2_T ?= $(S1_T)
S2_BATCH ?= $(S1_BATCH)
S2_STEPS ?= 2000
S2_LR ?= $(S1_LR)
S2_WARMUP ?= 0
S2_SCHED ?= --schedule wsd --decay-frac 0.5 --decay-shape sqrt --min-lr-ratio 0.01
S2_EXTRA ?=

S3_T ?= 32768
S3_BATCH ?= $(S1_BATCH)
S3_STEPS ?= 500
S3_LR ?= 1e-4
S3_WARMUP ?= 50
S3_SCHED ?= --schedule cosine --min-lr-ratio 0.1
S3_THETA ?= 1000000
S3_EXTRA ?=

EVAL_EVERY ?= 100
SAVE_EVERY ?= 1000

# A stage is finished when $(OUT)/ckpt/MODEL/sN/done exists: it is written
# after qw-pretrain exits 0, which it does only after its last step, and the
# next stage depends on it, so it never starts from a partial checkpoint.
# A stage interrupted by SIGINT or SIGTERM (qw-pretrain saves and exits 130
# or 143) or killed has a checkpoint but no marker: running make again
# resumes it from its latest checkpoint (qw-pretrain --resume, the same
# settings) and, on the CPU, ends with the same bits as an uninterrupted
# run.  A stage without a checkpoint, or a finished one that make rebuilds
# because its inputs changed, starts afresh.
#
# $(call stage,MODEL,N,FROM-OPTION,T,BATCH,STEPS,LR,WARMUP,SCHED,EXTRA)
define stage
	@mkdir -p $(OUT)/logs $(OUT)/ckpt/$(1) $(OUT)/tb
	if [ ! -e $@ ] && [ -e $(@D)/latest ]; then from="--resume $(@D)"; \
	else rm -rf $(OUT)/logs/$(1)-s$(2).jsonl $(@D) $(OUT)/tb/$(1)-s$(2); from="$(3)"; fi; \
	$(MPIRUN) $(QW)qw-pretrain $$from --data $(OUT)/data/s$(2) --tokenizer $(TOKENIZER) \
	    -T $(4) --batch-tokens $(5) --steps $(6) --lr $(7) --warmup $(8) $(9) $(10) \
	    --eval-every $(EVAL_EVERY) --save-every $(SAVE_EVERY) --keep-last 1 \
	    --out $(@D) --log $(OUT)/logs/$(1)-s$(2).jsonl --tensorboard $(OUT)/tb/$(1)-s$(2) $(TRAIN_OPTS)
	touch $@
endef

$(OUT)/ckpt/%/s1/done: $(OUT)/data/s1/index.json
	$(call stage,$*,1,--config $(CONFIG_$*),$(S1_T),$(S1_BATCH),$(S1_STEPS),$(S1_LR),$(S1_WARMUP),$(S1_SCHED),$(S1_EXTRA))

$(OUT)/ckpt/%/s2/done: $(OUT)/ckpt/%/s1/done $(OUT)/data/s2/index.json
	$(call stage,$*,2,--model $(OUT)/ckpt/$*/s1,$(S2_T),$(S2_BATCH),$(S2_STEPS),$(S2_LR),$(S2_WARMUP),$(S2_SCHED),$(S2_EXTRA))

$(OUT)/ckpt/%/s3/done: $(OUT)/ckpt/%/s2/done $(OUT)/data/s3/index.json
	$(call stage,$*,3,--model $(OUT)/ckpt/$*/s2 $(if $(S3_THETA),--rope-theta $(S3_THETA)),$(S3_T),$(S3_BATCH),$(S3_STEPS),$(S3_LR),$(S3_WARMUP),$(S3_SCHED),$(S3_EXTRA))
