#include "nla/core/progress.hpp"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "nla/core/log.hpp"
#include "nla/core/world.hpp"

namespace nla {

static double progress_interval_seconds() {
  if (const char* env = std::getenv("NLA_PROGRESS_INTERVAL")) {
    double value = std::atof(env);
    if (value > 0) return value;
  }
  return 30.0;
}

Progress::Progress(std::string label, int64_t total, std::string unit)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(total),
      start_(Clock::now()),
      last_print_(start_),
      interval_s_(progress_interval_seconds()),
      tty_(isatty(STDERR_FILENO) == 1),
      enabled_(is_root() && log_level() <= LogLevel::info) {}

Progress::~Progress() {
  if (!finished_) finish();
}

void Progress::advance(int64_t count, const std::string& extra) { set(done_ + count, extra); }

void Progress::set(int64_t done, const std::string& extra) {
  done_ = done;
  maybe_print(extra);
}

void Progress::resume_at(int64_t done) {
  done_ = done;
  done_before_ = done;
}

std::string Progress::line(const std::string& extra) const {
  double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
  double rate = elapsed > 0 ? static_cast<double>(done_ - done_before_) / elapsed : 0.0;
  std::string text = label_ + "  " + std::to_string(done_);
  if (total_ > 0) {
    char percent[32];
    std::snprintf(percent, sizeof percent, " (%.0f%%)", 100.0 * done_ / total_);
    text += "/" + std::to_string(total_) + percent;
  }
  text += " | " + format_count(rate) + " " + unit_ + "/s";
  if (total_ > 0 && done_ < total_ && rate > 0)
    text += " | ETA " + format_duration((total_ - done_) / rate);
  else
    text += " | " + format_duration(elapsed);
  if (!extra.empty()) text += " | " + extra;
  return text;
}

void Progress::maybe_print(const std::string& extra) {
  if (!enabled_ || finished_) return;
  auto now = Clock::now();
  double since_last = std::chrono::duration<double>(now - last_print_).count();
  if (since_last < (tty_ ? 0.25 : interval_s_)) return;
  last_print_ = now;
  if (tty_)
    std::fprintf(stderr, "\r\033[K%s", line(extra).c_str());
  else
    std::fprintf(stderr, "%s\n", line(extra).c_str());
  std::fflush(stderr);
}

void Progress::finish(const std::string& extra) {
  if (finished_) return;
  finished_ = true;
  if (!enabled_) return;
  if (tty_) std::fprintf(stderr, "\r\033[K");
  std::fprintf(stderr, "%s\n", line(extra).c_str());
  std::fflush(stderr);
}

}  // namespace nla
