// nla reconstruct: descriptions -> vectors with an AR checkpoint (ours or the authors').
#include <c10/core/GradMode.h>  // c10::NoGradGuard (LibTorch 2.x has no at:: alias here)
#include <ATen/ATen.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <fstream>

#include "device_options.hpp"
#include "nla/cli/command.hpp"
#include "nla/core/atomic_file.hpp"
#include "nla/core/error.hpp"
#include "nla/core/log.hpp"
#include "nla/core/progress.hpp"
#include "nla/core/world.hpp"
#include "nla/autoencoder/checkpoint.hpp"
#include "nla/autoencoder/reconstructor.hpp"
#include "nla/autoencoder/verbalizer.hpp"

namespace nla::cli {

namespace {

// NumPy .npy v1.0 of a (N, d) float32 matrix: magic, header dict padded so the data starts
// at a multiple of 64 bytes, then row-major little-endian floats.
void write_npy(const std::string& path, const at::Tensor& matrix) {
  auto m = matrix.to(at::kCPU, at::kFloat).contiguous();  // (N, d)
  std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + std::to_string(m.size(0)) + ", " +
                     std::to_string(m.size(1)) + "), }";
  size_t unpadded = 10 + dict.size() + 1;
  dict += std::string((64 - unpadded % 64) % 64, ' ') + "\n";
  AtomicFile file(path, /*binary=*/true);
  auto& out = file.stream();
  out.write("\x93NUMPY\x01\x00", 8);
  uint16_t header_len = static_cast<uint16_t>(dict.size());
  char len_bytes[2] = {static_cast<char>(header_len & 0xff), static_cast<char>(header_len >> 8)};
  out.write(len_bytes, 2);
  out.write(dict.data(), static_cast<std::streamsize>(dict.size()));
  out.write(static_cast<const char*>(m.data_ptr()), static_cast<std::streamsize>(m.numel() * sizeof(float)));
  file.commit();
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

class ReconstructCommand : public Command {
 public:
  std::string name() const override { return "reconstruct"; }
  std::string summary() const override { return "descriptions (JSONL) -> vectors with an AR checkpoint"; }

  void declare(OptionSet& options) override {
    options.add("reconstruct", "ar", &ar_, "AR checkpoint directory (nla_meta.yaml, value_head.safetensors)");
    options.add("reconstruct", "descriptions", &descriptions_, "JSONL, one {\"description\": ...} per line");
    options.add("reconstruct", "field", &field_, "JSONL field holding the description");
    options.add("reconstruct", "out", &out_, "vectors.npy (float32 [N, d]) or vectors.jsonl ({\"vector\": [...]})");
    options.add("reconstruct", "batch", &batch_, "descriptions per forward");
    options.add("reconstruct", "max-tokens", &max_tokens_, "AR inputs keep their last N tokens");
    options.add("reconstruct", "norm", &norm_,
                "an AR trained on normalized targets predicts a direction: > 0 writes y / |y| * norm (e.g. the "
                "layer's median activation norm, as nla eval does), 0 its outputs as they are; an AR trained on raw "
                "targets predicts the activation itself (norm must be 0)");
    declare_device_options(options, "reconstruct", device_, precision_);
  }

  void run(const RunContext& given) override {
    const auto compute = dist::resolve_compute(device_, precision_);  // collective: every rank is here
    const auto context = with_compute(given, compute);
    run_on_root(MPI_COMM_WORLD, [&] {
      NLA_CHECK_INPUT(!ar_.empty(), "option 'ar': expected an AR checkpoint directory");
      NLA_CHECK_INPUT(ends_with(out_, ".npy") || ends_with(out_, ".jsonl"), "option 'out': expected a .npy or .jsonl "
                      "path, got '", out_, "'");
      NLA_CHECK_INPUT(batch_ > 0, "option 'batch': expected > 0, got ", batch_);
      NLA_CHECK_INPUT(norm_ >= 0 && std::isfinite(norm_), "option 'norm': expected >= 0, got ", norm_);
      std::vector<std::string> texts = read_descriptions();
      model::LoadOptions load;
      load.device = compute.device;
      load.dtype = compute.dtype;  // the vectors are written fp32 whatever the precision
      autoencoder::NlaMeta meta;
      auto ar = autoencoder::load_ar(ar_, load, &meta);
      NLA_CHECK_INPUT(norm_ == 0 || meta.ar_target == autoencoder::ArTarget::normalized, "option 'norm': ", ar_,
                      " was trained on raw targets (critic.target raw): its outputs are in the activation's scale "
                      "already; expected norm 0");
      auto tok = tokenizer::Tokenizer::from_file(ar_);
      context.announce();
      c10::NoGradGuard no_grad;
      std::vector<at::Tensor> parts;
      Progress progress("reconstruct", static_cast<int64_t>(texts.size()), "descriptions");
      for (size_t first = 0; first < texts.size(); first += static_cast<size_t>(batch_)) {
        std::vector<std::string> chunk(texts.begin() + static_cast<int64_t>(first),
                                       texts.begin() + static_cast<int64_t>(std::min(texts.size(), first + batch_)));
        parts.push_back(ar.forward(ar.make_batch(tok, chunk, max_tokens_)).cpu());  // (b, d)
        progress.set(static_cast<int64_t>(first + chunk.size()));
      }
      progress.finish();
      auto vectors = at::cat(parts, 0);  // (N, d)
      if (norm_ > 0) vectors = vectors * (norm_ / vectors.norm(2, {1}, /*keepdim=*/true).clamp_min(1e-30));
      if (ends_with(out_, ".npy")) {
        write_npy(out_, vectors);
      } else {
        AtomicFile file(out_);
        auto accessor = vectors.accessor<float, 2>();
        for (int64_t i = 0; i < vectors.size(0); ++i) {
          std::vector<float> row(static_cast<size_t>(vectors.size(1)));
          for (int64_t j = 0; j < vectors.size(1); ++j) row[static_cast<size_t>(j)] = accessor[i][j];
          file.stream() << nlohmann::json{{"vector", row}}.dump() << "\n";
        }
        file.commit();
      }
      log_info("reconstruct: %zu descriptions -> %s (d = %lld) | AR target %s: %s", texts.size(), out_.c_str(),
               static_cast<long long>(vectors.size(1)), autoencoder::ar_target_name(meta.ar_target),
               meta.ar_target == autoencoder::ArTarget::raw ? "activations"
               : norm_ > 0                                  ? "directions scaled to option 'norm'"
                                                            : "directions (the AR's output norm carries no meaning)");
    });
  }

 private:
  std::vector<std::string> read_descriptions() const {
    std::ifstream in(descriptions_);
    NLA_CHECK_INPUT(in.good(), descriptions_, ": cannot be read (option 'descriptions')");
    std::vector<std::string> texts;
    std::string line;
    int64_t number = 0;
    while (std::getline(in, line)) {
      ++number;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      nlohmann::json record;
      try {
        record = nlohmann::json::parse(line);
      } catch (const nlohmann::json::exception&) {
        NLA_INPUT_ERROR(descriptions_, ":", number, ": not valid JSON");
      }
      NLA_CHECK_INPUT(record.is_object() && record.contains(field_) && record[field_].is_string(), descriptions_, ":",
                      number, ": expected a string field '", field_, "'");
      // The AR reads the bare explanation: an answer's tags (a verbalize record's
      // "description") are removed, as the AR was trained.
      texts.push_back(autoencoder::explanation_text(record[field_].get<std::string>()));
    }
    NLA_CHECK_INPUT(!texts.empty(), descriptions_, ": no descriptions");
    return texts;
  }

  std::string ar_;
  std::string descriptions_;
  std::string field_ = "description";
  std::string out_ = "vectors.npy";
  int64_t batch_ = 16;
  int64_t max_tokens_ = 256;
  double norm_ = 0;
  std::string device_ = "auto";
  std::string precision_ = "auto";
};

std::unique_ptr<Command> make_reconstruct_command() { return std::make_unique<ReconstructCommand>(); }

}  // namespace nla::cli
