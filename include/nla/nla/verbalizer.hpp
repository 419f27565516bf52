// The Activation Verbalizer at inference: activations -> descriptions (DESIGN section 1).
//
// Each activation h is rescaled to h * s / |h| (fp32) and replaces the input embedding of
// the marker token in the AV prompt; the KV-cache generator continues the prompt. The
// answer is "<explanation>\n...\n</explanation>"; a sample that does not close the tag
// within max_new_tokens is failed (GRPO gives it reward -2; the AR never trains on it).
// Used by `nla verbalize`, `nla label --labeler av:DIR`, GRPO rollouts and `nla eval`.
#pragma once

#include <ATen/core/Tensor.h>
#include <mpi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "nla/model/qwen2.hpp"
#include "nla/nla/checkpoint.hpp"
#include "nla/nla/prompts.hpp"
#include "nla/store/activation_store.hpp"
#include "nla/tokenizer/tokenizer.hpp"

namespace nla::autoencoder {

inline constexpr int64_t kImEndTokenId = 151645;     // <|im_end|>: the end of the assistant turn
inline constexpr int64_t kEndOfTextTokenId = 151643;  // <|endoftext|>: Qwen2.5's other eos (generation_config)

struct VerbalizeOptions {
  int64_t max_new_tokens = 150;  // DESIGN: rollouts cap the answer at 150 new tokens
  double temperature = 0.0;      // 0: greedy
  double top_p = 1.0;
  // Sample j of activation i (of a call) is drawn with seed splitmix(seed, sample_ids[i], j):
  // the text does not depend on the batch, the rank or the order of the call.
  uint64_t seed = 0;
  int64_t samples_per_activation = 1;  // K (GRPO's group size)
  int64_t batch = 32;                  // sequences per generator call
};

struct Verbalization {
  int64_t sample_id = 0;             // the caller's id of the activation (e.g. its store row)
  int64_t sample_index = 0;          // j in 0..K-1
  std::vector<int64_t> tokens;       // generated ids (the stop token included when present)
  std::string text;                  // decoded generated text (stop tokens <|im_end|>, <|endoftext|> excluded)
  std::string description;           // "<explanation>\n...\n</explanation>", "" when failed
  bool failed = true;                // no closed answer tag
};

// The answer in `text`: from the first "<explanation>" to the first "</explanation>" after
// it, both tags included; "" when there is none. Leading whitespace before the tag is allowed;
// anything after the closing tag is dropped. Text before the opening tag is not the format:
// "" (failed). A second "<explanation>" inside the answer is kept as text.
std::string parse_answer(const std::string& text);

class Verbalizer {
 public:
  // `model` is the AV (full model with head); `injection_scale` s from nla_meta.yaml.
  Verbalizer(const model::Qwen2Model& model, const tokenizer::Tokenizer& tokenizer, double injection_scale,
             const std::string& actor_template = kActorTemplate);

  const AvPrompt& prompt() const { return prompt_; }
  double injection_scale() const { return injection_scale_; }

  // activations: (N, d) any float dtype, finite with a norm > 0 (InputError naming the
  // sample id otherwise); sample_ids: N ids (seeds and bookkeeping). Stops at <|im_end|> or
  // <|endoftext|>. Returns N * K verbalizations, activation-major (i * K + j); each one is
  // the same whatever the batch size, the order of the ids or the other ids of the call.
  std::vector<Verbalization> verbalize(const at::Tensor& activations, const std::vector<int64_t>& sample_ids,
                                       const VerbalizeOptions& options) const;

 private:
  const model::Qwen2Model& model_;
  const tokenizer::Tokenizer& tokenizer_;
  double injection_scale_;
  AvPrompt prompt_;
};

// The store layer an AV checkpoint at `av_dir` (its nla_meta.yaml read into `meta`)
// verbalizes: `layer` when >= 0, else the AV's critic.extraction_layer_index. InputError
// (one line naming the file and the option) when there is none, when the store lacks the
// layer, or when the store's width differs from the AV's d_model.
int av_store_layer(const NlaMeta& meta, const std::string& av_dir, const store::ActivationStore& acts, int layer);

// Verbalizes `rows` of layer `layer` of a store, the ranks of `comm` sharing the work
// (contiguous blocks of `rows`, read `options.batch` rows at a time); sample ids are the
// row numbers, so the result is the same on any rank count. Collective over `comm`.
// Returns on rank 0 every verbalization in the order of `rows` (K per row, i * K + j);
// empty on the other ranks. Rank 0 shows progress of its own block under `progress_label`.
std::vector<Verbalization> verbalize_store_rows(const Verbalizer& verbalizer, const store::ActivationStore& acts,
                                                int layer, const std::vector<int64_t>& rows,
                                                const VerbalizeOptions& options, MPI_Comm comm,
                                                const std::string& progress_label = "verbalize");

// The token ids of an answer as the AV is trained to emit it: answer text then <|im_end|>.
std::vector<int64_t> answer_ids(const tokenizer::Tokenizer& tokenizer, const std::string& description);

}  // namespace nla::autoencoder
