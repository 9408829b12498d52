#include "common/formats/rope_scaling.h"

#include <cmath>

namespace lema {

double longrope_attention_factor(const ModelConfig& c) {
  const RopeScaling& s = c.rope_scaling;
  if (s.type != RopeScalingType::kLongrope) return 1.0;
  if (s.attention_factor > 0) return s.attention_factor;
  const double original = static_cast<double>(s.original_max_position_embeddings);
  // transformers 5 derives the factor from the context lengths when the
  // config does not give one (Phi-3's configs do not).
  const double factor = s.factor_given ? s.factor : static_cast<double>(c.max_position_embeddings) / original;
  if (factor <= 1.0) return 1.0;
  return std::sqrt(1.0 + std::log(factor) / std::log(original));
}

}  // namespace lema
