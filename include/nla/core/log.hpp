// Rank-aware logging to stderr. Rank 0 speaks for the job; other ranks print only
// with log_set_all_ranks(true) (`--log-all-ranks`), prefixed by "[rank r] ".
// stdout is left for data (generated text, tables that a script may parse).
#pragma once

#include <string>

namespace nla {

enum class LogLevel { debug = 0, info = 1, warn = 2, error = 3 };

void log_set_level(LogLevel level);
LogLevel log_level();
void log_set_all_ranks(bool all_ranks);
// "debug" | "info" | "warn" | "error"; throws InputError otherwise.
LogLevel parse_log_level(const std::string& name);

void log_debug(const char* format, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char* format, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char* format, ...) __attribute__((format(printf, 1, 2)));
// Errors are printed by every rank that has one (no rank filter).
void log_error(const char* format, ...) __attribute__((format(printf, 1, 2)));

// "1.23 s", "412 ms", "2h03m" ...
std::string format_duration(double seconds);
// "18.2k", "1.05M" ...
std::string format_count(double value);

}  // namespace nla
