#include "common/formats/model_config.h"

#include <gtest/gtest.h>

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
                 "supported: LlamaForCausalLM and MistralForCausalLM");
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
