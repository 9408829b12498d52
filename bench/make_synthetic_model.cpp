// Writes a random Hugging Face Llama directory of a given shape, for the
// convert memory benchmark (bench/convert_rss.sh).
// Usage: bench_make_synthetic_model OUT_DIR HIDDEN INTERMEDIATE LAYERS VOCAB
#include <cstdio>
#include <cstdlib>

#include "common/formats/model_presets.h"

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: %s OUT_DIR HIDDEN INTERMEDIATE LAYERS VOCAB\n", argv[0]);
    return 2;
  }
  auto c = lema::model_preset("tiny");
  c->hidden_size = std::atoll(argv[2]);
  c->intermediate_size = std::atoll(argv[3]);
  c->n_layers = std::atoll(argv[4]);
  c->vocab_size = std::atoll(argv[5]);
  c->head_dim = 128;
  c->n_heads = c->hidden_size / 128;
  c->n_kv_heads = c->n_heads;
  if (c->hidden_size <= 0 || c->hidden_size % 128 != 0 || c->intermediate_size <= 0 || c->n_layers <= 0 ||
      c->vocab_size <= 0) {
    std::fprintf(stderr, "HIDDEN must be a positive multiple of 128; the other sizes positive\n");
    return 2;
  }
  lema::Status st = lema::write_random_hf_model(*c, argv[1], 1);
  if (!st.ok()) {
    std::fprintf(stderr, "error: %s\n", st.to_string().c_str());
    return 1;
  }
  return 0;
}
