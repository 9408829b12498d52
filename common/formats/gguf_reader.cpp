#include "common/formats/gguf_reader.h"

#include <cstring>

namespace lema {
namespace {

// Longer keys, strings or arrays than this are refused as absurd.
constexpr uint64_t kMaxStringBytes = 1ull << 30;
constexpr int kMaxArrayDepth = 4;

// Bounds-checked little-endian cursor over the mapped file.
class Cursor {
 public:
  Cursor(const uint8_t* data, uint64_t size, const std::string& path) : data_(data), size_(size), path_(path) {}

  template <typename T>
  Status read(T* v, const char* what) {
    if (size_ - pos_ < sizeof(T)) return truncated(what);
    std::memcpy(v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return Status();
  }
  Status read_string(std::string* s, const char* what) {
    uint64_t n = 0;
    LEMA_RETURN_IF_ERROR(read(&n, what));
    if (n > kMaxStringBytes || size_ - pos_ < n) return truncated(what);
    s->assign(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return Status();
  }
  Status truncated(const std::string& what) const {
    return Status::corruption(path_ + ": " + what + " at byte " + std::to_string(pos_) + " runs past the end (" +
                              std::to_string(size_) + " bytes)");
  }
  uint64_t pos() const { return pos_; }
  uint64_t left() const { return size_ - pos_; }
  const std::string& path() const { return path_; }

 private:
  const uint8_t* data_;
  uint64_t size_;
  uint64_t pos_ = 0;
  const std::string& path_;
};

bool known_value_type(uint32_t t) { return t <= static_cast<uint32_t>(GgufValueType::kFloat64); }

Status read_payload(Cursor* c, GgufValueType type, const std::string& key, int depth, GgufValue* v) {
  v->type = type;
  const std::string what = "value of '" + key + "'";
  switch (type) {
    case GgufValueType::kUint8: { uint8_t x = 0; LEMA_RETURN_IF_ERROR(c->read(&x, what.c_str())); v->u = x; break; }
    case GgufValueType::kInt8: { int8_t x = 0; LEMA_RETURN_IF_ERROR(c->read(&x, what.c_str())); v->i = x; break; }
    case GgufValueType::kUint16: { uint16_t x = 0; LEMA_RETURN_IF_ERROR(c->read(&x, what.c_str())); v->u = x; break; }
    case GgufValueType::kInt16: { int16_t x = 0; LEMA_RETURN_IF_ERROR(c->read(&x, what.c_str())); v->i = x; break; }
    case GgufValueType::kUint32: { uint32_t x = 0; LEMA_RETURN_IF_ERROR(c->read(&x, what.c_str())); v->u = x; break; }
    case GgufValueType::kInt32: { int32_t x = 0; LEMA_RETURN_IF_ERROR(c->read(&x, what.c_str())); v->i = x; break; }
    case GgufValueType::kFloat32: { float x = 0; LEMA_RETURN_IF_ERROR(c->read(&x, what.c_str())); v->f = x; break; }
    case GgufValueType::kBool: {
      uint8_t x = 0;
      LEMA_RETURN_IF_ERROR(c->read(&x, what.c_str()));
      if (x > 1) return Status::corruption(c->path() + ": bool " + what + " is " + std::to_string(x));
      v->b = x != 0;
      break;
    }
    case GgufValueType::kString: LEMA_RETURN_IF_ERROR(c->read_string(&v->s, what.c_str())); break;
    case GgufValueType::kUint64: LEMA_RETURN_IF_ERROR(c->read(&v->u, what.c_str())); break;
    case GgufValueType::kInt64: LEMA_RETURN_IF_ERROR(c->read(&v->i, what.c_str())); break;
    case GgufValueType::kFloat64: LEMA_RETURN_IF_ERROR(c->read(&v->f, what.c_str())); break;
    case GgufValueType::kArray: {
      if (depth >= kMaxArrayDepth) return Status::corruption(c->path() + ": arrays nested too deep in '" + key + "'");
      uint32_t elem = 0;
      uint64_t n = 0;
      LEMA_RETURN_IF_ERROR(c->read(&elem, what.c_str()));
      if (!known_value_type(elem)) {
        return Status::corruption(c->path() + ": array '" + key + "' has unknown element type " + std::to_string(elem));
      }
      LEMA_RETURN_IF_ERROR(c->read(&n, what.c_str()));
      // Every element takes at least one byte: a count above what is left is damage.
      if (n > c->left()) return c->truncated("array '" + key + "' of " + std::to_string(n) + " elements");
      v->elem = static_cast<GgufValueType>(elem);
      v->items.resize(n);
      for (uint64_t k = 0; k < n; ++k) {
        LEMA_RETURN_IF_ERROR(read_payload(c, v->elem, key, depth + 1, &v->items[k]));
      }
      break;
    }
  }
  return Status();
}

}  // namespace

Result<std::unique_ptr<GgufReader>> GgufReader::open(const std::string& path) {
  std::unique_ptr<GgufReader> r(new GgufReader());
  LEMA_RETURN_IF_ERROR(r->map_.open(path));
  LEMA_RETURN_IF_ERROR(r->parse());
  return r;
}

Status GgufReader::parse() {
  const std::string& p = map_.path();
  Cursor c(map_.data(), map_.size(), p);
  uint32_t magic = 0;
  LEMA_RETURN_IF_ERROR(c.read(&magic, "magic"));
  if (magic != kGgufMagic) return Status::corruption(p + ": not a GGUF file (bad magic)");
  LEMA_RETURN_IF_ERROR(c.read(&version_, "version"));
  if (version_ != 2 && version_ != 3) {
    return Status::corruption(p + ": GGUF version " + std::to_string(version_) + " (2 and 3 are read)");
  }
  uint64_t n_tensors = 0, n_kv = 0;
  LEMA_RETURN_IF_ERROR(c.read(&n_tensors, "tensor count"));
  LEMA_RETURN_IF_ERROR(c.read(&n_kv, "metadata count"));
  if (n_tensors > c.left() || n_kv > c.left()) return c.truncated("counts");
  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key;
    uint32_t type = 0;
    LEMA_RETURN_IF_ERROR(c.read_string(&key, "metadata key"));
    LEMA_RETURN_IF_ERROR(c.read(&type, "metadata type"));
    if (!known_value_type(type)) {
      return Status::corruption(p + ": key '" + key + "' has unknown value type " + std::to_string(type));
    }
    if (kv_index_.count(key)) return Status::corruption(p + ": key '" + key + "' appears twice");
    GgufValue v;
    LEMA_RETURN_IF_ERROR(read_payload(&c, static_cast<GgufValueType>(type), key, 0, &v));
    kv_index_[key] = kv_.size();
    kv_.emplace_back(key, std::move(v));
  }
  if (const GgufValue* a = find("general.alignment")) {
    if (a->type != GgufValueType::kUint32 || a->u == 0 || (a->u & (a->u - 1)) != 0) {
      return Status::corruption(p + ": general.alignment is not a power-of-two uint32");
    }
    alignment_ = a->u;
  }
  for (uint64_t k = 0; k < n_tensors; ++k) {
    GgufTensorInfo t;
    uint32_t n_dims = 0, type = 0;
    LEMA_RETURN_IF_ERROR(c.read_string(&t.name, "tensor name"));
    LEMA_RETURN_IF_ERROR(c.read(&n_dims, "tensor dimension count"));
    if (n_dims == 0 || n_dims > 4) {
      return Status::corruption(p + ": tensor '" + t.name + "' has " + std::to_string(n_dims) + " dimensions");
    }
    t.shape.resize(n_dims);
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t ne = 0;
      LEMA_RETURN_IF_ERROR(c.read(&ne, "tensor dimension"));
      if (ne == 0 || ne > (1ull << 40)) {
        return Status::corruption(p + ": tensor '" + t.name + "' dimension " + std::to_string(d) + " is " +
                                  std::to_string(ne));
      }
      t.shape[n_dims - 1 - d] = static_cast<int64_t>(ne);  // the file is innermost first
    }
    LEMA_RETURN_IF_ERROR(c.read(&type, "tensor type"));
    if (!ggml_type_from_u32(type, &t.type)) {
      return Status::unsupported(p + ": tensor '" + t.name + "' has ggml type " + std::to_string(type) +
                                 " (lema reads f32, f16, bf16, q8_0, q4_0)");
    }
    LEMA_RETURN_IF_ERROR(c.read(&t.offset, "tensor offset"));
    if (t.shape.back() % ggml_block_elems(t.type) != 0) {
      return Status::corruption(p + ": tensor '" + t.name + "' rows are not whole blocks");
    }
    if (t.offset % alignment_ != 0) {
      return Status::corruption(p + ": tensor '" + t.name + "' offset " + std::to_string(t.offset) +
                                " is not aligned to " + std::to_string(alignment_));
    }
    t.nbytes = ggml_nbytes(t.type, t.numel());
    if (tensor_index_.count(t.name)) return Status::corruption(p + ": tensor '" + t.name + "' appears twice");
    tensor_index_[t.name] = tensors_.size();
    tensors_.push_back(std::move(t));
  }
  data_start_ = (c.pos() + alignment_ - 1) / alignment_ * alignment_;
  for (GgufTensorInfo& t : tensors_) {
    if (t.offset > map_.size() || data_start_ > map_.size() - t.offset ||
        t.nbytes > map_.size() - data_start_ - t.offset) {
      return Status::corruption(p + ": tensor '" + t.name + "' data runs past the end of the file");
    }
    t.offset += data_start_;
  }
  return Status();
}

const GgufValue* GgufReader::find(const std::string& key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const GgufTensorInfo* GgufReader::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace lema
