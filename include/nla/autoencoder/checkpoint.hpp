// NLA checkpoints (DESIGN section 3): a Hugging Face checkpoint directory plus the authors'
// sidecar nla_meta.yaml (schema_version 2). An AR checkpoint holds the truncated model
// (config.json with L + 1 layers, no final norm or LM head) and value_head.safetensors
// (key "weight", [d, d]). Both our checkpoints and the authors' released ones load.
//
// nla_meta.yaml as written here (keys beyond the authors' schema are marked "nla:"):
//   schema_version: 2
//   kind: nla_checkpoint
//   role: av | ar
//   d_model: 3584
//   extraction: {injection_scale: 150.0, mse_scale: 59.87, var_nrm: 0.81 (nla:), var_raw: 3.2 (nla:)}
//   tokens: {injection_char, injection_token_id, injection_left_neighbor_id,
//            injection_right_neighbor_id, critic_suffix_ids: [...]}
//   prompt_templates: {actor: "...{injection_char}...", critic: "...{explanation}..."}
//   critic: {extraction_layer_index: 20, target: normalized | raw (nla:, AR only; absent = normalized)}
//   nla: {base_model: DIR}
// Also read: the authors' training-time form (role actor | critic, extraction_layer_index
// at the top level) and nla's own older templates ({marker}, {description}).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "nla/model/qwen2.hpp"
#include "nla/autoencoder/losses.hpp"
#include "nla/autoencoder/reconstructor.hpp"

namespace nla::autoencoder {

struct NlaMeta {
  int64_t schema_version = 2;
  std::string kind = "nla_checkpoint";
  std::string role;  // "av" | "ar"
  int64_t d_model = 0;
  double injection_scale = 0;
  double mse_scale = 0;  // the norm both vectors are scaled to before the MSE: sqrt(d_model)
  std::string injection_char;
  int64_t injection_token_id = 0;
  int64_t injection_left_neighbor_id = 0;
  int64_t injection_right_neighbor_id = 0;
  std::vector<int64_t> critic_suffix_ids;
  std::string actor_template;
  std::string critic_template;
  int64_t extraction_layer_index = -1;
  std::optional<double> var_nrm;  // extraction.var_nrm (ours; absent in the authors')
  std::optional<double> var_raw;  // extraction.var_raw (ours): the raw training rows' mean per-dimension variance
  // critic.target (ours): what the AR was trained to predict. The authors' ARs predict a
  // direction (mse_nrm), so an absent key reads as normalized.
  ArTarget ar_target = ArTarget::normalized;
  std::string base_model;         // nla.base_model (ours)

  // Our defaults for a model of width d at layer L (Qwen2.5 tokens and prompts).
  static NlaMeta defaults(const std::string& role, int64_t d_model, int64_t layer, double injection_scale);
  std::string to_yaml() const;
  // `source` names the file in messages; InputError for a missing or mistyped field.
  static NlaMeta from_yaml(const std::string& text, const std::string& source);
  static NlaMeta read(const std::string& directory);  // <directory>/nla_meta.yaml
  // The AR's objective; a raw AR without var_raw is an InputError naming `source`.
  ArObjective ar_objective(const std::string& source) const;
};

// Writes <directory> (created; files atomic, nla_meta.yaml last so its presence marks a
// complete checkpoint): config.json, model.safetensors, tokenizer files copied from
// `tokenizer_dir` when present there, nla_meta.yaml.
void save_av(model::Qwen2Model& av, const NlaMeta& meta, const std::string& directory, const std::string& tokenizer_dir);
// As save_av, plus value_head.safetensors; config.json says L + 1 layers.
void save_ar(Reconstructor& ar, const NlaMeta& meta, const std::string& directory, const std::string& tokenizer_dir);

// Loads an AR checkpoint (ours or the authors'): checks role, d_model and the layer count
// against nla_meta.yaml.
Reconstructor load_ar(const std::string& directory, const model::LoadOptions& options = {}, NlaMeta* meta = nullptr);
// Loads an AV checkpoint: the full model with its head.
model::Qwen2Model load_av(const std::string& directory, const model::LoadOptions& options = {}, NlaMeta* meta = nullptr);

}  // namespace nla::autoencoder
