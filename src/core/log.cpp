#include "nla/core/log.hpp"

#include <cmath>
#include <cstdarg>
#include <cstdio>

#include "nla/core/error.hpp"
#include "nla/core/world.hpp"

namespace nla {

static LogLevel g_level = LogLevel::info;
static bool g_all_ranks = false;

void log_set_level(LogLevel level) { g_level = level; }
LogLevel log_level() { return g_level; }
void log_set_all_ranks(bool all_ranks) { g_all_ranks = all_ranks; }

LogLevel parse_log_level(const std::string& name) {
  if (name == "debug") return LogLevel::debug;
  if (name == "info") return LogLevel::info;
  if (name == "warn") return LogLevel::warn;
  if (name == "error") return LogLevel::error;
  NLA_INPUT_ERROR("option 'log-level': expected debug, info, warn or error, got '", name, "'");
}

static void vlog(LogLevel level, bool any_rank, const char* tag, const char* format, va_list args) {
  if (level < g_level) return;
  int rank = world_rank();
  if (!any_rank && !g_all_ranks && rank != 0) return;
  char buffer[4096];
  std::vsnprintf(buffer, sizeof buffer, format, args);
  if (world_size() > 1 && (g_all_ranks || rank != 0))
    std::fprintf(stderr, "[rank %d] %s%s\n", rank, tag, buffer);
  else
    std::fprintf(stderr, "%s%s\n", tag, buffer);
}

#define NLA_DEFINE_LOG(fn, level, any_rank, tag) \
  void fn(const char* format, ...) {             \
    va_list args;                                \
    va_start(args, format);                      \
    vlog(level, any_rank, tag, format, args);    \
    va_end(args);                                \
  }
NLA_DEFINE_LOG(log_debug, LogLevel::debug, false, "debug: ")
NLA_DEFINE_LOG(log_info, LogLevel::info, false, "")
NLA_DEFINE_LOG(log_warn, LogLevel::warn, false, "warning: ")
NLA_DEFINE_LOG(log_error, LogLevel::error, true, "error: ")
#undef NLA_DEFINE_LOG

std::string format_duration(double seconds) {
  char buffer[64];
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  if (seconds < 1.0) {
    std::snprintf(buffer, sizeof buffer, "%.0f ms", seconds * 1e3);
  } else if (seconds < 60.0) {
    std::snprintf(buffer, sizeof buffer, "%.1f s", seconds);
  } else if (seconds < 3600.0) {
    auto total = static_cast<long>(seconds + 0.5);
    std::snprintf(buffer, sizeof buffer, "%ldm%02lds", total / 60, total % 60);
  } else {
    auto total = static_cast<long>(seconds / 60 + 0.5);
    std::snprintf(buffer, sizeof buffer, "%ldh%02ldm", total / 60, total % 60);
  }
  return buffer;
}

std::string format_count(double value) {
  char buffer[64];
  double magnitude = std::fabs(value);
  if (magnitude >= 1e9)
    std::snprintf(buffer, sizeof buffer, "%.2fG", value / 1e9);
  else if (magnitude >= 1e6)
    std::snprintf(buffer, sizeof buffer, "%.2fM", value / 1e6);
  else if (magnitude >= 1e4)
    std::snprintf(buffer, sizeof buffer, "%.1fk", value / 1e3);
  else if (magnitude >= 100 || value == std::floor(value))
    std::snprintf(buffer, sizeof buffer, "%.0f", value);
  else
    std::snprintf(buffer, sizeof buffer, "%.2f", value);
  return buffer;
}

}  // namespace nla
