#include "common/formats/safetensors.h"

#include "common/base/regular_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <limits>
#include <nlohmann/json.hpp>

namespace lema {

using json = nlohmann::json;

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

namespace {

// A safetensors header nests at most three deep (root, entry, shape array).
// Refusing deep nesting before parsing keeps hostile input from exhausting
// the stack or memory in the JSON library.
constexpr int kMaxJsonDepth = 8;

bool json_depth_ok(const char* p, size_t n) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < n; ++i) {
    char c = p[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
      continue;
    }
    if (c == '"')
      in_string = true;
    else if (c == '{' || c == '[') {
      if (++depth > kMaxJsonDepth) return false;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return true;
}

Status bad(const std::string& source, const std::string& what) {
  return Status::corruption(source + ": " + what);
}
Status bad_tensor(const std::string& source, const std::string& name, const std::string& what) {
  return Status::corruption(source + ": tensor '" + name + "': " + what);
}

// A non-negative integer that fits in uint64 (rejects floats, negatives, bools).
bool as_u64(const json& v, uint64_t* out) {
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer()) {
    int64_t i = v.get<int64_t>();
    if (i < 0) return false;
    *out = static_cast<uint64_t>(i);
    return true;
  }
  return false;
}

Status parse_entry(const std::string& source, const std::string& name, const json& e, uint64_t data_size,
                   TensorInfo* out, uint64_t* begin_rel) {
  if (!e.is_object()) return bad_tensor(source, name, "entry is not a JSON object");
  auto dt = e.find("dtype");
  if (dt == e.end()) return bad_tensor(source, name, "missing 'dtype'");
  if (!dt->is_string()) return bad_tensor(source, name, "'dtype' is not a string");
  auto dtype = parse_dtype(dt->get<std::string>());
  if (!dtype.ok()) return bad_tensor(source, name, dtype.status().message());
  out->name = name;
  out->dtype = *dtype;

  auto sh = e.find("shape");
  if (sh == e.end()) return bad_tensor(source, name, "missing 'shape'");
  if (!sh->is_array()) return bad_tensor(source, name, "'shape' is not an array");
  uint64_t numel = 1;
  bool overflow = false;
  for (const json& d : *sh) {
    uint64_t v;
    if (!as_u64(d, &v) || v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return bad_tensor(source, name,
                        "shape " + sh->dump() + " has a dimension that is not a non-negative integer");
    }
    out->shape.push_back(static_cast<int64_t>(v));
    if (__builtin_mul_overflow(numel, v, &numel)) overflow = true;
  }
  uint64_t expect_bytes = 0;
  if (overflow || __builtin_mul_overflow(numel, static_cast<uint64_t>(dtype_size(*dtype)), &expect_bytes) ||
      numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return bad_tensor(source, name, "shape " + sh->dump() + " is too large");
  }

  auto off = e.find("data_offsets");
  if (off == e.end()) return bad_tensor(source, name, "missing 'data_offsets'");
  uint64_t b = 0, en = 0;
  if (!off->is_array() || off->size() != 2 || !as_u64((*off)[0], &b) || !as_u64((*off)[1], &en)) {
    return bad_tensor(source, name, "'data_offsets' is not [begin, end] with non-negative integers");
  }
  if (en < b) return bad_tensor(source, name, "data_offsets end < begin (" + off->dump() + ")");
  if (en > data_size) {
    return bad_tensor(source, name,
                      "data_offsets " + off->dump() + " end past the data section (" +
                          std::to_string(data_size) + " bytes)");
  }
  if (en - b != expect_bytes) {
    return bad_tensor(source, name,
                      std::string("byte length ") + std::to_string(en - b) + " != shape " + sh->dump() +
                          " x " + dtype_name(*dtype) + " = " + std::to_string(expect_bytes));
  }
  out->nbytes = expect_bytes;
  *begin_rel = b;
  return Status();
}

Result<SafetensorsHeader> parse_header_impl(const uint8_t* bytes, uint64_t available, uint64_t file_size,
                                            const std::string& source) {
  if (available > file_size) return Status::internal(source + ": available bytes exceed the file size");
  if (file_size < 8) {
    return bad(source, "file is " + std::to_string(file_size) + " bytes, too short for a safetensors header");
  }
  if (available < 8) return bad(source, "header length not available");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];
  if (n > kSafetensorsMaxHeaderBytes) {
    return bad(source, "header length " + std::to_string(n) + " is absurd (limit " +
                           std::to_string(kSafetensorsMaxHeaderBytes) + "); not a safetensors file?");
  }
  if (n > file_size - 8) {
    return bad(source, "header length " + std::to_string(n) + " runs past the end of the file (" +
                           std::to_string(file_size) + " bytes): truncated?");
  }
  if (n > available - 8) return bad(source, "header not fully available");
  if (n < 2 || bytes[8] != '{') return bad(source, "header is not a JSON object (must start with '{')");
  const char* text = reinterpret_cast<const char*>(bytes + 8);
  if (!json_depth_ok(text, n)) return bad(source, "header JSON nests too deep");
  json root;
  try {
    root = json::parse(text, text + n);
  } catch (const json::exception& e) {
    return bad(source, std::string("header is not valid JSON: ") + e.what());
  }
  if (!root.is_object()) return bad(source, "header is not a JSON object");

  SafetensorsHeader h;
  h.data_start = 8 + n;
  h.file_size = file_size;
  const uint64_t data_size = file_size - h.data_start;
  std::vector<std::pair<uint64_t, size_t>> begins;  // (relative begin, index)
  for (auto it = root.begin(); it != root.end(); ++it) {
    const std::string& key = it.key();
    if (key == "__metadata__") {
      if (!it->is_object()) return bad(source, "__metadata__ is not a map of string to string");
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string()) {
          return bad(source, "__metadata__ key '" + m.key() + "' has a non-string value");
        }
        h.metadata[m.key()] = m->get<std::string>();
      }
      continue;
    }
    TensorInfo info;
    uint64_t b = 0;
    LEMA_RETURN_IF_ERROR(parse_entry(source, key, *it, data_size, &info, &b));
    begins.emplace_back(b, h.tensors.size());
    h.tensors.push_back(std::move(info));
  }

  // Sorted by (begin, end), the ranges must tile [0, data_size) exactly.
  std::sort(begins.begin(), begins.end(), [&](const auto& a, const auto& b) {
    if (a.first != b.first) return a.first < b.first;
    return h.tensors[a.second].nbytes < h.tensors[b.second].nbytes;
  });
  uint64_t cursor = 0;
  std::string prev = "(start of data)";
  std::vector<TensorInfo> sorted;
  sorted.reserve(h.tensors.size());
  for (const auto& [b, idx] : begins) {
    TensorInfo& t = h.tensors[idx];
    if (b < cursor) {
      return bad_tensor(source, t.name,
                        "bytes [" + std::to_string(b) + ", " + std::to_string(b + t.nbytes) +
                            ") overlap tensor '" + prev + "'");
    }
    if (b > cursor) {
      return bad_tensor(source, t.name,
                        "hole of " + std::to_string(b - cursor) + " bytes before it (after '" + prev + "')");
    }
    cursor = b + t.nbytes;
    prev = t.name;
    t.offset = h.data_start + b;
    sorted.push_back(std::move(t));
  }
  if (cursor != data_size) {
    if (sorted.empty()) {
      return bad(source, "no tensors, but a data section of " + std::to_string(data_size) + " bytes");
    }
    return bad(source, "data section has " + std::to_string(data_size - cursor) +
                           " bytes after the last tensor '" + prev + "'");
  }
  h.tensors = std::move(sorted);
  return h;
}

}  // namespace

Result<SafetensorsHeader> parse_safetensors_header(const uint8_t* bytes, uint64_t available,
                                                   uint64_t file_size, const std::string& source) {
  try {
    return parse_header_impl(bytes, available, file_size, source);
  } catch (const std::exception& e) {  // bad_alloc on hostile sizes, or a JSON surprise
    return Status::corruption(source + ": header rejected: " + e.what());
  }
}

Result<SafetensorsHeader> read_safetensors_header(const std::string& path) {
  LEMA_ASSIGN_OR_RETURN(int fd, open_regular_file(path));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return status_from_errno(path, err);
  }
  uint64_t file_size = static_cast<uint64_t>(st.st_size);
  auto pread_all = [&](uint8_t* dst, uint64_t n, uint64_t off) -> bool {
    while (n > 0) {
      ssize_t r = ::pread(fd, dst, n, static_cast<off_t>(off));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return false;
      dst += r;
      n -= static_cast<uint64_t>(r);
      off += static_cast<uint64_t>(r);
    }
    return true;
  };
  std::vector<uint8_t> buf(std::min<uint64_t>(8, file_size));
  if (!buf.empty() && !pread_all(buf.data(), buf.size(), 0)) {
    int err = errno;
    ::close(fd);
    return status_from_errno("read " + path, err);
  }
  if (file_size >= 8) {
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | buf[i];
    if (n <= kSafetensorsMaxHeaderBytes && n <= file_size - 8) {
      buf.resize(8 + n);
      if (!pread_all(buf.data() + 8, n, 8)) {
        int err = errno;
        ::close(fd);
        return status_from_errno("read " + path, err);
      }
    }
  }
  ::close(fd);
  return parse_safetensors_header(buf.data(), buf.size(), file_size, path);
}

// ---------------------------------------------------------------------------
// SafetensorsReader

Result<std::unique_ptr<SafetensorsReader>> SafetensorsReader::open(const std::string& path) {
  std::unique_ptr<SafetensorsReader> r(new SafetensorsReader());
  LEMA_RETURN_IF_ERROR(r->map_.open(path));
  LEMA_ASSIGN_OR_RETURN(r->header_,
                        parse_safetensors_header(r->map_.data(), r->map_.size(), r->map_.size(), path));
  for (size_t i = 0; i < r->header_.tensors.size(); ++i) r->index_[r->header_.tensors[i].name] = i;
  return r;
}

const TensorInfo* SafetensorsReader::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &header_.tensors[it->second];
}

void SafetensorsReader::release(uint64_t offset, uint64_t nbytes) const {
  if (map_.data() == nullptr || nbytes == 0) return;
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  // Only whole pages inside the range: a neighbour's page may still be in use.
  uint64_t begin = (offset + page - 1) / page * page;
  uint64_t end = std::min<uint64_t>(offset + nbytes, map_.size()) / page * page;
  if (end <= begin) return;
  // MADV_DONTNEED on a private read-only file map drops the pages; a later
  // read faults them in from the file again.
  ::madvise(const_cast<uint8_t*>(map_.data()) + begin, end - begin, MADV_DONTNEED);
}

// ---------------------------------------------------------------------------
// SafetensorsWriter

Status SafetensorsWriter::add_tensor(const std::string& name, DType dtype,
                                     const std::vector<int64_t>& shape) {
  if (opened_) return Status::internal("add_tensor('" + name + "') after open()");
  if (name == "__metadata__") return Status::invalid_argument("tensor name '__metadata__' is reserved");
  if (index_.count(name)) return Status::invalid_argument("tensor '" + name + "' declared twice");
  TensorInfo t;
  t.name = name;
  t.dtype = dtype;
  t.shape = shape;
  uint64_t n = dtype_size(dtype);
  for (int64_t d : shape) {
    if (d < 0 || __builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) {
      return Status::invalid_argument("tensor '" + name + "': bad shape");
    }
  }
  t.nbytes = n;
  index_[name] = tensors_.size();
  tensors_.push_back(std::move(t));
  return Status();
}

std::string SafetensorsWriter::header_text(const std::map<std::string, std::string>& metadata) const {
  nlohmann::ordered_json root = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    root["__metadata__"] = m;
  }
  uint64_t rel = 0;
  for (const auto& t : tensors_) {
    nlohmann::ordered_json e;
    e["dtype"] = dtype_name(t.dtype);
    e["shape"] = t.shape;
    e["data_offsets"] = {rel, rel + t.nbytes};
    root[t.name] = e;
    rel += t.nbytes;
  }
  return root.dump();
}

Status SafetensorsWriter::open(const std::string& path) {
  if (opened_) return Status::internal("SafetensorsWriter::open called twice");
  if (alignment_ == 0 || alignment_ % 8 != 0)
    return Status::internal("data alignment must be a multiple of 8");
  path_ = path;
  // Offsets in the metadata depend on the header length and the header
  // length on the metadata: grow the guess until the text fits, then pad.
  uint64_t guess = 0;
  std::string text;
  for (;;) {
    uint64_t rel = 0;
    for (auto& t : tensors_) {
      t.offset = guess + rel;
      rel += t.nbytes;
    }
    std::map<std::string, std::string> metadata = metadata_;
    if (layout_fn_) {
      for (auto& [k, v] : layout_fn_(tensors_)) metadata[k] = v;
    }
    text = header_text(metadata);
    uint64_t need = (8 + text.size() + alignment_ - 1) / alignment_ * alignment_;
    if (need <= guess) {
      text.append(guess - 8 - text.size(), ' ');
      break;
    }
    guess = need;
  }
  if (text.size() > kSafetensorsMaxHeaderBytes) {
    return Status::invalid_argument(path + ": header of " + std::to_string(text.size()) +
                                    " bytes is too large");
  }
  header_text_ = text;
  data_start_ = guess;
  LEMA_RETURN_IF_ERROR(out_.open(path));
  uint8_t len[8];
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
  LEMA_RETURN_IF_ERROR(out_.append(len, 8));
  LEMA_RETURN_IF_ERROR(out_.append(text.data(), text.size()));
  opened_ = true;
  next_ = 0;
  written_in_next_ = 0;
  // Zero-byte tensors at the front are complete already.
  while (next_ < tensors_.size() && tensors_[next_].nbytes == 0) ++next_;
  return Status();
}

Status SafetensorsWriter::write_tensor_part(const std::string& name, const void* data, uint64_t nbytes) {
  if (!opened_) return Status::internal("write_tensor('" + name + "') before open()");
  auto it = index_.find(name);
  if (it == index_.end()) return Status::invalid_argument(path_ + ": tensor '" + name + "' was not declared");
  if (it->second != next_) {
    std::string expected = next_ < tensors_.size() ? "'" + tensors_[next_].name + "'" : "none (all written)";
    if (it->second < next_) {
      return Status::invalid_argument(path_ + ": tensor '" + name + "' already written");
    }
    return Status::invalid_argument(path_ + ": tensor '" + name + "' written out of order; next expected " +
                                    expected);
  }
  const TensorInfo& t = tensors_[next_];
  if (nbytes > t.nbytes - written_in_next_) {
    return Status::invalid_argument(path_ + ": tensor '" + name +
                                    "': " + std::to_string(written_in_next_ + nbytes) +
                                    " bytes written, declared " + std::to_string(t.nbytes));
  }
  LEMA_RETURN_IF_ERROR(out_.append(data, nbytes));
  written_in_next_ += nbytes;
  if (written_in_next_ == t.nbytes) {
    ++next_;
    written_in_next_ = 0;
    while (next_ < tensors_.size() && tensors_[next_].nbytes == 0) ++next_;
  }
  return Status();
}

Status SafetensorsWriter::write_tensor(const std::string& name, const void* data, uint64_t nbytes) {
  auto it = index_.find(name);
  if (it != index_.end() && tensors_[it->second].nbytes != nbytes) {
    return Status::invalid_argument(path_ + ": tensor '" + name + "': got " + std::to_string(nbytes) +
                                    " bytes, declared " + std::to_string(tensors_[it->second].nbytes));
  }
  if (it != index_.end() && it->second == next_ && written_in_next_ != 0) {
    return Status::invalid_argument(path_ + ": tensor '" + name + "' is partly written already");
  }
  if (it != index_.end() && nbytes == 0 && it->second < next_) return Status();  // empty: done at open
  return write_tensor_part(name, data, nbytes);
}

Status SafetensorsWriter::commit() {
  if (!opened_) return Status::internal("commit() before open()");
  if (next_ < tensors_.size()) {
    return Status::invalid_argument(path_ + ": tensor '" + tensors_[next_].name +
                                    "' not (fully) written before commit");
  }
  return out_.commit();
}

}  // namespace lema
