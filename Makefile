# The two commands the README opens with. Both install missing Debian packages first (as root).
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=Release

DEB_PACKAGES = build-essential cmake ninja-build libtorch-dev libopenblas-dev nlohmann-json3-dev \
               libfmt-dev libcli11-dev libgtest-dev libgmock-dev ccache lld \
               libcurl4-openssl-dev libcpp-httplib-dev libicu-dev libgloo-dev

.PHONY: all deps install-packages build demo test bench clean fuzz fuzz-build test-asan fuzz-smoke

all: build

deps:
	@$(MAKE) --no-print-directory install-packages PACKAGES="$(DEB_PACKAGES)"

install-packages:
	@missing=""; for p in $(PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing missing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" -ne 0 ] && SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

$(BUILD_DIR)/build.ninja: CMakeLists.txt
	cmake -S . -B $(BUILD_DIR) -G Ninja $(CMAKE_FLAGS)

build: deps $(BUILD_DIR)/build.ninja
	cmake --build $(BUILD_DIR) -j $(JOBS)

demo: build
	./$(BUILD_DIR)/tfcpp generate --model models/stories260K --prompt "Once upon a time" --max-new-tokens 64

# The unit tests, then a bounded ASan+UBSan fuzz run of the file parsers (fuzz-smoke, below).
test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)
	@$(MAKE) --no-print-directory fuzz-smoke

bench: build
	./$(BUILD_DIR)/tfcpp bench --model models/stories260K

clean:
	rm -rf $(BUILD_DIR)

# Reliability (README "Reliability"): one clang build folder with ASan+UBSan and libFuzzer coverage, for the fuzz
# targets (each run FUZZ_SECONDS on its seed corpus) and for the whole test suite.
FUZZ_SECONDS ?= 60
build-fuzz/build.ninja:
	@$(MAKE) --no-print-directory install-packages PACKAGES="$(DEB_PACKAGES) clang"
	CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTFCPP_FUZZ=ON -DTFCPP_BUILD_TESTS=ON

fuzz-build: build-fuzz/build.ninja
	cmake --build build-fuzz -j $(JOBS) --target fuzz_all

fuzz: fuzz-build
	fuzz/run.sh build-fuzz $(FUZZ_SECONDS)

# make test's part: only the parsers and the fuzz targets (a few translation units) under ASan+UBSan, each target
# FUZZ_SMOKE_SECONDS on its seed corpus plus the hostile files of tests/fixtures/hostile.
FUZZ_SMOKE_SECONDS ?= 30
# A fixed seed: make test explores the same inputs on every run (random campaigns are make fuzz's job).
FUZZ_SMOKE_SEED ?= 1
build-fuzz-smoke/build.ninja:
	@$(MAKE) --no-print-directory install-packages PACKAGES="$(DEB_PACKAGES) clang"
	CXX=clang++ cmake -S . -B build-fuzz-smoke -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTFCPP_FUZZ_SMOKE=ON

fuzz-smoke: build-fuzz-smoke/build.ninja
	cmake --build build-fuzz-smoke -j $(JOBS) --target fuzz_all
	FUZZ_SEED=$(FUZZ_SMOKE_SEED) fuzz/run.sh build-fuzz-smoke $(FUZZ_SMOKE_SECONDS)

test-asan: build-fuzz/build.ninja
	cmake --build build-fuzz -j $(JOBS) --target transformers_tests tfcpp
	cd build-fuzz && ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j $(JOBS)
