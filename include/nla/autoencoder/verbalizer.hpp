// The Activation Verbalizer at inference: activations -> descriptions (DESIGN section 1).
//
// Each activation h is rescaled to h * s / |h| (fp32) and replaces the input embedding of
// the marker token in the AV prompt; the KV-cache generator continues the prompt. The
// answer is "<explanation>\n...\n</explanation>"; the AR reads the bare explanation between
// the tags. A sample fails (GRPO gives it reward -2; the AR never trains on it) when it has
// no closed tag, when the token limit stopped it, or when its AR input exceeds 300 tokens,
// as in the authors' code (a truncated answer that still closed its tag counted as a
// success would let answer length drift upward).
// Used by `nla verbalize`, `nla label --labeler av:DIR`, GRPO rollouts and `nla eval`.
#pragma once

#include <ATen/core/Tensor.h>
#include <mpi.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "nla/model/qwen2.hpp"
#include "nla/autoencoder/checkpoint.hpp"
#include "nla/autoencoder/prompts.hpp"
#include "nla/store/activation_store.hpp"
#include "nla/tokenizer/tokenizer.hpp"

namespace nla::autoencoder {

struct VerbalizeOptions {
  int64_t max_new_tokens = 150;  // DESIGN: rollouts cap the answer at 150 new tokens
  double temperature = 0.0;      // 0: greedy
  double top_p = 1.0;
  // Sample j of activation i (of a call) is drawn with seed splitmix(seed, sample_ids[i], j):
  // the text does not depend on the batch, the rank or the order of the call.
  uint64_t seed = 0;
  int64_t samples_per_activation = 1;  // K (GRPO's group size)
  int64_t batch = 32;                  // sequences decoded at once; a call's other sequences wait
                                       // and take the rows that finish (continuous batching)
};

// The authors' cap on an AR input: a sample whose AR input is longer fails.
inline constexpr int64_t kMaxArInputTokens = 300;

// Why a sample failed ("" when it did not).
inline constexpr const char* kFailNoClosedTag = "no closed <explanation> tag";
inline constexpr const char* kFailTruncated = "truncated by the token limit";
inline constexpr const char* kFailArInputTooLong = "AR input over 300 tokens";

struct Verbalization {
  int64_t sample_id = 0;             // the caller's id of the activation (e.g. its store row)
  int64_t sample_index = 0;          // j in 0..K-1
  std::vector<int64_t> tokens;       // generated ids (the stop token included when present)
  std::string text;                  // decoded generated text (stop tokens <|im_end|>, <|endoftext|> excluded)
  std::string description;           // the answer "<explanation>...</explanation>" (tags kept: what AV SFT
                                     // trains on and `label av:` stores); "" when failed
  std::string explanation;           // the bare text between the tags, stripped: what the AR reads; "" when failed
  bool failed = true;
  std::string failure;               // kFail...: why it failed; "" when it did not
};

// The answer in `text`, as the authors parse it: the first "<explanation>" anywhere and the
// first "</explanation>" after it. `answer` spans both tags; `explanation` is the text between
// them with surrounding white space stripped (a second "<explanation>" inside stays text).
// nullopt when there is no closed tag.
struct ParsedAnswer {
  std::string answer;
  std::string explanation;
};
std::optional<ParsedAnswer> parse_answer(const std::string& text);

// What the AR reads for a stored or given description: its explanation when it holds a closed
// tag, else the whole text; stripped of surrounding white space. Gold descriptions are stored
// as answers (tags kept, for AV SFT); every AR input goes through this.
std::string explanation_text(const std::string& description);

// The failure rule of DESIGN section 1 for one generated answer: "" (a success) or kFail....
// `stopped` says whether generation ended on a stop token (else the token limit cut it).
std::string failure_of(const std::optional<ParsedAnswer>& parsed, bool stopped, const tokenizer::Tokenizer& tokenizer,
                       const std::string& critic_template);

class Verbalizer {
 public:
  // `model` is the AV (full model with head); `injection_scale` s from nla_meta.yaml.
  // `critic_template` (the checkpoint's prompt_templates.critic) sizes the AR input for the
  // failure rule.
  Verbalizer(const model::Qwen2Model& model, const tokenizer::Tokenizer& tokenizer, double injection_scale,
             const std::string& actor_template = kActorTemplate,
             const std::string& critic_template = kCriticTemplate);

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
  std::string critic_template_;
  AvPrompt prompt_;
};

// The store layer an AV checkpoint at `av_dir` (its nla_meta.yaml read into `meta`)
// verbalizes: `layer` when >= 0, else the AV's critic.extraction_layer_index. InputError
// (one line naming the file and the option) when there is none, when the store lacks the
// layer, or when the store's width differs from the AV's d_model.
int av_store_layer(const NlaMeta& meta, const std::string& av_dir, const store::ActivationStore& acts, int layer);

// verbalize_store_rows reads this many batches of rows per generate call.
constexpr int64_t kRowsPerBatchRead = 8;

// Verbalizes `rows` of layer `layer` of a store, the ranks of `comm` sharing the work
// (contiguous blocks of `rows`, read kRowsPerBatchRead * options.batch rows at a time, so
// finished rows are refilled within a read); sample ids are the
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
