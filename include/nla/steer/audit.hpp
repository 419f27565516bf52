// nla steer-audit: what activation steering does to a model's internal state, in words.
//
// For each scale s (units of the layer's median activation norm), and for two directions (the
// given vector v, and a seeded random direction of the same norm as the baseline):
//   generate   the model continues each prompt with s * median_norm * unit(direction) added
//              to the residual after block L at every position (the steering hook);
//   capture    one forward over prompt + continuation, steered, gives the activations at layer
//              L at K sampled positions of the continuation and the steered next-token
//              distributions there; the unsteered model on the same tokens gives the other
//              side of the KL;
//   describe   the AV verbalizes each captured activation; the AR reconstructs it from the
//              explanation;
//   score      the reconstruction's cosine with v and projection on v, the steered
//              activation's own, concept-word mentions, the KL.
// Scale 0 is always run (the unsteered baseline), once, and counted for both directions.
// Ranks split the prompts in fixed chunks; a sample's seeds come from (seed, prompt, slot),
// so the results are the same on any rank count. Rank 0 writes RUN/audit.h5 and summary.csv.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "nla/dist/device.hpp"

namespace nla::steer {

struct SteerAuditOptions {
  std::string model;            // the model that is steered (checkpoint directory)
  std::string tokenizer;        // "" = the model's
  std::string av, ar;           // NLA checkpoints (the AV verbalizes layer-L activations)
  std::string vector;           // steering vector (.safetensors, from nla steer-vector or any [d] tensor)
  std::string prompts;          // JSONL texts the model continues
  std::string text_field = "text";
  std::string out;              // run directory
  int64_t layer = -1;           // -1: the vector file's layer, else the AV's extraction layer
  std::string scales = "0,1,2,4,8";
  std::string concept_words;    // comma-separated; "" = no mention rate
  int64_t positions_per_prompt = 4;  // K activations sampled from each continuation
  int64_t max_prompts = -1;     // the first N prompts of the file (-1: all)
  int64_t max_prompt_tokens = 256;
  int64_t max_new_tokens = 32;  // continuation length
  double temperature = 0;       // of the continuations (0: greedy)
  double top_p = 1.0;
  int64_t av_max_new_tokens = 150;  // cap on the AV's answers (an unclosed answer fails)
  double av_temperature = 0;        // of the AV's answers (0: greedy); sampled answers show rates, not modes
  int64_t seed = 0;
  int64_t batch = 8;            // prompts per chunk (generation batch)
  bool overwrite = false;       // replace an existing RUN/audit.h5
};

struct SteerAuditSummary {
  int64_t prompts = 0, samples = 0;
  double median_norm = 0;
  int layer = 0;
};

// Collective over MPI_COMM_WORLD. `announce` runs once every input is validated.
SteerAuditSummary run_steer_audit(const SteerAuditOptions& options, const dist::Compute& compute,
                                  const std::string& provenance_json, const std::function<void()>& announce = {});

// "0,1,2,4,8" -> sorted, distinct, finite, >= 0, with 0 added when absent; InputError naming
// option 'scales' otherwise.
std::vector<double> parse_scales(const std::string& text);

// Whether `text` names one of `words`: case-insensitive (ASCII), as a whole word (the
// characters around it are not letters, digits or '_').
bool mentions_word(const std::string& text, const std::vector<std::string>& words);

}  // namespace nla::steer
