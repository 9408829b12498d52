// Reads SentencePiece's ModelProto without protobuf: the wire format is
// small (varints, length-delimited fields, fixed32 floats). Field numbers
// come from sentencepiece_model.proto.
#include <cstring>

#include "common/text/tokenizer_loaders.h"

namespace lema {

namespace {

// A cursor over protobuf bytes; every read checks bounds.
class WireReader {
 public:
  WireReader(const char* p, size_t n) : p_(p), end_(p + n) {}
  bool done() const { return p_ >= end_; }
  bool varint(uint64_t* v) {
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p_ >= end_) return false;
      uint8_t b = static_cast<uint8_t>(*p_++);
      *v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) return true;
    }
    return false;
  }
  bool bytes(size_t n, const char** out) {
    if (static_cast<size_t>(end_ - p_) < n) return false;
    *out = p_;
    p_ += n;
    return true;
  }
  // Reads a field header and, for length-delimited fields, the payload.
  // Returns false on truncation or an unsupported wire type.
  bool field(uint32_t* number, uint32_t* wire, uint64_t* value, std::string_view* payload) {
    uint64_t key;
    if (!varint(&key)) return false;
    *number = static_cast<uint32_t>(key >> 3);
    *wire = static_cast<uint32_t>(key & 7);
    const char* d;
    switch (*wire) {
      case 0: return varint(value);
      case 1: if (!bytes(8, &d)) return false; std::memcpy(value, d, 8); return true;
      case 2: {
        uint64_t len;
        if (!varint(&len) || len > static_cast<uint64_t>(end_ - p_)) return false;
        bytes(len, &d);
        *payload = std::string_view(d, len);
        return true;
      }
      case 5: { uint32_t v; if (!bytes(4, &d)) return false; std::memcpy(&v, d, 4); *value = v; return true; }
      default: return false;  // groups (3, 4) are not used by ModelProto
    }
  }

 private:
  const char* p_;
  const char* end_;
};

struct Trainer {
  int model_type = 1;  // UNIGRAM
  bool byte_fallback = false, treat_ws_as_suffix = false;
  std::string unk_piece = "<unk>", bos_piece = "<s>", eos_piece = "</s>", pad_piece = "<pad>";
  std::string unk_surface = " \xE2\x81\x87 ";
};
struct Normalizer {
  std::string name;
  bool has_charsmap = false;
  bool add_dummy_prefix = true, remove_extra_whitespaces = true, escape_whitespaces = true;
};

Status corrupt(const std::string& name, const std::string& what) {
  return Status::corruption(name + ": not a valid SentencePiece model (" + what + ")");
}

}  // namespace

Result<BpeSpec> parse_sentencepiece_model(const std::string& data, const std::string& name) {
  BpeSpec spec;
  spec.mode = BpeSpec::Mode::kSentencePiece;
  spec.source = name;
  Trainer tr;
  Normalizer norm;
  bool has_denormalizer = false;
  WireReader top(data.data(), data.size());
  while (!top.done()) {
    uint32_t num, wire;
    uint64_t v = 0;
    std::string_view pl;
    if (!top.field(&num, &wire, &v, &pl)) return corrupt(name, "truncated or garbled field at top level");
    if (wire != 2) continue;
    WireReader sub(pl.data(), pl.size());
    if (num == 1) {  // SentencePiece piece
      std::string piece;
      float score = 0;
      int type = 1;
      bool has_piece = false;
      while (!sub.done()) {
        uint32_t n2, w2; uint64_t v2 = 0; std::string_view p2;
        if (!sub.field(&n2, &w2, &v2, &p2)) return corrupt(name, "truncated piece " + std::to_string(spec.pieces.size()));
        if (n2 == 1 && w2 == 2) { piece.assign(p2); has_piece = true; }
        else if (n2 == 2 && w2 == 5) { uint32_t u = static_cast<uint32_t>(v2); std::memcpy(&score, &u, 4); }
        else if (n2 == 3 && w2 == 0) type = static_cast<int>(v2);
      }
      if (!has_piece || piece.empty()) return corrupt(name, "piece " + std::to_string(spec.pieces.size()) + " has no text");
      if (type < 1 || type > 6) return corrupt(name, "piece '" + piece + "' has unknown type " + std::to_string(type));
      int32_t id = static_cast<int32_t>(spec.pieces.size());
      if (!spec.piece_ids.emplace(piece, id).second) return corrupt(name, "piece '" + piece + "' appears twice");
      spec.pieces.push_back(piece);
      spec.scores.push_back(score);
      spec.types.push_back(static_cast<uint8_t>(type));
    } else if (num == 2) {  // TrainerSpec
      while (!sub.done()) {
        uint32_t n2, w2; uint64_t v2 = 0; std::string_view p2;
        if (!sub.field(&n2, &w2, &v2, &p2)) return corrupt(name, "truncated trainer_spec");
        if (w2 == 0) {
          if (n2 == 3) tr.model_type = static_cast<int>(v2);
          else if (n2 == 35) tr.byte_fallback = v2 != 0;
          else if (n2 == 24) tr.treat_ws_as_suffix = v2 != 0;
        } else if (w2 == 2) {
          if (n2 == 45) tr.unk_piece.assign(p2);
          else if (n2 == 46) tr.bos_piece.assign(p2);
          else if (n2 == 47) tr.eos_piece.assign(p2);
          else if (n2 == 48) tr.pad_piece.assign(p2);
          else if (n2 == 44) tr.unk_surface.assign(p2);
        }
      }
    } else if (num == 3 || num == 5) {  // NormalizerSpec / denormalizer
      Normalizer n;
      while (!sub.done()) {
        uint32_t n2, w2; uint64_t v2 = 0; std::string_view p2;
        if (!sub.field(&n2, &w2, &v2, &p2)) return corrupt(name, "truncated normalizer_spec");
        if (n2 == 1 && w2 == 2) n.name.assign(p2);
        else if (n2 == 2 && w2 == 2) n.has_charsmap = !p2.empty();
        else if (n2 == 3 && w2 == 0) n.add_dummy_prefix = v2 != 0;
        else if (n2 == 4 && w2 == 0) n.remove_extra_whitespaces = v2 != 0;
        else if (n2 == 5 && w2 == 0) n.escape_whitespaces = v2 != 0;
      }
      if (num == 3) norm = n; else has_denormalizer = n.has_charsmap;
    }
  }
  if (spec.pieces.empty()) return corrupt(name, "no pieces");
  if (tr.model_type == 1)
    return Status::unsupported(name + ": a unigram SentencePiece model; lema reads BPE models only "
                               "(retrain with --model_type=bpe, e.g. `lema tokenizer train`)");
  if (tr.model_type != 2)
    return Status::unsupported(name + ": SentencePiece model type " + std::to_string(tr.model_type) + " (word/char); lema reads BPE models only");
  if (norm.has_charsmap)
    return Status::unsupported(name + ": normalization rule '" + norm.name +
                               "' (e.g. nmt_nfkc) needs Unicode tables lema does not carry; models trained "
                               "with normalization_rule_name=identity are supported");
  if (has_denormalizer) return Status::unsupported(name + ": a denormalizer rule is not supported");
  if (tr.treat_ws_as_suffix) return Status::unsupported(name + ": treat_whitespace_as_suffix is not supported");
  spec.byte_fallback = tr.byte_fallback;
  spec.spm_add_dummy_prefix = norm.add_dummy_prefix;
  spec.spm_remove_extra_whitespaces = norm.remove_extra_whitespaces;
  spec.spm_escape_whitespaces = norm.escape_whitespaces;
  spec.spm_unk_surface = tr.unk_surface;
  for (size_t i = 0; i < spec.types.size(); ++i) if (spec.types[i] == 2) { spec.unk_id = static_cast<int32_t>(i); break; }
  if (spec.unk_id < 0) return corrupt(name, "no unknown piece");
  auto control = [&](const std::string& p) {
    auto it = spec.piece_ids.find(p);
    return it != spec.piece_ids.end() && spec.types[it->second] == 3 ? it->second : -1;
  };
  spec.bos_id = control(tr.bos_piece);
  spec.eos_id = control(tr.eos_piece);
  spec.pad_id = control(tr.pad_piece);
  if (spec.byte_fallback) {
    for (int b = 0; b < 256; ++b) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
      auto it = spec.piece_ids.find(buf);
      if (it == spec.piece_ids.end() || spec.types[it->second] != 6)
        return corrupt(name, std::string("byte_fallback is on but byte piece ") + buf + " is missing");
    }
  }
  // LlamaTokenizer's default; tokenizer_config.json may change it.
  if (spec.bos_id >= 0) spec.prefix_ids = {spec.bos_id};
  return spec;
}

}  // namespace lema
