// The Hugging Face name map and everything that moves weights in or out of the model:
// checkpoint loading (with shape/dtype validation), seeded initialisation, saving.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cstring>

#include "nla/core/error.hpp"
#include "nla/core/fs.hpp"
#include "nla/core/log.hpp"
#include "nla/io/safetensors.hpp"
#include "nla/model/qwen2.hpp"

namespace nla::model {

std::vector<ParameterSlot> qwen2_parameter_slots(Qwen2Weights& weights, const Qwen2Config& config, int64_t num_layers,
                                                 bool with_head) {
  using Init = ParameterSlot::Init;
  const int64_t c = config.hidden_size, i = config.intermediate_size, v = config.vocab_size;
  const int64_t kv = config.num_key_value_heads * config.head_dim();
  if (num_layers < 0) num_layers = config.num_hidden_layers;
  weights.layers.resize(static_cast<size_t>(num_layers));
  std::vector<ParameterSlot> slots;
  slots.push_back({"model.embed_tokens.weight", {v, c}, Init::normal, &weights.embed_tokens});
  for (int64_t l = 0; l < num_layers; ++l) {
    Qwen2Block& b = weights.layers[static_cast<size_t>(l)];
    const std::string p = "model.layers." + std::to_string(l) + ".";
    slots.push_back({p + "input_layernorm.weight", {c}, Init::ones, &b.input_layernorm});
    slots.push_back({p + "self_attn.q_proj.weight", {c, c}, Init::normal, &b.q_proj_weight});
    slots.push_back({p + "self_attn.q_proj.bias", {c}, Init::zeros, &b.q_proj_bias});
    slots.push_back({p + "self_attn.k_proj.weight", {kv, c}, Init::normal, &b.k_proj_weight});
    slots.push_back({p + "self_attn.k_proj.bias", {kv}, Init::zeros, &b.k_proj_bias});
    slots.push_back({p + "self_attn.v_proj.weight", {kv, c}, Init::normal, &b.v_proj_weight});
    slots.push_back({p + "self_attn.v_proj.bias", {kv}, Init::zeros, &b.v_proj_bias});
    slots.push_back({p + "self_attn.o_proj.weight", {c, c}, Init::normal, &b.o_proj_weight});
    slots.push_back({p + "post_attention_layernorm.weight", {c}, Init::ones, &b.post_attention_layernorm});
    slots.push_back({p + "mlp.gate_proj.weight", {i, c}, Init::normal, &b.gate_proj_weight});
    slots.push_back({p + "mlp.up_proj.weight", {i, c}, Init::normal, &b.up_proj_weight});
    slots.push_back({p + "mlp.down_proj.weight", {c, i}, Init::normal, &b.down_proj_weight});
  }
  if (with_head) {
    slots.push_back({"model.norm.weight", {c}, Init::ones, &weights.norm});
    // A tied head is the embedding itself: no tensor of its own (llama.cpp does the same).
    if (!config.tie_word_embeddings) slots.push_back({"lm_head.weight", {v, c}, Init::normal, &weights.lm_head});
  }
  return slots;
}

c10::ScalarType dtype_from_config_name(const std::string& name, const std::string& where) {
  if (name == "float32") return at::kFloat;
  if (name == "bfloat16") return at::kBFloat16;
  if (name == "float16") return at::kHalf;
  NLA_INPUT_ERROR(where, ": expected float32, bfloat16 or float16, got '", name, "'");
}

namespace {

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string text = "[";
  for (size_t k = 0; k < shape.size(); ++k) text += (k ? ", " : "") + std::to_string(shape[k]);
  return text + "]";
}

io::DType io_dtype(c10::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat: return io::DType::F32;
    case at::kBFloat16: return io::DType::BF16;
    case at::kHalf: return io::DType::F16;
    case at::kDouble: return io::DType::F64;
    default: NLA_THROW("no safetensors dtype for ", c10::toString(dtype));
  }
}

// splitmix64 of the seed and an FNV-1a hash of the name: one independent stream per tensor.
uint64_t tensor_seed(uint64_t seed, const std::string& name) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : name) h = (h ^ ch) * 1099511628211ull;
  uint64_t z = seed + 0x9e3779b97f4a7c15ull * (h | 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// fp32 on CPU, as HF's _init_weights with initializer_range 0.02 (the embedding: embedding_std).
at::Tensor init_tensor(const ParameterSlot& slot, uint64_t seed, double embedding_std = 0.02) {
  switch (slot.init) {
    case ParameterSlot::Init::zeros: return at::zeros(slot.shape);
    case ParameterSlot::Init::ones: return at::ones(slot.shape);
    case ParameterSlot::Init::normal: {
      auto generator = at::make_generator<at::CPUGeneratorImpl>(tensor_seed(seed, slot.hf_name));
      const double std = slot.hf_name == "model.embed_tokens.weight" ? embedding_std : 0.02;
      return at::empty(slot.shape).normal_(0.0, std, generator);
    }
  }
  NLA_THROW("bad init");
}

void copy_bytes(const at::Tensor& tensor, std::vector<uint8_t>& out) {
  at::Tensor cpu = tensor.detach().to(at::kCPU).contiguous();
  NLA_CHECK(static_cast<size_t>(cpu.nbytes()) == out.size(), "byte count");
  std::memcpy(out.data(), cpu.data_ptr(), out.size());
}

std::vector<io::PlannedTensor> plan(const std::vector<ParameterSlot>& slots, c10::ScalarType dtype) {
  std::vector<io::PlannedTensor> planned;
  for (const auto& slot : slots) planned.push_back({slot.hf_name, io_dtype(dtype), slot.shape});
  return planned;
}

}  // namespace

void check_finite_weights(const at::Tensor& host, const std::string& path, const std::string& name) {
  if (at::isfinite(host).all().item<bool>()) return;
  at::Tensor flat = host.reshape({-1});
  const int64_t first = at::logical_not(at::isfinite(flat)).nonzero()[0][0].item<int64_t>();
  NLA_INPUT_ERROR(path, ": tensor '", name, "': element ", first, " is ", flat[first].item<double>(),
                  " (expected finite weights)");
}

c10::ScalarType float_scalar_type(io::DType dtype, const std::string& where) {
  switch (dtype) {
    case io::DType::F32: return at::kFloat;
    case io::DType::BF16: return at::kBFloat16;
    case io::DType::F16: return at::kHalf;
    case io::DType::F64: return at::kDouble;
    default: NLA_INPUT_ERROR(where, ": dtype ", io::dtype_name(dtype), " (expected F32, BF16, F16 or F64)");
  }
}

Qwen2Model Qwen2Model::from_weights(const Qwen2Config& config, Qwen2Weights weights) {
  Qwen2Model model;
  model.config_ = config;
  model.weights_ = std::move(weights);
  return model;
}

Qwen2Model Qwen2Model::load(const std::string& directory, const LoadOptions& options) {
  Qwen2Config config = Qwen2Config::from_file(directory);
  int64_t num_layers = options.num_layers < 0 ? config.num_hidden_layers : options.num_layers;
  NLA_CHECK_INPUT(num_layers <= config.num_hidden_layers, directory, "/config.json: key 'num_hidden_layers': ",
                  config.num_hidden_layers, " blocks, but ", num_layers, " were asked for");
  io::CheckpointReader reader(directory);
  const std::string index_path = directory + "/model.safetensors.index.json";
  Qwen2Weights weights;
  for (auto& slot : qwen2_parameter_slots(weights, config, num_layers, options.with_head)) {
    auto entry = reader.find(slot.hf_name);
    if (!entry.file) {
      bool sharded = fs::exists(index_path);
      NLA_INPUT_ERROR(sharded ? index_path : directory + "/model.safetensors", ": missing tensor '", slot.hf_name,
                      "'");
    }
    const io::TensorInfo& info = *entry.info;
    NLA_CHECK_INPUT(info.shape == slot.shape, entry.file->path(), ": tensor '", slot.hf_name, "': shape ",
                    shape_text(info.shape), " but config.json implies ", shape_text(slot.shape));
    const c10::ScalarType source_dtype =
        float_scalar_type(info.dtype, entry.file->path() + ": tensor '" + slot.hf_name + "'");
    // Copied out of the mapping: the data area need not be aligned, and the model owns
    // its parameters after the files are closed.
    at::Tensor host = at::empty(slot.shape, at::TensorOptions().dtype(source_dtype));
    std::memcpy(host.data_ptr(), entry.file->data(info), info.num_bytes());
    check_finite_weights(host, entry.file->path(), slot.hf_name);
    *slot.tensor = host.to(options.device, options.dtype);
  }
  return from_weights(config, std::move(weights));
}

Qwen2Model Qwen2Model::random_init(const Qwen2Config& config, uint64_t seed, const LoadOptions& options) {
  Qwen2Weights weights;
  for (auto& slot : qwen2_parameter_slots(weights, config, options.num_layers, options.with_head))
    *slot.tensor = init_tensor(slot, seed).to(options.device, options.dtype);
  return from_weights(config, std::move(weights));
}

std::vector<std::pair<std::string, at::Tensor>> Qwen2Model::named_parameters() {
  std::vector<std::pair<std::string, at::Tensor>> named;
  for (auto& slot : qwen2_parameter_slots(weights_, config_, num_loaded_layers(), has_head()))
    named.emplace_back(slot.hf_name, *slot.tensor);
  return named;
}

std::vector<at::Tensor> Qwen2Model::parameters() {
  std::vector<at::Tensor> tensors;
  for (auto& [name, tensor] : named_parameters()) tensors.push_back(tensor);
  return tensors;
}

c10::ScalarType Qwen2Model::dtype() const { return weights_.embed_tokens.scalar_type(); }
c10::Device Qwen2Model::device() const { return weights_.embed_tokens.device(); }

void save_weights(Qwen2Model& model, const std::string& directory, c10::ScalarType dtype, uint64_t max_shard_bytes) {
  auto slots = qwen2_parameter_slots(model.weights(), model.config(), model.num_loaded_layers(), model.has_head());
  std::map<std::string, const at::Tensor*> by_name;
  for (const auto& slot : slots) by_name[slot.hf_name] = slot.tensor;
  io::write_checkpoint(
      directory, plan(slots, dtype),
      [&](const io::PlannedTensor& planned, std::vector<uint8_t>& out) {
        copy_bytes(by_name.at(planned.name)->to(dtype), out);
      },
      max_shard_bytes);
}

void write_random_checkpoint(const Qwen2Config& config, uint64_t seed, const std::string& directory,
                             c10::ScalarType dtype, uint64_t max_shard_bytes, double embedding_std) {
  Qwen2Weights placeholder;  // the slots' tensors stay empty: values come from the producer
  auto slots = qwen2_parameter_slots(placeholder, config, -1, true);
  std::map<std::string, const ParameterSlot*> by_name;
  for (const auto& slot : slots) by_name[slot.hf_name] = &slot;
  io::write_checkpoint(
      directory, plan(slots, dtype),
      [&](const io::PlannedTensor& planned, std::vector<uint8_t>& out) {
        copy_bytes(init_tensor(*by_name.at(planned.name), seed, embedding_std).to(dtype), out);
      },
      max_shard_bytes);
}

}  // namespace nla::model
