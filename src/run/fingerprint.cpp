// Resume fingerprints (see fingerprint.hpp).
#include "nla/run/fingerprint.hpp"

#include "nla/core/error.hpp"
#include "nla/core/fs.hpp"

namespace nla::run {

Fingerprint& Fingerprint::set(const std::string& key, nlohmann::json value) {
  recorded_[key] = value;
  entries_.push_back({key, std::move(value), nullptr});
  return *this;
}

Fingerprint& Fingerprint::set_since(const std::string& key, nlohmann::json value, nlohmann::json legacy,
                                    Record record) {
  if (record == Record::always || value != legacy) recorded_[key] = value;
  entries_.push_back({key, std::move(value), std::move(legacy)});
  return *this;
}

bool Fingerprint::matches(const nlohmann::json& saved) const {
  if (!saved.is_object()) return false;
  for (const auto& entry : entries_) {
    const auto found = saved.find(entry.key);
    const bool absent = found == saved.end();
    if (absent ? (entry.legacy.is_null() || entry.legacy != entry.value) : *found != entry.value) return false;
  }
  for (const auto& item : saved.items()) {  // a setting this run does not know: another kind of run
    bool known = false;
    for (const auto& entry : entries_) known = known || entry.key == item.key();
    if (!known) return false;
  }
  return true;
}

void Fingerprint::check(const nlohmann::json& saved, const std::string& where) const {
  if (matches(saved)) return;
  std::string expected;
  for (const auto& entry : entries_)
    expected += (expected.empty() ? "" : ", ") + entry.key + " " +
                (entry.value.is_string() ? entry.value.get<std::string>() : entry.value.dump());
  NLA_INPUT_ERROR(where, ": written by a run with ", saved.dump(), "; expected ", expected,
                  " to resume (or use a new 'out')");
}

std::string fingerprint_path(const std::string& path) {
  std::string normal = fs::absolute(path);
  const size_t last_slash = path.rfind('/');
  const std::string last = last_slash == std::string::npos ? path : path.substr(last_slash + 1);
  if ((last.empty() || last == "." || last == "..") && normal != "/") normal += '/';
  return normal;
}

}  // namespace nla::run
