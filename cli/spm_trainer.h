// Runs the lema-spm-train executable (it links libsentencepiece, which must
// never share a process with LibTorch), found through $LEMA_SPM_TRAIN, next
// to this binary, or in the build tree (build/tools/spm_train/). It writes
// tokenizer.model, tokenizer.json and tokenizer_config.json into `out`.
#pragma once

#include <string>

#include "common/base/status.h"

namespace lema::cli {

// corpus: a text file, one sentence or paragraph per line; vocab >= 260;
// pad: add a <pad> piece (id 3).
Status run_spm_train(const std::string& corpus, int vocab, const std::string& out, bool pad);

}  // namespace lema::cli
