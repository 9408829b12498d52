// The SentencePiece trainer settings lema uses for its small models, in one
// place: the trainer executable and the parity test both use them.
#pragma once

#include <string>

namespace lema {

// BPE with byte fallback, digits split, every character kept, no Unicode
// normalization (lema's tokenizer does not carry NFKC tables), whitespace
// kept as written (Llama-2 style), <unk>=0 <s>=1 </s>=2, optional <pad>=3.
inline std::string spm_train_args(const std::string& corpus, const std::string& model_prefix, int vocab_size,
                                  bool with_pad) {
  std::string a = "--input=" + corpus + " --model_prefix=" + model_prefix +
                  " --vocab_size=" + std::to_string(vocab_size) +
                  " --model_type=bpe --byte_fallback=true --split_digits=true --character_coverage=1.0"
                  " --normalization_rule_name=identity --remove_extra_whitespaces=false --add_dummy_prefix=true"
                  " --allow_whitespace_only_pieces=true --max_sentence_length=65536"
                  " --unk_id=0 --bos_id=1 --eos_id=2 --num_threads=2"
                  " --input_sentence_size=2000000 --shuffle_input_sentence=true";
  a += with_pad ? " --pad_id=3" : " --pad_id=-1";
  return a;
}

}  // namespace lema
