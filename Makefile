# gpumode build. `make` builds the three programs into build/; `make test` runs
# everything CI runs; `make demo` shows a switch on a local control plane.
# Sources are found by wildcard so adding a file needs no edit here:
#   controller/cmd/<program>.c      one main per program
#   controller/<concern>/*.c        linked into build/libgm.a
#   test/test_<module>.c            one cmocka binary each
#   test/support/*.c                helpers linked into every test

VERSION  := 0.1.0
BUILD    ?= build
CC       ?= cc
PKGS     := libcurl libuv json-c yaml-0.1 openssl
PREFIX   ?= /usr/local

WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
            -Wmissing-prototypes -Wpointer-arith -Wformat=2 -Wvla \
            -Wcast-qual -Wundef -Wno-unused-parameter
OPT      ?= -O2
SAN      ?=
CFLAGS   := -std=c11 -D_GNU_SOURCE -DGM_VERSION='"$(VERSION)"' $(OPT) -g \
            $(WARN) $(SAN) -Icontroller -MMD -MP
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm

LIB_SRCS  := $(sort $(shell find controller -name '*.c' -not -path 'controller/cmd/*'))
PROG_SRCS := $(sort $(wildcard controller/cmd/*.c))
TEST_SRCS := $(sort $(wildcard test/test_*.c))
SUP_SRCS  := $(sort $(wildcard test/support/*.c))
TOOL_SRCS := $(sort $(wildcard test/tools/*.c))

LIB_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
SUP_OBJS  := $(SUP_SRCS:%.c=$(BUILD)/obj/%.o)
PROGS     := $(PROG_SRCS:controller/cmd/%.c=$(BUILD)/%)
TESTS     := $(TEST_SRCS:test/%.c=$(BUILD)/test/%)
TOOLS     := $(TOOL_SRCS:test/tools/%.c=$(BUILD)/tools/%)
LIBGM     := $(BUILD)/libgm.a

# Keep objects make would treat as intermediate (test objects).
.SECONDARY:

.PHONY: all deps programs tools unit check asan valgrind format format-check \
        test e2e demo demo-down bench chaos fuzz install clean scripts-check \
        build-deps

all: build-deps
	@$(MAKE) --no-print-directory programs

# deps installs what is missing (apt packages, Go) and is quick when nothing
# is; build-deps only what building the programs needs (make, make install).
deps:
	@scripts/deps.sh

build-deps:
	@scripts/deps.sh --build

programs: $(PROGS)

# Helpers for e2e tests and benchmarks (not installed).
tools: $(TOOLS)

# V=1 shows the full compiler command lines.
Q := $(if $(V),,@)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(V),true,echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) $(PKG_CFLAGS) -c $< -o $@

$(LIBGM): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/%: $(BUILD)/obj/controller/cmd/%.o $(LIBGM)
	@echo "  LINK    $@"
	$(Q)$(CC) $(SAN) -o $@ $< $(LIBGM) $(PKG_LIBS)

$(BUILD)/tools/%: $(BUILD)/obj/test/tools/%.o $(LIBGM)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(SAN) -o $@ $< $(LIBGM) $(PKG_LIBS)

$(BUILD)/test/%: $(BUILD)/obj/test/%.o $(SUP_OBJS) $(LIBGM)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(SAN) -o $@ $< $(SUP_OBJS) $(LIBGM) $(PKG_LIBS) -lcmocka

# Unit tests: every test binary, run from the repository root so fixtures
# resolve as test/fixtures/...; the first failure stops the run.
unit: $(TESTS) $(PROGS)
	@set -e; for t in $(TESTS); do echo "== $$t"; GM_BUILD=$(BUILD) $$t; done

asan:
	@$(MAKE) --no-print-directory BUILD=build-asan OPT=-O1 \
	  SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
	  unit

valgrind: $(TESTS)
	@set -e; for t in $(TESTS); do echo "== valgrind $$t"; \
	  GM_BUILD=$(BUILD) GM_VALGRIND=1 valgrind -q --leak-check=full \
	    --show-leak-kinds=definite,indirect,possible --errors-for-leak-kinds=definite,indirect,possible \
	    --error-exitcode=99 --trace-children=no $$t; done

FMT_SRCS = $(shell find controller test -name '*.[ch]')
format:
	clang-format -i $(FMT_SRCS)

format-check:
	@clang-format --dry-run --Werror $(FMT_SRCS) && echo "format: ok"

# The install scripts' own tests (shell).
scripts-check: deps
	@set -e; for t in test/scripts/test_*.sh; do $$t; done

check: deps
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory asan
	@$(MAKE) --no-print-directory valgrind
	@$(MAKE) --no-print-directory format-check
	@$(MAKE) --no-print-directory scripts-check
	@$(MAKE) --no-print-directory fuzz-smoke

test: check
	@$(MAKE) --no-print-directory e2e

e2e: deps programs tools
	@e2e/run-tests.sh

demo: deps programs
	@scripts/demo.sh $(DEMO_ARGS)

demo-down:
	@scripts/demo.sh --down

# A longer run of the chaos tests than make test's (3 cycles of 8 nodes,
# under the default profile and under hami): CHAOS_CYCLES cycles of 8
# switches each under controller kills, an apiserver restart, etcd
# compaction and nvidia-smi faults.
chaos: deps programs tools
	@cd e2e && TESTBED_NO_BUILD= GPUMODE_E2E=1 \
	  E2E_TIMEOUT=90m CHAOS_CYCLES=$${CHAOS_CYCLES:-13} ./run-tests.sh -run TestChaos -v

bench: deps programs tools
	@scripts/bench.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(PROGS) $(DESTDIR)$(PREFIX)/bin/

clean:
	rm -rf build build-asan

-include $(LIB_OBJS:.o=.d) $(SUP_OBJS:.o=.d) $(TESTS:$(BUILD)/test/%=$(BUILD)/obj/test/%.d) \
         $(PROGS:$(BUILD)/%=$(BUILD)/obj/controller/cmd/%.d) \
         $(TOOL_SRCS:%.c=$(BUILD)/obj/%.d)

# ---- fuzz ------------------------------------------------------------------
# libFuzzer targets, test/fuzz/fuzz_<name>.c, built with clang, ASan, UBSan
# against the library sources in $(FUZZ_BUILD); see test/fuzz/README.md.
# `make fuzz` runs each target for FUZZ_SECONDS (60) on a scratch copy of
# test/fuzz/corpus/<name>; `make fuzz-smoke` runs each for 10 s. Either
# fails on a crash, a leak or a sanitizer report.
FUZZ_BUILD   ?= build-fuzz
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all \
                -fno-omit-frame-pointer
FUZZ_CFLAGS  := -std=c11 -D_GNU_SOURCE -DGM_VERSION='"$(VERSION)"' -O1 -g \
                $(WARN) $(FUZZ_SAN) -fsanitize=fuzzer-no-link \
                -Icontroller -Itest -MMD -MP
FUZZ_SRCS    := $(sort $(wildcard test/fuzz/fuzz_*.c))
FUZZ_BINS    := $(FUZZ_SRCS:test/fuzz/%.c=$(FUZZ_BUILD)/%)
FUZZ_OBJS    := $(LIB_SRCS:%.c=$(FUZZ_BUILD)/obj/%.o) \
                $(FUZZ_BUILD)/obj/test/support/planner_nodes.o
FUZZ_LIB     := $(FUZZ_BUILD)/libgm-fuzz.a

.PHONY: fuzz fuzz-smoke fuzz-build fuzz-clean

fuzz-build: $(FUZZ_BINS)

fuzz: fuzz-build
	@test/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_BINS)

fuzz-smoke:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=10

$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(PKG_CFLAGS) -c $< -o $@

$(FUZZ_LIB): $(FUZZ_OBJS)
	$(Q)rm -f $@ && ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/obj/test/fuzz/fuzz_%.o $(FUZZ_LIB)
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(PKG_LIBS)

fuzz-clean:
	rm -rf $(FUZZ_BUILD)

-include $(FUZZ_OBJS:.o=.d) $(FUZZ_SRCS:%.c=$(FUZZ_BUILD)/obj/%.d)
