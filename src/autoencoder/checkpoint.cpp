// NLA checkpoint directories: HF files + nla_meta.yaml (+ value_head.safetensors for the AR).
#include "nla/autoencoder/checkpoint.hpp"

#include <ATen/ATen.h>
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <optional>

#include "nla/core/atomic_file.hpp"
#include "nla/core/error.hpp"
#include "nla/core/fs.hpp"
#include "nla/io/safetensors.hpp"
#include "nla/model/qwen2_config.hpp"
#include "nla/autoencoder/prompts.hpp"

namespace nla::autoencoder {

NlaMeta NlaMeta::defaults(const std::string& role, int64_t d_model, int64_t layer, double injection_scale) {
  NlaMeta meta;
  meta.role = role;
  meta.d_model = d_model;
  meta.injection_scale = injection_scale;
  meta.mse_scale = std::sqrt(static_cast<double>(d_model));
  meta.injection_char = kInjectionChar;
  meta.injection_token_id = kInjectionTokenId;
  meta.injection_left_neighbor_id = kInjectionLeftNeighborId;
  meta.injection_right_neighbor_id = kInjectionRightNeighborId;
  meta.critic_suffix_ids = kCriticSuffixIds;
  meta.actor_template = kActorTemplate;
  meta.critic_template = kCriticTemplate;
  meta.extraction_layer_index = layer;
  return meta;
}

std::string NlaMeta::to_yaml() const {
  // Statistics come from store rows that were checked finite; a non-finite one here is a bug,
  // and a checkpoint holding `.nan` would poison every later stage.
  for (auto [name, value] : {std::pair{"injection_scale", std::optional<double>(injection_scale)},
                             std::pair{"mse_scale", std::optional<double>(mse_scale)}, std::pair{"var_nrm", var_nrm},
                             std::pair{"var_raw", var_raw}})
    NLA_CHECK(!value || std::isfinite(*value), "nla_meta.yaml: refusing to write extraction.", name, " = ", *value);
  YAML::Emitter out;
  out << YAML::BeginMap;
  out << YAML::Key << "schema_version" << YAML::Value << schema_version;
  out << YAML::Key << "kind" << YAML::Value << kind;
  out << YAML::Key << "role" << YAML::Value << role;
  out << YAML::Key << "d_model" << YAML::Value << d_model;
  out << YAML::Key << "extraction" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "injection_scale" << YAML::Value << injection_scale;
  out << YAML::Key << "mse_scale" << YAML::Value << mse_scale;
  if (var_nrm) out << YAML::Key << "var_nrm" << YAML::Value << *var_nrm;
  if (var_raw) out << YAML::Key << "var_raw" << YAML::Value << *var_raw;
  out << YAML::EndMap;
  out << YAML::Key << "tokens" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "injection_char" << YAML::Value << YAML::DoubleQuoted << injection_char;
  out << YAML::Key << "injection_token_id" << YAML::Value << injection_token_id;
  out << YAML::Key << "injection_left_neighbor_id" << YAML::Value << injection_left_neighbor_id;
  out << YAML::Key << "injection_right_neighbor_id" << YAML::Value << injection_right_neighbor_id;
  out << YAML::Key << "critic_suffix_ids" << YAML::Value << YAML::Flow << critic_suffix_ids;
  out << YAML::EndMap;
  out << YAML::Key << "prompt_templates" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "actor" << YAML::Value << YAML::DoubleQuoted << actor_template;
  out << YAML::Key << "critic" << YAML::Value << YAML::DoubleQuoted << critic_template;
  out << YAML::EndMap;
  out << YAML::Key << "critic" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "extraction_layer_index" << YAML::Value << extraction_layer_index;
  if (role == "ar") out << YAML::Key << "target" << YAML::Value << ar_target_name(ar_target);
  out << YAML::EndMap;
  if (!base_model.empty()) {
    out << YAML::Key << "nla" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "base_model" << YAML::Value << base_model;
    out << YAML::EndMap;
  }
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

namespace {

// node[path...] converted to T; InputError naming the file and the dotted key.
template <typename T>
T field(const YAML::Node& root, const std::string& source, const std::vector<std::string>& path, bool required,
        T fallback) {
  YAML::Node node = YAML::Clone(root);
  std::string dotted;
  for (const auto& key : path) {
    dotted += (dotted.empty() ? "" : ".") + key;
    if (!node.IsMap() || !node[key]) {
      NLA_CHECK_INPUT(!required, source, ": key '", dotted, "': missing");
      return fallback;
    }
    node = node[key];
  }
  try {
    return node.as<T>();
  } catch (const YAML::Exception&) {
    NLA_INPUT_ERROR(source, ": key '", dotted, "': unexpected value type");
  }
}

}  // namespace

NlaMeta NlaMeta::from_yaml(const std::string& text, const std::string& source) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    NLA_INPUT_ERROR(source, ": not valid YAML: ", e.what());
  }
  NLA_CHECK_INPUT(root.IsMap(), source, ": expected a YAML mapping");
  NlaMeta meta;
  meta.schema_version = field<int64_t>(root, source, {"schema_version"}, true, 0);
  NLA_CHECK_INPUT(meta.schema_version == 2, source, ": key 'schema_version': expected 2, got ", meta.schema_version);
  meta.kind = field<std::string>(root, source, {"kind"}, false, "");
  meta.role = field<std::string>(root, source, {"role"}, true, "");
  // The authors' training-time sidecars name the roles by their RL names.
  if (meta.role == "actor") meta.role = "av";
  if (meta.role == "critic") meta.role = "ar";
  NLA_CHECK_INPUT(meta.role == "av" || meta.role == "ar", source,
                  ": key 'role': expected av, ar, actor or critic, got '", meta.role, "'");
  meta.d_model = field<int64_t>(root, source, {"d_model"}, true, 0);
  NLA_CHECK_INPUT(meta.d_model > 0, source, ": key 'd_model': expected > 0, got ", meta.d_model);
  meta.injection_scale = field<double>(root, source, {"extraction", "injection_scale"}, false, 0.0);
  meta.mse_scale = field<double>(root, source, {"extraction", "mse_scale"}, false,
                                 std::sqrt(static_cast<double>(meta.d_model)));
  if (root["extraction"] && root["extraction"]["var_nrm"])
    meta.var_nrm = field<double>(root, source, {"extraction", "var_nrm"}, true, 0.0);
  for (auto [name, value] : {std::pair{"injection_scale", std::optional<double>(meta.injection_scale)},
                             std::pair{"mse_scale", std::optional<double>(meta.mse_scale)},
                             std::pair{"var_nrm", meta.var_nrm}})
    NLA_CHECK_INPUT(!value || (std::isfinite(*value) && *value >= 0), source, ": key 'extraction.", name,
                    "': expected a finite value >= 0, got ", *value);
  if (root["extraction"] && root["extraction"]["var_raw"]) {
    meta.var_raw = field<double>(root, source, {"extraction", "var_raw"}, true, 0.0);
    NLA_CHECK_INPUT(*meta.var_raw > 0 && std::isfinite(*meta.var_raw), source,
                    ": key 'extraction.var_raw': expected a finite value > 0, got ", *meta.var_raw);
  }
  meta.ar_target = parse_ar_target(field<std::string>(root, source, {"critic", "target"}, false, "normalized"),
                                   source + ": key 'critic.target'");
  meta.injection_char = field<std::string>(root, source, {"tokens", "injection_char"}, false, kInjectionChar);
  meta.injection_token_id = field<int64_t>(root, source, {"tokens", "injection_token_id"}, false, kInjectionTokenId);
  meta.injection_left_neighbor_id =
      field<int64_t>(root, source, {"tokens", "injection_left_neighbor_id"}, false, kInjectionLeftNeighborId);
  meta.injection_right_neighbor_id =
      field<int64_t>(root, source, {"tokens", "injection_right_neighbor_id"}, false, kInjectionRightNeighborId);
  meta.critic_suffix_ids =
      field<std::vector<int64_t>>(root, source, {"tokens", "critic_suffix_ids"}, false, kCriticSuffixIds);
  meta.actor_template = field<std::string>(root, source, {"prompt_templates", "actor"}, false, kActorTemplate);
  meta.critic_template = field<std::string>(root, source, {"prompt_templates", "critic"}, false, kCriticTemplate);
  // critic.extraction_layer_index as released; the training-time form puts it at the top level.
  // Both templates must fill as the authors' loader fills them; say so now, not at first use.
  try {
    av_user_text(meta.actor_template);
    ar_input_text("", meta.critic_template);
  } catch (const InputError& e) {
    NLA_INPUT_ERROR(source, ": ", e.what());
  }
  meta.extraction_layer_index = field<int64_t>(root, source, {"critic", "extraction_layer_index"}, false,
                                               field<int64_t>(root, source, {"extraction_layer_index"}, false, -1));
  meta.base_model = field<std::string>(root, source, {"nla", "base_model"}, false, "");
  return meta;
}

ArObjective NlaMeta::ar_objective(const std::string& source) const {
  ArObjective objective;
  objective.target = ar_target;
  if (ar_target == ArTarget::raw) {
    NLA_CHECK_INPUT(var_raw.has_value(), source, ": key 'extraction.var_raw': missing (an AR with critic.target raw "
                    "needs it: the reward is -MSE / var_raw)");
    objective.var_raw = *var_raw;
  }
  return objective;
}

NlaMeta NlaMeta::read(const std::string& directory) {
  std::string path = directory + "/nla_meta.yaml";
  NLA_CHECK_INPUT(fs::exists(path), directory, ": expected an NLA checkpoint with nla_meta.yaml");
  return from_yaml(read_file(path), path);
}

namespace {

void write_common(model::Qwen2Model& model, const NlaMeta& meta, const std::string& directory,
                  const std::string& tokenizer_dir) {
  NLA_CHECK_INPUT(meta.d_model == model.config().hidden_size, "nla_meta: d_model ", meta.d_model,
                  " differs from the model's hidden_size ", model.config().hidden_size);
  fs::create_directories(directory);
  fs::remove(directory + "/nla_meta.yaml");  // absent until the checkpoint is whole again
  model::Qwen2Config config = model.config();
  config.num_hidden_layers = model.num_loaded_layers();
  config.torch_dtype = "float32";
  write_file_atomic(directory + "/config.json", config.to_json_text());
  model::save_weights(model, directory, at::kFloat, uint64_t{4} << 30);
  std::string source = tokenizer_dir;
  if (fs::is_regular_file(source)) source = fs::parent(source);
  for (const char* name : {"tokenizer.json", "tokenizer_config.json"}) {
    const std::string source_file = fs::join(source, name);
    if (fs::exists(source_file) && fs::absolute(source) != fs::absolute(directory))
      write_file_atomic(directory + "/" + name, read_file(source_file));
  }
}

}  // namespace

void save_av(model::Qwen2Model& av, const NlaMeta& meta, const std::string& directory,
             const std::string& tokenizer_dir) {
  NLA_CHECK(meta.role == "av", "save_av: role ", meta.role);
  write_common(av, meta, directory, tokenizer_dir);
  write_file_atomic(directory + "/nla_meta.yaml", meta.to_yaml());
}

void save_ar(Reconstructor& ar, const NlaMeta& meta, const std::string& directory,
             const std::string& tokenizer_dir) {
  NLA_CHECK(meta.role == "ar", "save_ar: role ", meta.role);
  NLA_CHECK(meta.extraction_layer_index == ar.layer(), "save_ar: meta layer ", meta.extraction_layer_index,
            " vs trunk layer ", ar.layer());
  write_common(ar.trunk(), meta, directory, tokenizer_dir);
  auto head = ar.value_head().detach().to(at::kCPU, at::kFloat).contiguous();  // (d, d)
  io::TensorBytes bytes{"weight", io::DType::F32, {head.size(0), head.size(1)}, head.data_ptr(),
                        static_cast<size_t>(head.numel()) * sizeof(float)};
  io::write_safetensors(directory + "/value_head.safetensors", {bytes});
  write_file_atomic(directory + "/nla_meta.yaml", meta.to_yaml());
}

Reconstructor load_ar(const std::string& directory, const model::LoadOptions& options, NlaMeta* meta_out) {
  NlaMeta meta = NlaMeta::read(directory);
  NLA_CHECK_INPUT(meta.role == "ar", directory, "/nla_meta.yaml: key 'role': expected ar, got '", meta.role, "'");
  auto config = model::Qwen2Config::from_file(directory);
  NLA_CHECK_INPUT(config.hidden_size == meta.d_model, directory, "/nla_meta.yaml: key 'd_model': ", meta.d_model,
                  " but config.json has hidden_size ", config.hidden_size);
  if (meta.extraction_layer_index >= 0)
    NLA_CHECK_INPUT(config.num_hidden_layers == meta.extraction_layer_index + 1, directory,
                    "/config.json: key 'num_hidden_layers': expected ", meta.extraction_layer_index + 1,
                    " (critic.extraction_layer_index + 1), got ", config.num_hidden_layers);
  model::LoadOptions trunk_options = options;
  trunk_options.num_layers = -1;
  trunk_options.with_head = false;
  auto trunk = model::Qwen2Model::load(directory, trunk_options);

  std::string head_path = directory + "/value_head.safetensors";
  NLA_CHECK_INPUT(fs::exists(head_path), directory, ": expected value_head.safetensors in an AR checkpoint");
  io::SafetensorsFile file(head_path);
  const io::TensorInfo* info = file.find("weight");
  NLA_CHECK_INPUT(info != nullptr, head_path, ": tensor 'weight': missing");
  int64_t d = meta.d_model;
  NLA_CHECK_INPUT(info->shape == (std::vector<int64_t>{d, d}), head_path, ": tensor 'weight': expected shape [", d,
                  ", ", d, "]");
  auto type = model::float_scalar_type(info->dtype, head_path + ": tensor 'weight'");
  auto host_head = at::from_blob(const_cast<uint8_t*>(file.data(*info)), {d, d}, at::TensorOptions().dtype(type))
                       .clone();  // (d, d)
  model::check_finite_weights(host_head, head_path, "weight");
  auto head = host_head.to(options.device, options.dtype);
  if (meta_out) *meta_out = meta;
  return Reconstructor(std::move(trunk), head, meta.critic_template);
}

model::Qwen2Model load_av(const std::string& directory, const model::LoadOptions& options, NlaMeta* meta_out) {
  NlaMeta meta = NlaMeta::read(directory);
  NLA_CHECK_INPUT(meta.role == "av", directory, "/nla_meta.yaml: key 'role': expected av, got '", meta.role, "'");
  auto av = model::Qwen2Model::load(directory, options);
  NLA_CHECK_INPUT(av.config().hidden_size == meta.d_model, directory, "/nla_meta.yaml: key 'd_model': ", meta.d_model,
                  " but config.json has hidden_size ", av.config().hidden_size);
  if (meta_out) *meta_out = meta;
  return av;
}

}  // namespace nla::autoencoder
