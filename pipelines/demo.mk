# pipelines/demo.mk — the demo pipeline, on the CPU of a small machine:
#
#   generated corpus (pipelines/gen_corpus.py: general, reasoning, long)
#   → qw-tokenize --train (byte-level BPE, Qwen special tokens)
#   → qw-tokenize → qw-pack (S1/S2 rows of 256 tokens, S3 rows of 1024)
#   → qw-pretrain S1 → S2 → S3 (RoPE base raised for S3), for a tiny dense
#     Qwen3 and its MoE twin
#   → a report: validation loss before and after every stage, tokens/s, time
#     (demo/report.md), and the training curves of both models, the three
#     stages joined, drawn by qw-eval plot (demo/loss.svg and demo/loss.png).
#
#   make demo                       # the whole thing, a few minutes on 2 cores
#   make demo DEMO_SIZE=smoke       # seconds: what the test suite runs
#   make -f pipelines/demo.mk OUT=/tmp/d QW_BIN=bin report
#
# No network, no GPU, nothing outside this repository and Debian packages.

QW_BIN    ?= bin
OUT       ?= demo
DEMO_SIZE ?= full
PY        ?= python3
MODELS    ?= dense moe
THREADS   ?= 0
TOKENIZER  = $(OUT)/tokenizer

ifeq ($(DEMO_SIZE),smoke)
DOCS_GENERAL = 600
DOCS_REASONING = 300
DOCS_LONG = 20
VOCAB = 600
S1_T = 64
S1_BATCH = 512
S1_STEPS = 6
S2_STEPS = 3
S3_T = 128
S3_BATCH = 512
S3_STEPS = 2
EVAL_EVERY = 3
HELDOUT_N = 16
S1_WARMUP = 2
COT_N = 200
FUSION_N = 100
SFT_T = 128
COLD_BATCH = 512
COLD_STEPS = 6
FUSION_STEPS = 3
GRPO_ITERS = 2
GRPO_PROMPTS = 4
GRPO_G = 4
TASK_MAX_NEW = 32
DPO_PROMPTS = 8
DPO_SAMPLES = 4
DPO_STEPS = 2
DPO_BATCH = 2
COLD_WARMUP = 1
SFT_EVAL_EVERY = 3
SFT_VAL_FRAC = 0.1
S3_WARMUP = 0
else
DOCS_GENERAL = 8000
DOCS_REASONING = 4000
DOCS_LONG = 250
VOCAB = 2048
S1_T = 256
S1_BATCH = 4096
S1_STEPS = 100
S2_STEPS = 40
S3_T = 1024
S3_BATCH = 4096
S3_STEPS = 16
EVAL_EVERY = 20
HELDOUT_N = 500
COT_N = 8000
FUSION_N = 2000
SFT_T = 128
COLD_BATCH = 1024
COLD_STEPS = 500
FUSION_STEPS = 100
GRPO_ITERS = 24
GRPO_PROMPTS = 16
GRPO_G = 8
TASK_MAX_NEW = 96
DPO_PROMPTS = 128
DPO_SAMPLES = 4
DPO_STEPS = 20
DPO_BATCH = 8
endif

# the post-training task (pipelines/post.mk): operands of 2 to TASK_DIGITS
# digits, TASK_WORD_FRAC of them word problems; HELDOUT_N problems never
# trained on
TASK_DIGITS ?= 2
TASK_WORD_FRAC ?= 0
HELDOUT = $(OUT)/tasks/heldout.jsonl
TASK_OPTS = --max-digits $(TASK_DIGITS) --word-frac $(TASK_WORD_FRAC) --exclude $(HELDOUT)

S1_LR = 3e-3
S1_WARMUP ?= 16
S1_SCHED = --schedule cosine --min-lr-ratio 0.1
S2_LR = 1e-3
S2_SCHED = --schedule wsd --decay-frac 0.5 --decay-shape sqrt --min-lr-ratio 0.05
# post-training (pipelines/post.mk, pipelines/sft.mk): SFT rows, learning
# rates; GRPO: ITERS iterations of PROMPTS prompts × G samples; DPO: pairs
# from PROMPTS prompts × SAMPLES samples, BATCH pairs a step
SFT_VAL_FRAC ?= 0.02
COLD_LR = 2e-3
COLD_WARMUP ?= 10
FUSION_BATCH = $(COLD_BATCH)
FUSION_LR = 5e-4
FUSION_WARMUP = 0
NO_THINK_FRAC = 0.5
SFT_EVAL_EVERY ?= 100
SFT_SAVE_EVERY = 0
GRPO_OPTS = --lr 1e-4
DPO_BETA = 0.1
DPO_LR = 1e-4

S3_LR = 5e-4
S3_WARMUP ?= 4
S3_THETA = 40000
SAVE_EVERY = 0
CONFIG_dense = pipelines/configs/demo-dense.json
CONFIG_moe = pipelines/configs/demo-moe.json
TRAIN_OPTS = --threads $(THREADS) --eval-rows 64 -q

.PHONY: all report clean
.DELETE_ON_ERROR:
.SECONDARY:

# qw-eval plot runs: MODEL=S1-LOG,S2-LOG,S3-LOG for each model
comma := ,
PLOT_RUNS = $(foreach m,$(MODELS),$(m)=$(subst $(eval) ,$(comma),$(foreach s,1 2 3,$(OUT)/logs/$(m)-s$(s).jsonl)))

DPO_PLOT_KEYS = loss,rewards/margins,rewards/accuracies,rewards/chosen,rewards/rejected
define report
	$(PY) pipelines/demo_report.py --out $(OUT) --models "$(MODELS)" --post
	$(QW_BIN)/qw-eval plot $(PLOT_RUNS) --keys loss,val_loss,lr,grad_norm,tok_per_s \
	    --title "qw demo: S1 S2 S3" -o $(OUT)/loss.svg --png $(OUT)/loss.png
	$(QW_BIN)/qw-eval plot grpo=$(OUT)/logs/grpo.jsonl --keys reward_mean,loss,frac_reward_zero_std,completion_length \
	    --title "qw demo: GRPO, per iteration" -o $(OUT)/grpo.svg --png $(OUT)/grpo.png
	$(if $(HAVE_DPO),if [ -s $(OUT)/logs/dpo.jsonl ]; then $(QW_BIN)/qw-eval plot dpo=$(OUT)/logs/dpo.jsonl \
	    --title "qw demo: DPO" --keys $(DPO_PLOT_KEYS) \
	    -o $(OUT)/dpo.svg --png $(OUT)/dpo.png; fi)
endef

all: $(foreach m,$(MODELS),$(OUT)/ckpt/$(m)/s3/done) post
	$(report)

report:
	$(report)

$(OUT)/corpus/general.jsonl:
	@mkdir -p $(@D)
	$(PY) pipelines/gen_corpus.py --stage general --docs $(DOCS_GENERAL) --seed 1 >$@
$(OUT)/corpus/reasoning.jsonl: $(HELDOUT)
	@mkdir -p $(@D)
	$(PY) pipelines/gen_corpus.py --stage reasoning --docs $(DOCS_REASONING) --seed 1 $(TASK_OPTS) >$@
$(OUT)/corpus/long.jsonl:
	@mkdir -p $(@D)
	$(PY) pipelines/gen_corpus.py --stage long --docs $(DOCS_LONG) --seed 1 >$@

# the tokenizer learns from held-in text of the first two stages (seed 2)
$(OUT)/corpus/tok-train.jsonl: $(HELDOUT)
	@mkdir -p $(@D)
	{ $(PY) pipelines/gen_corpus.py --stage general --docs $(DOCS_GENERAL) --seed 2; \
	  $(PY) pipelines/gen_corpus.py --stage reasoning --docs $(DOCS_REASONING) --seed 2 $(TASK_OPTS); } >$@

$(TOKENIZER)/tokenizer.json: $(OUT)/corpus/tok-train.jsonl
	$(QW_BIN)/qw-tokenize --train --vocab-size $(VOCAB) --jsonl -o $(TOKENIZER) -q $<

$(OUT)/streams/%.qwt: $(OUT)/corpus/%.jsonl $(TOKENIZER)/tokenizer.json
	@mkdir -p $(@D)
	$(QW_BIN)/qw-tokenize -t $(TOKENIZER)/tokenizer.json --jsonl --add-eos -q -o $@ $<

# S1: general text; S2: reasoning and code with some general text mixed in;
# S3: long documents
$(OUT)/data/s1/index.json: $(OUT)/streams/general.qwt
	rm -rf $(@D) && mkdir -p $(OUT)/data
	$(QW_BIN)/qw-pack -q -T $(S1_T) --val-frac 0.05 --seed 1 -o $(@D) $<
$(OUT)/data/s2/index.json: $(OUT)/streams/reasoning.qwt $(OUT)/streams/general.qwt
	rm -rf $(@D) && mkdir -p $(OUT)/data
	$(QW_BIN)/qw-pack -q -T $(S1_T) --val-frac 0.05 --seed 2 -o $(@D) $^
$(OUT)/data/s3/index.json: $(OUT)/streams/long.qwt
	rm -rf $(@D) && mkdir -p $(OUT)/data
	$(QW_BIN)/qw-pack -q -T $(S3_T) --val-frac 0.1 --seed 3 -o $(@D) $<

# the post-training task's held-out problems: generated first, from their
# own seed; every other file of the task excludes their questions
$(HELDOUT):
	@mkdir -p $(@D)
	$(PY) pipelines/gen_corpus.py --stage problems --docs $(HELDOUT_N) --seed 100 --max-digits $(TASK_DIGITS) \
	    --word-frac $(TASK_WORD_FRAC) >$@

clean:
	rm -rf $(OUT)

include pipelines/recipe.mk
include pipelines/post.mk
