# Thin wrapper over CMake. `make run` and `make test` are the quick start.
BUILD      ?= build
BUILD_ASAN ?= build-asan
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
FUZZ_SECONDS ?= 30
ARGS       ?=

.PHONY: all deps build run test fuzz-smoke fuzz bench format lint clean

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

# Starts every protocol on its standard port, on loopback, data under ./var;
# a development PKI in ./var/certs (kept once made) turns on TLS and DTLS.
run: build
	@./$(BUILD)/m2mkit certs init --quiet
	./$(BUILD)/m2mkit serve $(ARGS)

# Builds with AddressSanitizer and UndefinedBehaviorSanitizer, runs every test.
test: deps
	@cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=Debug -DM2M_SANITIZE=ON >/dev/null
	@cmake --build $(BUILD_ASAN) -j $(JOBS)
	cd $(BUILD_ASAN) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --output-on-failure -j $(JOBS) $(ARGS)

fuzz-smoke: deps
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash scripts/fuzz-smoke.sh

fuzz: deps
	bash scripts/fuzz.sh $(FUZZ_SECONDS)

bench: build
	bash bench/coap/run.sh $(BUILD)/m2mkit
	bash bench/mqtt/run.sh $(BUILD)/m2mkit

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

lint:
	bash tests/lint/test_layers.sh
	bash tests/lint/test_cppcheck.sh
	bash tests/lint/test_format.sh

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) build-fuzz
