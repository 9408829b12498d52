#include "common/formats/model_config.h"

#include <gtest/gtest.h>

#include "common/formats/model_family.h"

namespace lema {
namespace {

// config.json texts as published on the Hugging Face Hub.
const char* kLlama2_7B = R"({"architectures":["LlamaForCausalLM"],"bos_token_id":1,"eos_token_id":2,
"hidden_act":"silu","hidden_size":4096,"initializer_range":0.02,"intermediate_size":11008,
"max_position_embeddings":4096,"model_type":"llama","num_attention_heads":32,"num_hidden_layers":32,
"num_key_value_heads":32,"pretraining_tp":1,"rms_norm_eps":1e-05,"rope_scaling":null,
"tie_word_embeddings":false,"torch_dtype":"float16","transformers_version":"4.31.0.dev0","use_cache":true,
"vocab_size":32000})";

const char* kLlama3_8B =
    R"({"architectures":["LlamaForCausalLM"],"attention_bias":false,"attention_dropout":0.0,
"bos_token_id":128000,"eos_token_id":128001,"hidden_act":"silu","hidden_size":4096,"initializer_range":0.02,
"intermediate_size":14336,"max_position_embeddings":8192,"model_type":"llama","num_attention_heads":32,
"num_hidden_layers":32,"num_key_value_heads":8,"pretraining_tp":1,"rms_norm_eps":1e-05,"rope_scaling":null,
"rope_theta":500000.0,"tie_word_embeddings":false,"torch_dtype":"bfloat16","transformers_version":"4.40.0.dev0",
"use_cache":true,"vocab_size":128256})";

const char* kLlama31_8B =
    R"({"architectures":["LlamaForCausalLM"],"attention_bias":false,"attention_dropout":0.0,
"bos_token_id":128000,"eos_token_id":[128001,128008,128009],"hidden_act":"silu","hidden_size":4096,
"initializer_range":0.02,"intermediate_size":14336,"max_position_embeddings":131072,"mlp_bias":false,
"model_type":"llama","num_attention_heads":32,"num_hidden_layers":32,"num_key_value_heads":8,"pretraining_tp":1,
"rms_norm_eps":1e-05,"rope_scaling":{"factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,
"original_max_position_embeddings":8192,"rope_type":"llama3"},"rope_theta":500000.0,"tie_word_embeddings":false,
"torch_dtype":"bfloat16","transformers_version":"4.43.0.dev0","use_cache":true,"vocab_size":128256})";

const char* kMistral7B = R"({"architectures":["MistralForCausalLM"],"bos_token_id":1,"eos_token_id":2,
"hidden_act":"silu","hidden_size":4096,"initializer_range":0.02,"intermediate_size":14336,
"max_position_embeddings":32768,"model_type":"mistral","num_attention_heads":32,"num_hidden_layers":32,
"num_key_value_heads":8,"rms_norm_eps":1e-05,"rope_theta":10000.0,"sliding_window":4096,
"tie_word_embeddings":false,"torch_dtype":"bfloat16","transformers_version":"4.34.0.dev0","use_cache":true,
"vocab_size":32000})";

const char* kTinyLlama = R"({"architectures":["LlamaForCausalLM"],"attention_bias":false,"bos_token_id":1,
"eos_token_id":2,"hidden_act":"silu","hidden_size":2048,"initializer_range":0.02,"intermediate_size":5632,
"max_position_embeddings":2048,"model_type":"llama","num_attention_heads":32,"num_hidden_layers":22,
"num_key_value_heads":4,"pretraining_tp":1,"rms_norm_eps":1e-05,"rope_scaling":null,"rope_theta":10000.0,
"tie_word_embeddings":false,"torch_dtype":"bfloat16","transformers_version":"4.35.0","use_cache":true,
"vocab_size":32000})";

ModelConfig must_parse(const std::string& text) {
  auto r = parse_model_config(text, "config.json");
  EXPECT_TRUE(r.ok()) << r.status().to_string();
  return r.ok() ? *r : ModelConfig();
}

TEST(ModelConfig, Llama2_7B) {
  ModelConfig c = must_parse(kLlama2_7B);
  EXPECT_EQ(c.architecture, "LlamaForCausalLM");
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(c.intermediate_size, 11008);
  EXPECT_EQ(c.n_layers, 32);
  EXPECT_EQ(c.n_heads, 32);
  EXPECT_EQ(c.n_kv_heads, 32);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);  // default when absent
  EXPECT_EQ(c.rope_scaling.type, RopeScalingType::kNone);
  EXPECT_EQ(c.vocab_size, 32000);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.max_position_embeddings, 4096);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{2});
  EXPECT_EQ(c.torch_dtype, "float16");
  EXPECT_EQ(c.q_dim(), 4096);
  EXPECT_EQ(c.kv_dim(), 4096);
}

TEST(ModelConfig, Llama3_8B_GQA) {
  ModelConfig c = must_parse(kLlama3_8B);
  EXPECT_EQ(c.n_kv_heads, 8);
  EXPECT_EQ(c.kv_dim(), 1024);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.vocab_size, 128256);
  EXPECT_EQ(c.torch_dtype, "bfloat16");
}

TEST(ModelConfig, Llama31_8B_RopeScalingLlama3) {
  ModelConfig c = must_parse(kLlama31_8B);
  EXPECT_EQ(c.n_kv_heads, 8);
  EXPECT_EQ(c.rope_scaling.type, RopeScalingType::kLlama3);
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 8.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{128001, 128008, 128009}));
  EXPECT_EQ(c.max_position_embeddings, 131072);
}

// transformers 5 writes RoPE settings only inside rope_parameters.
TEST(ModelConfig, Transformers5RopeParameters) {
  const std::string base = R"({"architectures":["LlamaForCausalLM"],"hidden_size":256,"intermediate_size":512,
"num_attention_heads":8,"num_hidden_layers":3,"num_key_value_heads":2,"vocab_size":1000,"dtype":"float32",)";
  ModelConfig c = must_parse(base + R"("rope_parameters":{"rope_theta":500000.0,"rope_type":"llama3","factor":8.0,
"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":64}})");
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope_scaling.type, RopeScalingType::kLlama3);
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 8.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 64);
  EXPECT_EQ(c.torch_dtype, "float32");

  c = must_parse(base + R"("rope_parameters":{"rope_theta":20000.0,"rope_type":"default"}})");
  EXPECT_DOUBLE_EQ(c.rope_theta, 20000.0);
  EXPECT_EQ(c.rope_scaling.type, RopeScalingType::kNone);

  auto bad = parse_model_config(base + R"("rope_parameters":{"rope_theta":1e4,"rope_type":"yarn","factor":4}})",
                                "m/config.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("m/config.json: key 'rope_parameters': type 'yarn'"), std::string::npos)
      << bad.status().to_string();
  bad = parse_model_config(base + R"("rope_parameters":{"rope_theta":-1}})", "m/config.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("'rope_parameters.rope_theta'"), std::string::npos)
      << bad.status().to_string();
}

TEST(ModelConfig, Mistral7B_SlidingWindowRecorded) {
  ModelConfig c = must_parse(kMistral7B);
  EXPECT_EQ(c.architecture, "MistralForCausalLM");
  EXPECT_EQ(c.n_kv_heads, 8);
  EXPECT_EQ(c.intermediate_size, 14336);
  EXPECT_EQ(c.sliding_window, 4096);
}

TEST(ModelConfig, TinyLlama) {
  ModelConfig c = must_parse(kTinyLlama);
  EXPECT_EQ(c.hidden_size, 2048);
  EXPECT_EQ(c.n_layers, 22);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.kv_dim(), 256);
}

TEST(ModelConfig, LinearRopeAndTypeKeyAndHeadDim) {
  std::string t = kLlama2_7B;
  t.replace(t.find("\"rope_scaling\":null"), 19,
            R"("rope_scaling":{"type":"linear","factor":2.0},"head_dim":64)");
  ModelConfig c = must_parse(t.c_str());
  EXPECT_EQ(c.rope_scaling.type, RopeScalingType::kLinear);
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 2.0);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.q_dim(), 2048);
}

void expect_refused(const std::string& text, const std::string& fragment) {
  auto r = parse_model_config(text, "dir/config.json");
  ASSERT_FALSE(r.ok()) << text;
  EXPECT_NE(r.status().message().find("dir/config.json"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find(fragment), std::string::npos) << r.status().message();
}

std::string with(const char* base, const std::string& from, const std::string& to) {
  std::string t = base;
  size_t p = t.find(from);
  EXPECT_NE(p, std::string::npos) << from;
  t.replace(p, from.size(), to);
  return t;
}

TEST(ModelConfig, Refusals) {
  expect_refused(R"({"architectures":["GPT2LMHeadModel"],"model_type":"gpt2","n_embd":768,"n_layer":12,
      "n_head":12,"vocab_size":50257})",
                 "GPT2LMHeadModel");
  expect_refused(R"({"architectures":["GPT2LMHeadModel"]})",
                 "supported: llama (LlamaForCausalLM), mistral (MistralForCausalLM), qwen2");
  expect_refused(with(kLlama2_7B, "LlamaForCausalLM", "Qwen2MoeForCausalLM"), "Qwen2MoeForCausalLM");
  expect_refused(with(kLlama3_8B, "\"attention_bias\":false", "\"attention_bias\":true"), "attention_bias");
  expect_refused(with(kLlama31_8B, "\"mlp_bias\":false", "\"mlp_bias\":true"), "mlp_bias");
  expect_refused(
      with(kLlama2_7B, "\"rope_scaling\":null", R"("rope_scaling":{"type":"dynamic","factor":2.0})"),
      "dynamic");
  expect_refused(
      with(kLlama2_7B, "\"rope_scaling\":null", R"("rope_scaling":{"rope_type":"yarn","factor":4.0})"),
      "supported: none, linear, llama3");
  expect_refused(with(kLlama2_7B, "\"rope_scaling\":null", R"("rope_scaling":{"type":"linear"})"),
                 "rope_scaling.factor");
  expect_refused(with(kLlama2_7B, "\"hidden_act\":\"silu\"", "\"hidden_act\":\"gelu\""), "hidden_act");
  expect_refused(with(kLlama2_7B, "\"hidden_size\":4096,", ""), "'hidden_size': missing");
  expect_refused(with(kLlama2_7B, "\"hidden_size\":4096", "\"hidden_size\":-4"), "'hidden_size'");
  expect_refused(with(kLlama2_7B, "\"hidden_size\":4096", "\"hidden_size\":\"4096\""), "'hidden_size'");
  expect_refused(with(kLlama2_7B, "\"num_key_value_heads\":32", "\"num_key_value_heads\":5"),
                 "num_key_value_heads");
  expect_refused(with(kLlama2_7B, "\"torch_dtype\":\"float16\"", "\"torch_dtype\":\"int8\""), "torch_dtype");
  expect_refused(with(kLlama2_7B, "\"eos_token_id\":2", "\"eos_token_id\":\"</s>\""), "eos_token_id");
  expect_refused("{\"hidden_size\":", "not valid JSON");
  expect_refused("[1]", "not a JSON object");
}

TEST(ModelConfig, ToJsonRoundTrip) {
  for (const char* text : {kLlama2_7B, kLlama3_8B, kLlama31_8B, kMistral7B, kTinyLlama}) {
    ModelConfig a = must_parse(text);
    a.pad_token_id = 7;
    std::string js = model_config_to_json(a);
    ModelConfig b = must_parse(js.c_str());
    EXPECT_EQ(a.architecture, b.architecture);
    EXPECT_EQ(a.hidden_size, b.hidden_size);
    EXPECT_EQ(a.intermediate_size, b.intermediate_size);
    EXPECT_EQ(a.n_layers, b.n_layers);
    EXPECT_EQ(a.n_heads, b.n_heads);
    EXPECT_EQ(a.n_kv_heads, b.n_kv_heads);
    EXPECT_EQ(a.head_dim, b.head_dim);
    EXPECT_EQ(a.rms_norm_eps, b.rms_norm_eps);
    EXPECT_EQ(a.rope_theta, b.rope_theta);
    EXPECT_EQ(a.rope_scaling.type, b.rope_scaling.type);
    EXPECT_EQ(a.rope_scaling.factor, b.rope_scaling.factor);
    EXPECT_EQ(a.rope_scaling.low_freq_factor, b.rope_scaling.low_freq_factor);
    EXPECT_EQ(a.rope_scaling.high_freq_factor, b.rope_scaling.high_freq_factor);
    EXPECT_EQ(a.rope_scaling.original_max_position_embeddings,
              b.rope_scaling.original_max_position_embeddings);
    EXPECT_EQ(a.vocab_size, b.vocab_size);
    EXPECT_EQ(a.tie_word_embeddings, b.tie_word_embeddings);
    EXPECT_EQ(a.max_position_embeddings, b.max_position_embeddings);
    EXPECT_EQ(a.bos_token_id, b.bos_token_id);
    EXPECT_EQ(a.eos_token_ids, b.eos_token_ids);
    EXPECT_EQ(a.pad_token_id, b.pad_token_id);
    EXPECT_EQ(a.torch_dtype, b.torch_dtype);
    EXPECT_EQ(a.initializer_range, b.initializer_range);
    EXPECT_EQ(a.sliding_window, b.sliding_window);
    EXPECT_EQ(js, model_config_to_json(b));
  }
}

}  // namespace
}  // namespace lema

namespace lema {
namespace {

// The config.json files of real models (published values, in
// tests/data/model_configs): each is read as its family, with the features
// that family's decoder must honour.
ModelConfig must_load(const std::string& name) {
  auto r = load_model_config(std::string(LEMA_TEST_DATA_DIR) + "/model_configs/" + name);
  EXPECT_TRUE(r.ok()) << name << ": " << r.status().to_string();
  return r.ok() ? *r : ModelConfig{};
}

TEST(ModelConfigFamilies, RealModelsParse) {
  ModelConfig q25 = must_load("qwen2.5-7b-instruct.json");
  EXPECT_EQ(q25.family, ModelFamily::kQwen2);
  EXPECT_TRUE(q25.attention_bias);  // Qwen2's q/k/v bias comes with the class
  EXPECT_EQ(q25.sliding_window, 0);  // use_sliding_window false: the 131072 window is off
  EXPECT_EQ(q25.head_dim, 128);

  ModelConfig q3 = must_load("qwen3-8b.json");
  EXPECT_EQ(q3.family, ModelFamily::kQwen3);
  EXPECT_TRUE(q3.qk_norm());
  EXPECT_FALSE(q3.attention_bias);
  EXPECT_EQ(q3.head_dim, 128);
  EXPECT_EQ(q3.q_dim(), 4096);

  ModelConfig g3 = must_load("gemma-3-4b-it-text.json");
  EXPECT_EQ(g3.family, ModelFamily::kGemma3);
  EXPECT_EQ(g3.architecture, "Gemma3ForCausalLM");
  EXPECT_EQ(g3.head_dim, 256);
  EXPECT_EQ(g3.q_dim(), 2048);
  EXPECT_EQ(g3.sliding_window, 1024);
  EXPECT_DOUBLE_EQ(g3.rope_local_base_freq, 10000.0);
  EXPECT_EQ(g3.rope_scaling.type, RopeScalingType::kLinear);
  EXPECT_DOUBLE_EQ(g3.attention_scale(), 1.0 / 16.0);
  EXPECT_EQ(g3.hidden_act, "gelu_pytorch_tanh");
  EXPECT_TRUE(g3.tie_word_embeddings);  // Gemma3TextConfig ties by default
  // Every sixth layer is global: layers 5, 11, ... attend to everything.
  for (int64_t l = 0; l < g3.n_layers; ++l) EXPECT_EQ(g3.is_sliding(l), (l + 1) % 6 != 0) << "layer " << l;

  ModelConfig m = must_load("mistral-7b-v0.3.json");
  EXPECT_EQ(m.family, ModelFamily::kMistral);
  EXPECT_EQ(m.sliding_window, 0);  // null in v0.3

  ModelConfig l31 = must_load("llama-3.1-8b-instruct.json");
  EXPECT_EQ(l31.rope_scaling.type, RopeScalingType::kLlama3);
  EXPECT_EQ(l31.eos_token_ids, (std::vector<int64_t>{128001, 128008, 128009}));
  ModelConfig l32 = must_load("llama-3.2-1b.json");
  EXPECT_TRUE(l32.tie_word_embeddings);
  EXPECT_DOUBLE_EQ(l32.rope_scaling.factor, 32.0);

  // Phi-3.5-mini: fused projections, LongRoPE with the published 48-value
  // lists, a 262144 window longer than the context (so none).
  ModelConfig phi = must_load("phi-3.5-mini-instruct.json");
  EXPECT_EQ(phi.family, ModelFamily::kPhi3);
  EXPECT_TRUE(phi.fused_projections());
  EXPECT_EQ(phi.head_dim, 96);
  EXPECT_EQ(phi.rotary_dim(), 96);
  EXPECT_EQ(phi.sliding_window, 0);
  EXPECT_EQ(phi.rope_scaling.type, RopeScalingType::kLongrope);
  EXPECT_EQ(phi.rope_scaling.original_max_position_embeddings, 4096);
  ASSERT_EQ(phi.rope_scaling.short_factor.size(), 48u);
  ASSERT_EQ(phi.rope_scaling.long_factor.size(), 48u);
  EXPECT_DOUBLE_EQ(phi.rope_scaling.short_factor[47], 2.8399994373321533);
  EXPECT_DOUBLE_EQ(phi.rope_scaling.long_factor[0], 1.0800000429153442);
  EXPECT_DOUBLE_EQ(phi.rope_scaling.long_factor[47], 64.83999633789062);
  EXPECT_FALSE(phi.rope_scaling.factor_given);
  EXPECT_EQ(phi.pad_token_id, 32000);
}

TEST(ModelConfigFamilies, Phi3RopeKeys) {
  const std::string dims = R"("model_type":"phi3","hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,
    "num_attention_heads":4,"vocab_size":100,"max_position_embeddings":64,)";
  // "su" is longrope; the original length may sit in the rope object
  // (transformers 5) or at the top level; partial_rotary_factor shortens the lists.
  ModelConfig c = parse_model_config("{" + dims + R"("partial_rotary_factor":0.5,"original_max_position_embeddings":16,
    "rope_scaling":{"type":"su","short_factor":[1,2,3,4],"long_factor":[2,3,4,5]}})", "p.json").value();
  EXPECT_EQ(c.rope_scaling.type, RopeScalingType::kLongrope);
  EXPECT_EQ(c.rotary_dim(), 8);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 16);
  c = parse_model_config("{" + dims + R"("rope_parameters":{"rope_type":"longrope","rope_theta":500.0,
    "original_max_position_embeddings":8,"partial_rotary_factor":0.75,"factor":2.0,
    "short_factor":[1,1,1,1,1,1],"long_factor":[2,2,2,2,2,2]}})", "p.json").value();
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8);
  EXPECT_EQ(c.rotary_dim(), 12);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500.0);
  EXPECT_TRUE(c.rope_scaling.factor_given);
  // Round trip through Phi3Config's spelling.
  ModelConfig back = parse_model_config(model_config_to_json(c), "p.json").value();
  EXPECT_EQ(back.rope_scaling.short_factor, c.rope_scaling.short_factor);
  EXPECT_EQ(back.rope_scaling.long_factor, c.rope_scaling.long_factor);
  EXPECT_EQ(back.rope_scaling.original_max_position_embeddings, 8);
  EXPECT_DOUBLE_EQ(back.partial_rotary_factor, 0.75);
  EXPECT_DOUBLE_EQ(back.rope_scaling.factor, 2.0);
  EXPECT_EQ(model_config_to_json(back), model_config_to_json(c));

  auto refused = [](const std::string& text, const std::string& fragment) {
    auto r = parse_model_config(text, "c.json");
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_NE(r.status().message().find(fragment), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find("c.json"), std::string::npos) << r.status().message();
  };
  const std::string lists = R"("short_factor":[1,1,1,1,1,1,1,1],"long_factor":[2,2,2,2,2,2,2,2])";
  // Wrong list length (head_dim 16 -> 8 pairs expected).
  refused("{" + dims + R"("original_max_position_embeddings":16,"rope_scaling":{"type":"longrope","short_factor":[1,2],"long_factor":[1,2]}})",
          "rotary_dim / 2 = 8");
  refused("{" + dims + R"("rope_scaling":{"type":"longrope",)" + lists + "}}", "original_max_position_embeddings");
  refused("{" + dims + R"("original_max_position_embeddings":16,"rope_scaling":{"type":"longrope","short_factor":[1,1,1,1,1,1,1,1]}})",
          "long_factor");
  refused("{" + dims + R"("original_max_position_embeddings":16,"rope_scaling":{"type":"longrope","short_factor":[1,1,1,1,1,1,1,-1],"long_factor":[2,2,2,2,2,2,2,2]}})",
          "short_factor");
  refused("{" + dims + R"("resid_pdrop":0.1})", "resid_pdrop");
  refused("{" + dims + R"("embd_pdrop":0.1})", "embd_pdrop");
  refused("{" + dims + R"("partial_rotary_factor":0.1})", "partial_rotary_factor");
  refused("{" + dims + R"("rope_scaling":{"type":"yarn","factor":4.0}})", "yarn");
  // longrope and partial rotary are Phi-3's here: another family refuses them.
  const std::string llama = R"("model_type":"llama","hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,
    "num_attention_heads":4,"vocab_size":100,)";
  refused("{" + llama + R"("rope_scaling":{"type":"longrope",)" + lists + "}}", "phi3 only");
  refused("{" + llama + R"("partial_rotary_factor":0.5})", "partial_rotary_factor");
  // Phi-3-mini-4k's window (2047 < 4096) slides on every layer, as Mistral's.
  c = parse_model_config("{" + dims + R"("sliding_window":20})", "p.json").value();
  EXPECT_EQ(c.sliding_window, 20);
  EXPECT_TRUE(c.is_sliding(0) && c.is_sliding(1));
}

TEST(ModelConfigFamilies, SlidingWindowsAsTransformersDecides) {
  // Mistral: a window shorter than the context slides on every layer.
  std::string mistral = R"({"architectures":["MistralForCausalLM"],"hidden_size":64,"intermediate_size":128,
    "num_hidden_layers":3,"num_attention_heads":4,"vocab_size":100,"max_position_embeddings":512,"sliding_window":20})";
  ModelConfig c = parse_model_config(mistral, "m.json").value();
  EXPECT_EQ(c.sliding_window, 20);
  for (int64_t l = 0; l < 3; ++l) EXPECT_TRUE(c.is_sliding(l));
  // Qwen2 with use_sliding_window: from max_window_layers on.
  std::string qwen = R"({"model_type":"qwen2","hidden_size":64,"intermediate_size":128,"num_hidden_layers":4,
    "num_attention_heads":4,"vocab_size":100,"max_position_embeddings":512,"sliding_window":32,
    "use_sliding_window":true,"max_window_layers":2})";
  c = parse_model_config(qwen, "q.json").value();
  EXPECT_EQ(c.layer_sliding, (std::vector<bool>{false, false, true, true}));
  // layer_types, where listed, decides; an unknown type is refused.
  std::string listed = qwen.substr(0, qwen.size() - 1) +
                       R"(,"layer_types":["sliding_attention","full_attention","full_attention","sliding_attention"]})";
  c = parse_model_config(listed, "q.json").value();
  EXPECT_EQ(c.layer_sliding, (std::vector<bool>{true, false, false, true}));
  std::string chunked = qwen.substr(0, qwen.size() - 1) +
                        R"(,"layer_types":["chunked_attention","full_attention","full_attention","full_attention"]})";
  auto bad = parse_model_config(chunked, "q.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("layer_types[0]"), std::string::npos) << bad.status().message();
  // Llama has no sliding window in transformers: the key is not read.
  std::string llama = R"({"architectures":["LlamaForCausalLM"],"hidden_size":64,"intermediate_size":128,
    "num_hidden_layers":2,"num_attention_heads":4,"vocab_size":100,"max_position_embeddings":512,"sliding_window":20})";
  EXPECT_EQ(parse_model_config(llama, "l.json").value().sliding_window, 0);
}

TEST(ModelConfigFamilies, RefusalsNameTheKey) {
  auto refused = [](const std::string& text, const std::string& fragment) {
    auto r = parse_model_config(text, "c.json");
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_NE(r.status().message().find(fragment), std::string::npos) << r.status().message();
  };
  const std::string dims = R"("hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"vocab_size":100)";
  refused(R"({"model_type":"qwen2_moe",)" + dims + "}", "qwen2_moe");
  refused(R"({"model_type":"qwen3","num_experts":8,)" + dims + "}", "num_experts");
  refused(R"({"model_type":"llama","architectures":["Qwen2ForCausalLM"],)" + dims + "}", "does not match");
  refused(R"({"model_type":"gemma3_text","hidden_activation":"gelu",)" + dims + "}", "hidden_activation");
  refused(R"({"model_type":"llama","final_logit_softcapping":30.0,)" + dims + "}", "final_logit_softcapping");
  refused(R"({"model_type":"qwen3","attention_bias":true,)" + dims + "}", "attention_bias");
}

TEST(ModelConfigFamilies, ToJsonRoundTripKeepsTheFamily) {
  for (const char* name : {"qwen2.5-7b-instruct.json", "qwen3-8b.json", "gemma-3-4b-it-text.json",
                           "phi-3.5-mini-instruct.json"}) {
    ModelConfig a = must_load(name);
    const std::string js = model_config_to_json(a);
    ModelConfig b = parse_model_config(js, name).value();
    EXPECT_EQ(a.family, b.family) << name;
    EXPECT_EQ(a.attention_bias, b.attention_bias) << name;
    EXPECT_EQ(a.sliding_window, b.sliding_window) << name;
    EXPECT_EQ(a.layer_sliding, b.layer_sliding) << name;
    EXPECT_EQ(a.rope_local_base_freq, b.rope_local_base_freq) << name;
    EXPECT_EQ(a.query_pre_attn_scalar, b.query_pre_attn_scalar) << name;
    EXPECT_EQ(a.head_dim, b.head_dim) << name;
    EXPECT_EQ(js, model_config_to_json(b)) << name;
  }
}

}  // namespace
}  // namespace lema
