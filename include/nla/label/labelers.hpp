// Gold descriptions for AV SFT: one description per sample of an activation store, in the
// AV's answer format ("<explanation>\n...\n</explanation>", DESIGN section 1).
//
//   context       offline: 2-3 snippets written from the document around the position
//                 (the text just before it, the token itself, the domain)
//   jsonl:FILE    given texts: line i is {"description": "..."} for sample i (or
//                 {"row": i, "description": "..."} in any order; every row exactly once)
//   av:DIR        an existing AV checkpoint verbalises the activations (arrives with the
//                 verbalizer, issue 5)
#pragma once

#include <string>
#include <vector>

#include "nla/store/activation_store.hpp"
#include "nla/tokenizer/tokenizer.hpp"

namespace nla::label {

// Wraps description lines in the AV's answer tags.
std::string answer_format(const std::vector<std::string>& snippets);

// The context labeler's snippets, in this order when chosen.
inline const std::vector<std::string> kContextFields = {"before", "token", "domain"};

struct ContextLabelerOptions {
  int context_tokens = 12;  // tokens of left context quoted in the "before" snippet
  std::vector<std::string> fields = kContextFields;  // which snippets (a subset of kContextFields)
};

// "before,token" -> {"before", "token"}, in kContextFields' order; InputError naming the
// option for an empty list, an unknown name or one given twice.
std::vector<std::string> parse_context_fields(const std::string& list);

// The context labeler for rows [first, first + count) of the store.
std::vector<std::string> context_descriptions(const store::ActivationStore& acts, const tokenizer::Tokenizer& tok,
                                              int64_t first, int64_t count, const ContextLabelerOptions& options = {});

// Reads a jsonl: labeler file for a store of `n_samples` rows (InputError with file:line).
std::vector<std::string> jsonl_descriptions(const std::string& path, int64_t n_samples);

}  // namespace nla::label
