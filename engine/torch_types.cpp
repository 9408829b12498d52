#include "engine/torch_types.h"

namespace lema::engine {

Result<at::ScalarType> scalar_type_of(DType dtype, const std::string& where) {
  switch (dtype) {
    case DType::kF32: return at::kFloat;
    case DType::kF64: return at::kDouble;
    case DType::kF16: return at::kHalf;
    case DType::kBF16: return at::kBFloat16;
    default: return Status::invalid_argument(where + ": dtype " + lema::dtype_name(dtype) + " is not a float type");
  }
}

Result<DType> dtype_of(at::ScalarType type, const std::string& where) {
  switch (type) {
    case at::kFloat: return DType::kF32;
    case at::kDouble: return DType::kF64;
    case at::kHalf: return DType::kF16;
    case at::kBFloat16: return DType::kBF16;
    default: return Status::invalid_argument(where + ": tensor type " + std::string(at::toString(type)) +
                                             " has no lema dtype (fp32, fp64, fp16, bf16)");
  }
}

Result<at::ScalarType> parse_dtype(const std::string& text) {
  if (text == "float32" || text == "fp32") return at::kFloat;
  if (text == "bfloat16" || text == "bf16") return at::kBFloat16;
  if (text == "float16" || text == "fp16") return at::kHalf;
  if (text == "float64" || text == "fp64") return at::kDouble;
  return Status::invalid_argument("dtype '" + text + "' is not one of fp32, bf16, fp16, fp64");
}

const char* dtype_name(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat: return "float32";
    case at::kBFloat16: return "bfloat16";
    case at::kHalf: return "float16";
    case at::kDouble: return "float64";
    default: return "unknown";
  }
}

Result<at::Device> parse_device(const std::string& text) {
  if (text == "cpu") return at::Device(at::kCPU);
  if (text == "auto") return at::hasCUDA() ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
  if (text.rfind("cuda", 0) == 0) {
    if (!at::hasCUDA()) return Status::unsupported("device '" + text + "': this build or machine has no CUDA");
    try {
      return at::Device(text);
    } catch (const std::exception& e) {
      return Status::invalid_argument("device '" + text + "': " + e.what());
    }
  }
  return Status::invalid_argument("device '" + text + "' is not cpu, cuda or cuda:N");
}

Status status_from_exception(const std::exception& e, const std::string& context) {
  std::string what = e.what();
  // LibTorch appends a C++ backtrace after the first line; keep the message.
  const size_t nl = what.find("\nException raised from");
  if (nl != std::string::npos) what.resize(nl);
  return Status::internal(context + ": " + what);
}

}  // namespace lema::engine
