// nla init-model: a seeded random-init Qwen2 checkpoint directory from a preset
// (config.json, model.safetensors or shards + index, tokenizer files, generation_config.json).
// The directory is assembled under a temporary name and renamed at the end, so a killed
// run never leaves something that looks like a checkpoint.
#include <unistd.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "nla/cli/command.hpp"
#include "nla/core/atomic_file.hpp"
#include "nla/core/error.hpp"
#include "nla/core/fs.hpp"
#include "nla/core/log.hpp"
#include "nla/core/world.hpp"
#include "nla/model/qwen2.hpp"
#include "nla/model/qwen2_config.hpp"

namespace nla::cli {

class InitModelCommand : public Command {
 public:
  std::string name() const override { return "init-model"; }
  std::string summary() const override {
    return "write a seeded random-init Qwen2 checkpoint directory from a preset (tiny, small, qwen2.5-0.5b, qwen2.5-7b)";
  }

  void declare(OptionSet& options) override {
    options.add("init-model", "preset", &preset_, "tiny | small | qwen2.5-0.5b | qwen2.5-7b");
    options.add("init-model", "out", &out_, "output checkpoint directory (must not exist, or be empty)");
    options.add("init-model", "seed", &seed_, "random seed (same seed, same bytes)");
    options.add("init-model", "dtype", &dtype_, "float32 | bfloat16 | float16 (\"\": the preset's torch_dtype)");
    options.add("init-model", "max-shard-mb", &max_shard_mb_, "shard the weights above this size (MB, 10^6 bytes)");
    options.add("init-model", "tokenizer", &tokenizer_,
                "tokenizer.json to copy (tokenizer_config.json is taken from the same directory)");
    options.add("init-model", "overwrite", &overwrite_, "replace an existing checkpoint directory at --out");
    options.add("init-model", "embedding-std", &embedding_std_,
                "std of the token embedding (also the tied LM head); other weights are N(0, 0.02) as in HF. "
                "A tiny model needs a larger one to make confident predictions with frozen embeddings "
                "(see docs/demo.md)");
  }

  void run(const RunContext& context) override {
    model::Qwen2Config config = model::qwen2_preset(preset_);
    NLA_CHECK_INPUT(!out_.empty(), "option 'out': an output directory is required");
    NLA_CHECK_INPUT(embedding_std_ > 0 && std::isfinite(embedding_std_), "option 'embedding-std': expected > 0, got ",
                    embedding_std_);
    NLA_CHECK_INPUT(max_shard_mb_ > 0, "option 'max-shard-mb': expected > 0, got ", max_shard_mb_);
    if (!dtype_.empty()) config.torch_dtype = dtype_;
    auto dtype = model::dtype_from_config_name(config.torch_dtype, "option 'dtype'");
    const std::string tokenizer_json = bundled_file(tokenizer_);
    const std::string tokenizer_config = fs::join(fs::parent(tokenizer_json), "tokenizer_config.json");
    NLA_CHECK_INPUT(fs::is_regular_file(tokenizer_json), "option 'tokenizer': ", tokenizer_, ": no such file");
    NLA_CHECK_INPUT(fs::is_regular_file(tokenizer_config), "option 'tokenizer': ", tokenizer_config,
                    ": no such file (expected beside tokenizer.json)");
    if (fs::exists(out_)) {
      bool empty = fs::is_empty_directory(out_);
      bool checkpoint = fs::exists(fs::join(out_, "config.json"));
      NLA_CHECK_INPUT(empty || (overwrite_ && checkpoint), "option 'out': ", out_,
                      overwrite_ ? " exists and is not a checkpoint directory" : " exists (use --overwrite)");
    }

    run_on_root(MPI_COMM_WORLD, [&] {
      context.announce();
      std::string temp = out_ + ".tmp." + std::to_string(::getpid());
      fs::remove_all(temp);
      fs::create_directories(temp);
      try {
        log_info("init-model: preset %s, %s parameters, %s, seed %lld, embedding std %g", preset_.c_str(),
                 format_count(static_cast<double>(config.num_parameters())).c_str(), config.torch_dtype.c_str(),
                 static_cast<long long>(seed_), embedding_std_);
        model::write_random_checkpoint(config, static_cast<uint64_t>(seed_), temp, dtype,
                                       static_cast<uint64_t>(max_shard_mb_) * 1000000ull, embedding_std_);
        write_file_atomic(temp + "/config.json", config.to_json_text());
        nlohmann::ordered_json generation = {{"bos_token_id", config.bos_token_id},
                                             {"eos_token_id", {151645, 151643}},
                                             {"pad_token_id", 151643},
                                             {"do_sample", false},
                                             {"transformers_version", "4.43.1"}};
        write_file_atomic(temp + "/generation_config.json", generation.dump(2) + "\n");
        fs::copy_file(tokenizer_json, temp + "/tokenizer.json");
        fs::copy_file(tokenizer_config, temp + "/tokenizer_config.json");
        if (fs::exists(out_)) fs::remove_all(out_);
        fs::rename(temp, out_);
      } catch (...) {
        try {
          fs::remove_all(temp);
        } catch (const std::exception&) {
          // best effort: the error being propagated is the one to report
        }
        throw;
      }
      log_info("wrote %s", out_.c_str());
    });
  }

 private:
  std::string preset_ = "tiny";
  std::string out_;
  int64_t seed_ = 0;
  std::string dtype_;
  int64_t max_shard_mb_ = 5000;
  std::string tokenizer_ = "models/tokenizer.json";
  bool overwrite_ = false;
  double embedding_std_ = 0.02;
};

std::unique_ptr<Command> make_init_model_command() { return std::make_unique<InitModelCommand>(); }

}  // namespace nla::cli
