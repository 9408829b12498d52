// LibTorch's types in lema's terms, in one place: DType <-> at::ScalarType,
// the --dtype and --device spellings, and LibTorch exceptions as a Status.
// One behaviour for a type LibTorch or lema cannot take: an error naming it.
//
// Plain functions; thread-safe.
#pragma once

#include <ATen/ATen.h>

#include <exception>
#include <string>

#include "common/base/status.h"
#include "common/formats/dtype.h"

namespace lema::engine {

// F32/F64/F16/BF16 <-> kFloat/kDouble/kHalf/kBFloat16; anything else is an
// error whose message starts with `where`.
Result<at::ScalarType> scalar_type_of(DType dtype, const std::string& where);
Result<DType> dtype_of(at::ScalarType type, const std::string& where);

// Parses "fp32" / "float32", "bf16" / "bfloat16", "fp16" / "float16", "fp64" / "float64".
Result<at::ScalarType> parse_dtype(const std::string& text);
// transformers' names: "float32", "bfloat16", "float16", "float64".
const char* dtype_name(at::ScalarType dtype);
// Parses "cpu", "cuda", "cuda:1", "auto"; refuses cuda when this build or machine lacks it.
Result<at::Device> parse_device(const std::string& text);

// A LibTorch exception at an engine entry point, without its C++ backtrace.
Status status_from_exception(const std::exception& e, const std::string& context);

}  // namespace lema::engine
