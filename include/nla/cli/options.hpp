// Options of one command: Boost.Program_options underneath, one table per command.
//
// Every option has a section (its component, e.g. "tokenize", "common") and a name
// ("max-new-tokens"). On the command line it is `--name VALUE` (or `--name=VALUE`); in an
// INI file (`--config FILE`) it is `name = VALUE` under `[section]`. Underscores and
// hyphens are interchangeable in names. Precedence: command line > config file > default.
// A config file may hold the sections of other commands (one file for a whole pipeline),
// but every section and key must be known to some nla command: typos are errors.
//
// Only this module sees Boost's variables map; commands declare options bound to the
// fields of their own option structs.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace nla::cli {

class OptionSet {
 public:
  explicit OptionSet(std::string command);
  ~OptionSet();
  OptionSet(const OptionSet&) = delete;
  OptionSet& operator=(const OptionSet&) = delete;

  // The target's current value is the default shown in --help.
  void add(const std::string& section, const std::string& name, std::string* target, const std::string& help);
  void add(const std::string& section, const std::string& name, int64_t* target, const std::string& help);
  void add(const std::string& section, const std::string& name, int* target, const std::string& help);
  void add(const std::string& section, const std::string& name, double* target, const std::string& help);
  // Flags: `--name` sets true, `--name=false` false; INI `name = true|false`.
  void add(const std::string& section, const std::string& name, bool* target, const std::string& help);
  // Options that may also be given without their `--name`, in this order.
  void positional(const std::string& name);

  const std::string& command() const { return command_; }

  struct Entry {
    std::string section;
    std::string name;
    std::string help;
    std::function<std::string()> value_text;  // the target's value, as INI text
    std::string source = "default";           // "default" | "config" | "cli"
  };
  const std::vector<Entry>& entries() const { return entries_; }

  // Parses argv (without the program and command names) and the config file it names.
  // `known_ini_keys` holds every "section.key" of every command (see run_main).
  // Returns false when --help was asked (help text in `help_text`).
  bool parse(const std::vector<std::string>& args, const std::vector<std::string>& known_ini_keys);

  std::string help_text(const std::string& summary) const;
  // The resolved configuration as an INI file that `--config` accepts back.
  std::string resolved_ini() const;
  // The "section.key" names this set declares (for the cross-command registry).
  std::vector<std::string> ini_keys() const;
  const std::string& config_path() const { return config_path_; }

  struct Impl;  // Boost's descriptions (options.cpp)

 private:
  std::unique_ptr<Impl> impl_;
  std::string command_;
  std::vector<Entry> entries_;
  std::string config_path_;
};

// "max_new_tokens" -> "max-new-tokens"
std::string canonical_option_name(std::string name);

}  // namespace nla::cli
