// What a run must not change to be resumed: the settings its data order and models depend
// on, recorded in trainer_state/state.json and compared when a later run finds that state.
//
//   Fingerprint fingerprint;
//   fingerprint.set("seed", o.seed).set_since("freeze_embeddings", o.freeze_embeddings, false);
//   fingerprint.check(saved, out + "/trainer_state/state.json");   // InputError on a mismatch
//
// set_since() is for a setting added after states were first written: a state without it
// matches when the run asks for `legacy`, the behaviour those states had. It is recorded
// only when it differs from `legacy` (Record::when_changed), or always (Record::always, as
// train-ar has recorded ar_target since it existed).
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <utility>
#include <vector>

namespace nla::run {

class Fingerprint {
 public:
  Fingerprint& set(const std::string& key, nlohmann::json value);
  enum class Record { when_changed, always };
  Fingerprint& set_since(const std::string& key, nlohmann::json value, nlohmann::json legacy,
                         Record record = Record::when_changed);

  // The recorded form (keys set with set_since() only when they differ from their legacy value).
  const nlohmann::json& json() const { return recorded_; }
  // Whether `saved` (a recorded form) was written by a run with these settings.
  bool matches(const nlohmann::json& saved) const;
  // InputError "<where>: written by a run with {...}; expected k v, k v to resume (or use a new
  // 'out')" unless matches(saved).
  void check(const nlohmann::json& saved, const std::string& where) const;

 private:
  struct Entry {
    std::string key;
    nlohmann::json value, legacy;  // legacy: null for keys set with set()
  };
  std::vector<Entry> entries_;  // in the order set, for the message
  nlohmann::json recorded_ = nlohmann::json::object();
};

// An input path as fingerprints record it: absolute and normalised, with the trailing '/'
// that the standard library's lexically_normal kept after a final "/", "." or "..", so that
// states saved before nla used nla::fs still match.
std::string fingerprint_path(const std::string& path);

}  // namespace nla::run
