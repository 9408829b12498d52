// The projections LoRA adapts, without LibTorch (the memory planner counts
// them too): the seven of every family's decoder layer, in the order PEFT
// and HF list them.
#pragma once

namespace lema::engine {

enum class LoraTarget { kQ = 0, kK, kV, kO, kGate, kUp, kDown };
constexpr int kNumLoraTargets = 7;

}  // namespace lema::engine
