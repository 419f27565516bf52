// Progress of long work on rank 0: "label  1200/5000 (24%) | 310 docs/s | ETA 12s".
// On a terminal the line is redrawn in place (at most 4 times a second); when stderr is
// not a terminal (Slurm logs, pipes) a full line is printed every `interval` seconds
// (default 30, env NLA_PROGRESS_INTERVAL) and once at the end.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace nla {

class Progress {
 public:
  // total <= 0: unknown total (no percentage or ETA).
  Progress(std::string label, int64_t total, std::string unit = "items");
  ~Progress();  // finishes if not finished
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void advance(int64_t count = 1, const std::string& extra = {});
  void set(int64_t done, const std::string& extra = {});
  // Work done before this process started (a resumed run): counted in done/total, not in the rate.
  void resume_at(int64_t done);
  void finish(const std::string& extra = {});

  // The line as it would be printed now (for tests and for callers that log it).
  std::string line(const std::string& extra = {}) const;

 private:
  void maybe_print(const std::string& extra);

  using Clock = std::chrono::steady_clock;
  std::string label_;
  std::string unit_;
  int64_t total_;
  int64_t done_ = 0;
  int64_t done_before_ = 0;  // resume_at(): not done by this process
  Clock::time_point start_;
  Clock::time_point last_print_;
  double interval_s_;
  bool tty_;
  bool enabled_;
  bool finished_ = false;
};

}  // namespace nla
