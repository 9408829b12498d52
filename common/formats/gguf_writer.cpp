#include "common/formats/gguf_writer.h"

#include <cstring>

#include "common/formats/model_layout.h"

namespace lema {
namespace {

// Little-endian serialisation (lema runs on little-endian hosts only; the
// file format is little-endian).
template <typename T>
void put(std::string* out, T v) {
  char buf[sizeof(T)];
  std::memcpy(buf, &v, sizeof(T));
  out->append(buf, sizeof(T));
}

void put_string(std::string* out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out->append(s);
}

void put_value(std::string* out, const GgufValue& v);

void put_payload(std::string* out, GgufValueType type, const GgufValue& v) {
  switch (type) {
    case GgufValueType::kUint8: put<uint8_t>(out, static_cast<uint8_t>(v.u)); break;
    case GgufValueType::kInt8: put<int8_t>(out, static_cast<int8_t>(v.i)); break;
    case GgufValueType::kUint16: put<uint16_t>(out, static_cast<uint16_t>(v.u)); break;
    case GgufValueType::kInt16: put<int16_t>(out, static_cast<int16_t>(v.i)); break;
    case GgufValueType::kUint32: put<uint32_t>(out, static_cast<uint32_t>(v.u)); break;
    case GgufValueType::kInt32: put<int32_t>(out, static_cast<int32_t>(v.i)); break;
    case GgufValueType::kFloat32: put<float>(out, static_cast<float>(v.f)); break;
    case GgufValueType::kBool: put<uint8_t>(out, v.b ? 1 : 0); break;
    case GgufValueType::kString: put_string(out, v.s); break;
    case GgufValueType::kUint64: put<uint64_t>(out, v.u); break;
    case GgufValueType::kInt64: put<int64_t>(out, v.i); break;
    case GgufValueType::kFloat64: put<double>(out, v.f); break;
    case GgufValueType::kArray:
      put<uint32_t>(out, static_cast<uint32_t>(v.elem));
      put<uint64_t>(out, v.items.size());
      for (const GgufValue& item : v.items) put_payload(out, v.elem, item);
      break;
  }
}

void put_value(std::string* out, const GgufValue& v) {
  put<uint32_t>(out, static_cast<uint32_t>(v.type));
  put_payload(out, v.type, v);
}

uint64_t align_up(uint64_t n, uint64_t alignment) { return (n + alignment - 1) / alignment * alignment; }

}  // namespace

const char* gguf_value_type_name(GgufValueType type) {
  switch (type) {
    case GgufValueType::kUint8: return "uint8";
    case GgufValueType::kInt8: return "int8";
    case GgufValueType::kUint16: return "uint16";
    case GgufValueType::kInt16: return "int16";
    case GgufValueType::kUint32: return "uint32";
    case GgufValueType::kInt32: return "int32";
    case GgufValueType::kFloat32: return "float32";
    case GgufValueType::kBool: return "bool";
    case GgufValueType::kString: return "string";
    case GgufValueType::kArray: return "array";
    case GgufValueType::kUint64: return "uint64";
    case GgufValueType::kInt64: return "int64";
    case GgufValueType::kFloat64: return "float64";
  }
  return "?";
}

const char* ggml_type_name(GgmlType type) {
  switch (type) {
    case GgmlType::kF32: return "f32";
    case GgmlType::kF16: return "f16";
    case GgmlType::kQ4_0: return "q4_0";
    case GgmlType::kQ8_0: return "q8_0";
    case GgmlType::kBF16: return "bf16";
  }
  return "?";
}

bool ggml_type_from_u32(uint32_t value, GgmlType* type) {
  for (GgmlType t : {GgmlType::kF32, GgmlType::kF16, GgmlType::kQ4_0, GgmlType::kQ8_0, GgmlType::kBF16}) {
    if (static_cast<uint32_t>(t) == value) {
      *type = t;
      return true;
    }
  }
  return false;
}

int64_t ggml_block_elems(GgmlType type) {
  return type == GgmlType::kQ4_0 || type == GgmlType::kQ8_0 ? 32 : 1;
}

uint64_t ggml_block_bytes(GgmlType type) {
  switch (type) {
    case GgmlType::kF32: return 4;
    case GgmlType::kF16: return 2;
    case GgmlType::kBF16: return 2;
    case GgmlType::kQ4_0: return 2 + 16;  // fp16 scale + 32 nibbles
    case GgmlType::kQ8_0: return 2 + 32;  // fp16 scale + 32 int8
  }
  return 0;
}

uint64_t ggml_nbytes(GgmlType type, int64_t n_elems) {
  return static_cast<uint64_t>(n_elems / ggml_block_elems(type)) * ggml_block_bytes(type);
}

GgufValue GgufValue::u32(uint32_t v) { GgufValue x; x.type = GgufValueType::kUint32; x.u = v; return x; }
GgufValue GgufValue::i32(int32_t v) { GgufValue x; x.type = GgufValueType::kInt32; x.i = v; return x; }
GgufValue GgufValue::u64(uint64_t v) { GgufValue x; x.type = GgufValueType::kUint64; x.u = v; return x; }
GgufValue GgufValue::f32(float v) { GgufValue x; x.type = GgufValueType::kFloat32; x.f = v; return x; }
GgufValue GgufValue::boolean(bool v) { GgufValue x; x.type = GgufValueType::kBool; x.b = v; return x; }
GgufValue GgufValue::string(std::string v) { GgufValue x; x.type = GgufValueType::kString; x.s = std::move(v); return x; }

GgufValue GgufValue::strings(const std::vector<std::string>& v) {
  GgufValue x;
  x.type = GgufValueType::kArray;
  x.elem = GgufValueType::kString;
  x.items.reserve(v.size());
  for (const std::string& s : v) x.items.push_back(string(s));
  return x;
}

GgufValue GgufValue::f32s(const std::vector<float>& v) {
  GgufValue x;
  x.type = GgufValueType::kArray;
  x.elem = GgufValueType::kFloat32;
  x.items.reserve(v.size());
  for (float f : v) x.items.push_back(f32(f));
  return x;
}

GgufValue GgufValue::i32s(const std::vector<int32_t>& v) {
  GgufValue x;
  x.type = GgufValueType::kArray;
  x.elem = GgufValueType::kInt32;
  x.items.reserve(v.size());
  for (int32_t i : v) x.items.push_back(i32(i));
  return x;
}

int64_t GgufTensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

void GgufWriter::set(const std::string& key, GgufValue value) {
  LEMA_CHECK(!opened_);
  auto it = kv_index_.find(key);
  if (it != kv_index_.end()) {
    kv_[it->second].second = std::move(value);
    return;
  }
  kv_index_[key] = kv_.size();
  kv_.emplace_back(key, std::move(value));
}

Status GgufWriter::set_alignment(uint64_t alignment) {
  if (alignment < 8 || (alignment & (alignment - 1)) != 0) {
    return Status::invalid_argument("gguf: alignment " + std::to_string(alignment) + " is not a power of two >= 8");
  }
  if (!tensors_.empty()) return Status::invalid_argument("gguf: set the alignment before adding tensors");
  alignment_ = alignment;
  if (alignment != kGgufDefaultAlignment) set("general.alignment", GgufValue::u32(static_cast<uint32_t>(alignment)));
  return Status();
}

Status GgufWriter::add_tensor(const std::string& name, GgmlType type, const std::vector<int64_t>& shape) {
  LEMA_CHECK(!opened_);
  if (name.empty()) return Status::invalid_argument("gguf: empty tensor name");
  if (tensor_index_.count(name)) return Status::invalid_argument("gguf: tensor '" + name + "' declared twice");
  if (shape.empty() || shape.size() > 4) {
    return Status::invalid_argument("gguf: tensor '" + name + "' has " + std::to_string(shape.size()) +
                                    " dimensions (1 to 4 are allowed)");
  }
  for (int64_t d : shape) {
    if (d <= 0) return Status::invalid_argument("gguf: tensor '" + name + "' has shape " + shape_to_string(shape));
  }
  if (shape.back() % ggml_block_elems(type) != 0) {
    return Status::invalid_argument("gguf: tensor '" + name + "' " + shape_to_string(shape) + ": rows of " +
                                    std::to_string(shape.back()) + " are not whole " + ggml_type_name(type) +
                                    " blocks of " + std::to_string(ggml_block_elems(type)));
  }
  GgufTensorInfo t;
  t.name = name;
  t.type = type;
  t.shape = shape;
  t.offset = data_size_;
  t.nbytes = ggml_nbytes(type, t.numel());
  data_size_ = align_up(data_size_ + t.nbytes, alignment_);
  tensor_index_[name] = tensors_.size();
  tensors_.push_back(std::move(t));
  return Status();
}

Status GgufWriter::open(const std::string& path) {
  LEMA_CHECK(!opened_);
  std::string head;
  put<uint32_t>(&head, kGgufMagic);
  put<uint32_t>(&head, kGgufVersion);
  put<uint64_t>(&head, tensors_.size());
  put<uint64_t>(&head, kv_.size());
  for (const auto& kv : kv_) {
    put_string(&head, kv.first);
    put_value(&head, kv.second);
  }
  for (const GgufTensorInfo& t : tensors_) {
    put_string(&head, t.name);
    put<uint32_t>(&head, static_cast<uint32_t>(t.shape.size()));
    for (auto d = t.shape.rbegin(); d != t.shape.rend(); ++d) put<uint64_t>(&head, static_cast<uint64_t>(*d));
    put<uint32_t>(&head, static_cast<uint32_t>(t.type));
    put<uint64_t>(&head, t.offset);
  }
  data_start_ = align_up(head.size(), alignment_);
  head.resize(data_start_, '\0');
  LEMA_RETURN_IF_ERROR(out_.open(path));
  LEMA_RETURN_IF_ERROR(out_.append(head.data(), head.size()));
  path_ = path;
  opened_ = true;
  return Status();
}

Status GgufWriter::pad_to_alignment() {
  static const char zeros[256] = {};
  uint64_t pad = align_up(out_.bytes_written(), alignment_) - out_.bytes_written();
  while (pad > 0) {
    const uint64_t n = pad < sizeof(zeros) ? pad : sizeof(zeros);
    LEMA_RETURN_IF_ERROR(out_.append(zeros, n));
    pad -= n;
  }
  return Status();
}

Status GgufWriter::write_tensor(const std::string& name, const void* data, uint64_t nbytes) {
  LEMA_CHECK(opened_);
  if (next_ >= tensors_.size() || tensors_[next_].name != name) {
    return Status::invalid_argument("gguf: " + path_ + ": tensor '" + name + "' written out of order (expected '" +
                                    (next_ < tensors_.size() ? tensors_[next_].name : std::string("none")) + "')");
  }
  const GgufTensorInfo& t = tensors_[next_];
  if (nbytes != t.nbytes) {
    return Status::invalid_argument("gguf: " + path_ + ": tensor '" + name + "' has " + std::to_string(nbytes) +
                                    " bytes, expected " + std::to_string(t.nbytes));
  }
  LEMA_CHECK(out_.bytes_written() == data_start_ + t.offset);
  LEMA_RETURN_IF_ERROR(out_.append(data, nbytes));
  LEMA_RETURN_IF_ERROR(pad_to_alignment());
  ++next_;
  return Status();
}

Status GgufWriter::commit() {
  LEMA_CHECK(opened_);
  if (next_ != tensors_.size()) {
    return Status::invalid_argument("gguf: " + path_ + ": " + std::to_string(tensors_.size() - next_) +
                                    " tensors not written (next: '" + tensors_[next_].name + "')");
  }
  return out_.commit();
}

}  // namespace lema
