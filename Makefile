# qw — build, test, install.  `make help` lists the targets.
#
# The CPU build always happens; the CUDA parts build when nvcc is found or
# CUDA=1 is given (CUDA=0 turns them off).  V=1 shows the full commands.

PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR   = $(PREFIX)/bin
MANDIR   = $(PREFIX)/share/man

CC      ?= cc
NVCC    ?= nvcc
OPT     ?= -O2
CFLAGS  ?= $(OPT) -g -Wall -Wextra -Wno-unused-parameter
QW_CFLAGS = -std=gnu11 -fopenmp -Ilibcore/include -I/usr/include/cjson \
            -I/usr/include/x86_64-linux-gnu/openblas-pthread \
            $(shell mpicc --showme:compile 2>/dev/null)
QW_LIBS   = -lpcre2-8 -lutf8proc -lcjson -larchive -lzstd -lopenblas -lpng -ljpeg -lseccomp \
            $(shell mpicc --showme:link 2>/dev/null) -lm -lpthread
LDFLAGS ?=

ifeq ($(V),1)
Q =
else
Q = @
endif

ifeq ($(origin CUDA),undefined)
CUDA := $(if $(shell command -v $(NVCC) 2>/dev/null),1,0)
endif

LIB        = libcore/libqwcore.a
LIB_SRC    = $(wildcard libcore/*.c) $(wildcard kernels/cpu/*.c)
LIB_OBJ    = $(patsubst %.c,build/%.o,$(LIB_SRC))
TOOL_SRC   = $(wildcard tools/qw-*.c)
TOOLS      = $(patsubst tools/%.c,bin/%,$(TOOL_SRC))
UNIT_SRC   = $(wildcard tests/unit/test_*.c)
UNITS      = $(patsubst tests/unit/%.c,build/tests/%,$(UNIT_SRC))
HEADERS    = $(wildcard libcore/include/qw/*.h) $(wildcard libcore/*.h) $(wildcard kernels/cpu/*.h) $(wildcard kernels/*.h kernels/cuda/*.cuh kernels/cuda/*.h)

# NCCL (kernels/cuda/nccl.cu, qw/comm.h's "nccl" kind) when its header is found
NCCL_H    := $(firstword $(wildcard /usr/local/cuda/include/nccl.h /usr/include/nccl.h))
CUDA_SRC   = $(filter-out $(if $(NCCL_H),,kernels/cuda/nccl.cu),$(wildcard kernels/cuda/*.cu))
CUDA_OBJ   = $(patsubst %.cu,build/%.o,$(CUDA_SRC))
CUDA_LIB   = kernels/cuda/libqwcuda.a
# --default-stream per-thread: the ops run on the per-thread default stream,
# which CUDA graphs can record (the legacy stream 0 cannot be captured)
NVCCFLAGS ?= -O3 -gencode=arch=compute_90a,code=sm_90a -std=c++17 --default-stream per-thread -Ilibcore/include -Xcompiler -fPIC
ifeq ($(CUDA),1)
ifneq ($(CUDA_SRC),)
ALL_CUDA   = $(CUDA_LIB)
QW_CFLAGS += -DQW_HAVE_CUDA=1
QW_LIBS   += -L/usr/local/cuda/lib64 $(if $(NCCL_H),-lnccl) -lcublasLt -lcublas -lcudart -lstdc++
QW_CFLAGS += $(if $(NCCL_H),-DQW_HAVE_NCCL=1)
endif
endif

.PHONY: all lib tools test test-unit test-tools test-gpu bench bench-tokenize bench-cpu bench-gpu demo report install uninstall clean help \
        fuzz fuzz-build
all: lib tools $(UNITS)

lib: $(LIB)
tools: $(TOOLS)

build/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) $(QW_CFLAGS) -c -o $@ $<

build/%.o: %.cu $(HEADERS)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  NVCC    $<")
	$(Q)$(NVCC) $(NVCCFLAGS) -c -o $@ $<

$(LIB): $(LIB_OBJ)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

$(CUDA_LIB): $(CUDA_OBJ)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

bin/%: tools/%.c $(LIB) $(ALL_CUDA) $(HEADERS)
	@mkdir -p bin
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(CFLAGS) $(QW_CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(ALL_CUDA) $(QW_LIBS)

build/tests/%: tests/unit/%.c tests/unit/qwtest.h $(LIB) $(ALL_CUDA) $(HEADERS)
	@mkdir -p build/tests
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(CFLAGS) $(QW_CFLAGS) $(LDFLAGS) -Itests/unit -o $@ $< $(LIB) $(ALL_CUDA) $(QW_LIBS)

# The whole CPU suite, as CI runs it.  The runner prints one closing line:
# "N passed, N failed".
test: all
	$(Q)QW_BIN=$(CURDIR)/bin bash tests/run.sh

test-unit: all
	$(Q)QW_BIN=$(CURDIR)/bin bash tests/run.sh unit

test-tools: all
	$(Q)QW_BIN=$(CURDIR)/bin bash tests/run.sh tools

test-gpu: all
	$(Q)QW_BIN=$(CURDIR)/bin bash tests/gpu/run.sh

bench-tokenize: all
	$(Q)QW_BIN=$(CURDIR)/bin bash tests/bench/tokenize.sh
	$(Q)QW_BIN=$(CURDIR)/bin bash tests/bench/tokenize_train.sh

bench-cpu: all
	$(Q)QW_BIN=$(CURDIR)/bin bash tests/bench/cpu_model.sh

# On a machine with an NVIDIA GPU, `make bench` runs the GPU benchmarks too.
HAVE_GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1)
bench: bench-tokenize bench-cpu $(if $(HAVE_GPU),bench-gpu)

# GPU machine: the flash-attention kernels against PyTorch SDPA, then
# qw-pretrain against PyTorch on Qwen3-0.6B/1.7B shapes, then qw-rollout
# against transformers generate on the same models.  No build step (the
# machine may lack the build's libraries): QW_BIN may name a bundle's
# programs and QW_GPU_BIN its test programs (tests/gpu/bundle.sh).
bench-gpu:
	$(Q)bash tests/bench/attn_cuda.sh $(or $(QW_GPU_BIN),build/gpu)
	$(Q)QW_BIN=$(or $(QW_BIN),$(CURDIR)/bin) bash tests/bench/train_cuda.sh
	$(Q)QW_BIN=$(or $(QW_BIN),$(CURDIR)/bin) bash tests/bench/rollout_cuda.sh
	$(Q)QW_BIN=$(or $(QW_BIN),$(CURDIR)/bin) bash tests/bench/mc_cuda.sh
	$(Q)QW_BIN=$(or $(QW_BIN),$(CURDIR)/bin) bash tests/bench/grpo_cuda.sh
	$(Q)QW_BIN=$(or $(QW_BIN),$(CURDIR)/bin) QW_BENCH_DATA=$(or $(QW_BENCH_DATA),build/bench-data) bash tests/bench/moe_cuda.sh

# Fuzzing (doc/fuzzing.md): one libFuzzer program per reader of outside
# bytes, tests/fuzz/fuzz_<target>.c, linked against libcore's C sources built
# again with clang and the address and undefined-behaviour sanitizers in
# build/fuzz/ (CUDA off).  `make test` runs each briefly
# (tests/tools/test_fuzz.sh); `make fuzz` runs each for FUZZ_SECONDS, FUZZ_JOBS
# at a time, keeping the corpus it grows in build/fuzz/corpus/<target> and
# what crashes in build/fuzz/crashes/<target>.
FUZZ_CC      ?= clang
FUZZ_CFLAGS  ?= -O1 -g -fno-omit-frame-pointer -Wall -Wextra -Wno-unused-parameter -Wno-pass-failed
FUZZ_SAN      = -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_QW_CFLAGS = $(filter-out -DQW_HAVE_CUDA=1 -DQW_HAVE_NCCL=1,$(QW_CFLAGS))
FUZZ_LIBS     = $(filter-out -L/usr/local/cuda/lib64 -lnccl -lcublasLt -lcublas -lcudart -lstdc++,$(QW_LIBS))
FUZZ_TARGETS  = $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS     = $(patsubst %,build/fuzz/fuzz_%,$(FUZZ_TARGETS))
FUZZ_LIB      = build/fuzz/libqwcore.a
FUZZ_OBJ      = $(patsubst %.c,build/fuzz/%.o,$(LIB_SRC))
FUZZ_SECONDS ?= 600
FUZZ_JOBS    ?= $(shell nproc 2>/dev/null || echo 1)

build/fuzz/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  FUZZCC  $<")
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer-no-link $(FUZZ_QW_CFLAGS) -c -o $@ $<

$(FUZZ_LIB): $(FUZZ_OBJ)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $(FUZZ_LIB) $(HEADERS)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer $(FUZZ_QW_CFLAGS) -Itests/fuzz -o $@ $< $(FUZZ_LIB) $(FUZZ_LIBS)

fuzz-build: $(FUZZ_BINS)

fuzz: fuzz-build
	$(Q)bash tests/fuzz/run.sh -s $(FUZZ_SECONDS) -j $(FUZZ_JOBS) -w build/fuzz $(FUZZ_TARGETS)

demo: all
	$(Q)$(MAKE) --no-print-directory -f pipelines/demo.mk QW_BIN=$(CURDIR)/bin

# A run's figures: every metrics JSONL in RUN and RUN/logs (qw-pretrain --log)
# drawn by qw-eval plot into RUN/metrics.svg and RUN/metrics.png.
RUN_LOGS = $(sort $(wildcard $(RUN)/*.jsonl $(RUN)/logs/*.jsonl))
report: tools
	$(Q)test -n "$(RUN)" || { echo "make report RUN=DIR: name the run's directory" >&2; exit 2; }
	$(Q)test -n "$(RUN_LOGS)" || { echo "make report: no metrics JSONL in '$(RUN)' or '$(RUN)/logs'" >&2; exit 3; }
	bin/qw-eval plot $(RUN_LOGS) -o $(RUN)/metrics.svg --png $(RUN)/metrics.png
	@echo "wrote $(RUN)/metrics.svg and $(RUN)/metrics.png"

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man7
	install -m 755 $(TOOLS) $(DESTDIR)$(BINDIR)
	for f in man/man1/*.1; do [ -e "$$f" ] && install -m 644 "$$f" $(DESTDIR)$(MANDIR)/man1; done; true
	for f in man/man5/*.5; do [ -e "$$f" ] && install -m 644 "$$f" $(DESTDIR)$(MANDIR)/man5; done; true
	for f in man/man7/*.7; do [ -e "$$f" ] && install -m 644 "$$f" $(DESTDIR)$(MANDIR)/man7; done; true

uninstall:
	rm -f $(addprefix $(DESTDIR)$(BINDIR)/,$(notdir $(TOOLS)))
	rm -f $(addprefix $(DESTDIR)$(MANDIR)/man1/,$(notdir $(wildcard man/man1/*.1)))
	rm -f $(addprefix $(DESTDIR)$(MANDIR)/man5/,$(notdir $(wildcard man/man5/*.5)))
	rm -f $(addprefix $(DESTDIR)$(MANDIR)/man7/,$(notdir $(wildcard man/man7/*.7)))

clean:
	rm -rf build bin $(LIB) $(CUDA_LIB)

help:
	@echo "make [all]          build libcore, tools and unit tests (CUDA=1|0, V=1)"
	@echo "make test           CPU test suite (what CI runs)"
	@echo "make test-gpu       CUDA ops against the CPU ops (GPU machine)"
	@echo "make bench          benchmarks against the reference implementations"
	@echo "make fuzz           fuzz every reader of outside bytes, FUZZ_SECONDS=$(FUZZ_SECONDS) each (needs clang)"
	@echo "make fuzz-build     build the fuzz targets in build/fuzz (clang, libFuzzer, ASan, UBSan)"
	@echo "make bench-gpu      attention, qw-pretrain vs PyTorch, qw-rollout vs transformers (GPU machine)"
	@echo "make demo           the demo pipeline on the CPU"
	@echo "make report RUN=DIR figures of a run's metrics (RUN/*.jsonl, RUN/logs/*.jsonl)"
	@echo "make install        PREFIX=$(PREFIX) DESTDIR=$(DESTDIR)"
