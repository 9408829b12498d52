# The libFuzzer targets (clang++, -fsanitize=fuzzer,address,undefined, -O1),
# built by scripts/fuzz.sh: `make -f tests/fuzz/fuzz.mk OUT=build/fuzz`.
# Every parser source is compiled once into $(OUT)/obj (with -MMD, so a
# header change recompiles what includes it) and the objects are shared by
# the targets that need them: five targets cost one compile of each source,
# not five.
OUT ?= build/fuzz
CXX := clang++
CXXFLAGS := -std=c++17 -O1 -g -I. -DMSGPACK_NO_BOOST -DTOML_HEADER_ONLY=1 -MMD -MP
# toml++'s internal assertions are off as in lema's release builds (NDEBUG):
# one is reachable from input (docs/FUZZING.md), where the release build
# returns a clean parse error; the fuzzer checks what ships.
CXXFLAGS += '-DTOML_ASSERT(expr)=static_cast<void>(0)'
SAN_LIB := -fsanitize=fuzzer-no-link,address,undefined
SAN_BIN := -fsanitize=fuzzer,address,undefined

BASE := common/base/status.cpp common/base/log.cpp common/base/file_util.cpp common/base/bounds.cpp \
        common/base/sha256.cpp
TEXT := $(wildcard common/text/*.cpp)

SRCS_safetensors := common/formats/safetensors.cpp common/formats/dtype.cpp
SRCS_protocol := common/protocol/protocol.cpp
SRCS_job_spec := common/protocol/job_spec.cpp common/protocol/tomlpp_shield.cpp
SRCS_jsonl := common/data/dataset.cpp common/data/dataset_format.cpp common/data/json_fields.cpp $(TEXT)
SRCS_tokenizer_json := $(TEXT)
# The text library's normalizers are ICU's (common/text/unicode_normalizer.cpp).
ICU_LIBS := $(shell pkg-config --libs icu-uc)
LIBS_jsonl := -lpcre2-8 $(ICU_LIBS)
LIBS_tokenizer_json := -lpcre2-8 $(ICU_LIBS)

TARGETS := safetensors protocol job_spec jsonl tokenizer_json
obj = $(patsubst %.cpp,$(OUT)/obj/%.o,$(1))

all: $(foreach t,$(TARGETS),$(OUT)/$(t)/$(t)_fuzz)

$(OUT)/obj/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) $(SAN_LIB) -c $< -o $@

$(OUT)/obj/tests/fuzz/%.o: tests/fuzz/%.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) $(SAN_BIN) -c $< -o $@

define target_rule
$(OUT)/$(1)/$(1)_fuzz: $(call obj,tests/fuzz/$(1)_fuzz.cpp $(SRCS_$(1)) $(BASE))
	@mkdir -p $$(dir $$@)
	$(CXX) $(SAN_BIN) $$^ $(LIBS_$(1)) -o $$@
endef
$(foreach t,$(TARGETS),$(eval $(call target_rule,$(t))))

-include $(shell find $(OUT)/obj -name '*.d' 2>/dev/null)
