// The clock of a training loop: wall time per named phase of each step, and the one
// progress line (step, rate, ETA, the caller's figures) on rank 0.
//
//   StepClock clock("grpo", start_step, o.steps);
//   for (step ...) {
//     clock.begin_step();
//     auto batch = clock.time("generate", [&] { return generate(...); });
//     ...
//     record["seconds"] = clock.seconds_json();
//     clock.end_step(step + 1, "reward 0.12 | " + clock.phases_text());
//   }
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "nla/core/progress.hpp"

namespace nla::run {

class StepClock {
 public:
  StepClock(std::string label, int64_t first_step, int64_t steps);

  void begin_step();
  // Runs `work` as phase `phase` of this step and records its wall time.
  template <class Work>
  decltype(auto) time(const std::string& phase, Work&& work) {
    const auto start = Clock::now();
    if constexpr (std::is_void_v<std::invoke_result_t<Work>>) {
      std::forward<Work>(work)();
      record(phase, since(start));
    } else {
      decltype(auto) result = std::forward<Work>(work)();
      record(phase, since(start));
      return result;
    }
  }

  double seconds(const std::string& phase) const;  // this step's; 0 if it did not run
  double step_seconds() const;                     // since begin_step()
  // {"<phase>": s, ..., "step": s}
  nlohmann::json seconds_json() const;
  // "generate 1.2s score 0.3s ..." (short names: the first 6 letters)
  std::string phases_text() const;
  // Rank 0's progress line: "<label>  12/40 (30%) | 0.5 steps/s | ETA 56s | <extra>".
  void end_step(int64_t done_steps, const std::string& extra);
  void finish(const std::string& extra = {});

 private:
  using Clock = std::chrono::steady_clock;
  static double since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }
  void record(const std::string& phase, double seconds);

  Progress progress_;
  Clock::time_point step_start_ = Clock::now();
  std::vector<std::pair<std::string, double>> phases_;  // this step's, in order
};

}  // namespace nla::run
