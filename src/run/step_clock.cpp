// Per-phase step timings and the progress line (see step_clock.hpp).
#include "nla/run/step_clock.hpp"

#include "nla/core/log.hpp"  // format_duration

namespace nla::run {

StepClock::StepClock(std::string label, int64_t first_step, int64_t steps) : progress_(std::move(label), steps, "steps") {
  progress_.resume_at(first_step);
}

void StepClock::begin_step() {
  step_start_ = Clock::now();
  phases_.clear();
}

void StepClock::record(const std::string& phase, double seconds) {
  for (auto& [name, total] : phases_)
    if (name == phase) {
      total += seconds;
      return;
    }
  phases_.emplace_back(phase, seconds);
}

double StepClock::seconds(const std::string& phase) const {
  for (const auto& [name, total] : phases_)
    if (name == phase) return total;
  return 0.0;
}

double StepClock::step_seconds() const { return since(step_start_); }

nlohmann::json StepClock::seconds_json() const {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [name, total] : phases_) out[name] = total;
  out["step"] = step_seconds();
  return out;
}

std::string StepClock::phases_text() const {
  std::string text;
  for (const auto& [name, total] : phases_)
    text += (text.empty() ? "" : " ") + name.substr(0, 6) + " " + format_duration(total);
  return text;
}

void StepClock::end_step(int64_t done_steps, const std::string& extra) { progress_.set(done_steps, extra); }

void StepClock::finish(const std::string& extra) { progress_.finish(extra); }

}  // namespace nla::run
