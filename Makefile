# Thin wrapper around CMake. `make run` serves scripts/; `make test` runs every test.
SANITIZE ?= 0
JOBS ?= 2
ifeq ($(SANITIZE),1)
BUILD ?= build-san
CMAKE_FLAGS += -DLUAR_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
else
BUILD ?= build
endif

.PHONY: all deps build run test bench clean

all: build

deps:
	@tools/deps.sh

build: deps
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

# The example (scripts/, configured by luar.conf.lua) with local stand-ins for the providers
# whose keys are not set (tools/standins.py; scripts/README.md).
run: build
	LUAR_PLUGIN_DIR=$(CURDIR)/$(BUILD)/plugins python3 tools/standins.py \
	    ./$(BUILD)/luar serve --scripts scripts

test: build
	@tools/deps.sh test
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS) $(CTEST_FLAGS)

bench: build
	@tools/deps.sh bench
	bench/http_hello $(BUILD)/luar
	bench/client $(BUILD)/luar
	bench/ingest $(BUILD)/luar
	bench/jobs $(BUILD)/luar
	QUEUE=redis bench/ingest $(BUILD)/luar
	QUEUE=redis bench/jobs $(BUILD)/luar
	bench/redis_drain $(BUILD)/luar drain-$$(git rev-parse --short HEAD)

clean:
	rm -rf build build-san
