#include "nla/cli/options.hpp"

#include <algorithm>
#include <boost/program_options.hpp>
#include <fstream>
#include <set>
#include <sstream>

#include "nla/core/error.hpp"

namespace po = boost::program_options;

namespace nla::cli {

std::string canonical_option_name(std::string name) {
  std::replace(name.begin(), name.end(), '_', '-');
  return name;
}

struct OptionSet::Impl {
  // Sections in declaration order, each with its own description (for --help).
  std::vector<std::pair<std::string, std::unique_ptr<po::options_description>>> sections;
  po::options_description all{"all"};
  po::positional_options_description positional;
  std::map<std::string, std::string> section_of;  // name -> section

  po::options_description& section(const std::string& name) {
    for (auto& [section_name, description] : sections)
      if (section_name == name) return *description;
    sections.emplace_back(name, std::make_unique<po::options_description>("[" + name + "]"));
    return *sections.back().second;
  }
};

OptionSet::OptionSet(std::string command) : impl_(std::make_unique<Impl>()), command_(std::move(command)) {}
OptionSet::~OptionSet() = default;

namespace {

std::string quote_if_empty(const std::string& text) { return text.empty() ? "\"\"" : text; }

std::string double_text(double value) {
  std::ostringstream out;
  out.precision(10);
  out << value;
  return out.str();
}

template <typename T>
std::string value_text(const T& value) {
  if constexpr (std::is_same_v<T, std::string>) return value;
  else if constexpr (std::is_same_v<T, bool>) return value ? "true" : "false";
  else if constexpr (std::is_same_v<T, double>) return double_text(value);
  else return std::to_string(value);
}

template <typename T>
void add_typed(OptionSet::Impl& impl, std::vector<OptionSet::Entry>& entries, const std::string& command,
               const std::string& section, const std::string& raw_name, T* target, const std::string& help) {
  std::string name = canonical_option_name(raw_name);
  if (impl.section_of.count(name))
    NLA_THROW("command '", command, "' declares option '", name, "' twice");
  impl.section_of[name] = section;
  auto* semantic = po::value<T>(target)->default_value(*target, quote_if_empty(value_text(*target)));
  if constexpr (std::is_same_v<T, bool>) semantic->implicit_value(true, "true");
  impl.section(section).add_options()(name.c_str(), semantic, help.c_str());
  OptionSet::Entry entry;
  entry.section = section;
  entry.name = name;
  entry.help = help;
  entry.value_text = [target] { return value_text(*target); };
  entries.push_back(std::move(entry));
}

// "--max_new_tokens=3" -> "--max-new-tokens=3": underscores allowed in option names.
std::string normalise_argument(const std::string& argument) {
  if (argument.rfind("--", 0) != 0) return argument;
  auto equals = argument.find('=');
  std::string name = argument.substr(0, equals);
  std::replace(name.begin(), name.end(), '_', '-');
  return equals == std::string::npos ? name : name + argument.substr(equals);
}

}  // namespace

void OptionSet::add(const std::string& s, const std::string& n, std::string* t, const std::string& h) { add_typed(*impl_, entries_, command_, s, n, t, h); }
void OptionSet::add(const std::string& s, const std::string& n, int64_t* t, const std::string& h) { add_typed(*impl_, entries_, command_, s, n, t, h); }
void OptionSet::add(const std::string& s, const std::string& n, int* t, const std::string& h) { add_typed(*impl_, entries_, command_, s, n, t, h); }
void OptionSet::add(const std::string& s, const std::string& n, double* t, const std::string& h) { add_typed(*impl_, entries_, command_, s, n, t, h); }
void OptionSet::add(const std::string& s, const std::string& n, bool* t, const std::string& h) { add_typed(*impl_, entries_, command_, s, n, t, h); }

void OptionSet::positional(const std::string& name) { impl_->positional.add(canonical_option_name(name).c_str(), 1); }

std::vector<std::string> OptionSet::ini_keys() const {
  std::vector<std::string> keys;
  for (const auto& entry : entries_) keys.push_back(entry.section + "." + entry.name);
  return keys;
}

bool OptionSet::parse(const std::vector<std::string>& raw_args, const std::vector<std::string>& known_ini_keys) {
  // --help and --config are handled here, not bound to a command's fields.
  po::options_description meta("[general]");
  meta.add_options()("help,h", "show this help and exit")(
      "config", po::value<std::string>(&config_path_), "INI file with options (command line wins)");

  po::options_description everything;
  for (auto& [section_name, description] : impl_->sections) everything.add(*description);
  everything.add(meta);

  std::vector<std::string> args;
  for (const auto& argument : raw_args) args.push_back(normalise_argument(argument));

  po::variables_map values;
  std::set<std::string> from_cli;
  try {
    auto parsed = po::command_line_parser(args).options(everything).positional(impl_->positional).run();
    // An option given twice: the last one wins (`nla x $(cat base_args) --seed 2` overrides).
    std::vector<po::option> last_only;
    for (auto option = parsed.options.rbegin(); option != parsed.options.rend(); ++option)
      if (!from_cli.count(option->string_key)) {
        from_cli.insert(option->string_key);
        last_only.insert(last_only.begin(), *option);
      }
    parsed.options = std::move(last_only);
    po::store(parsed, values);
  } catch (const po::error& error) {
    NLA_INPUT_ERROR("command line: ", error.what(), " (see nla ", command_, " --help)");
  }
  if (values.count("help")) return false;
  if (values.count("config")) config_path_ = values["config"].as<std::string>();

  std::set<std::string> from_config;
  if (!config_path_.empty()) {
    std::ifstream file(config_path_);
    if (!file) NLA_INPUT_ERROR(config_path_, ": cannot open config file");
    po::options_description none;
    po::parsed_options parsed_file(nullptr);
    try {
      parsed_file = po::parse_config_file(file, none, /*allow_unregistered=*/true);
    } catch (const po::error& error) {
      NLA_INPUT_ERROR(config_path_, ": ", error.what());
    }
    std::set<std::string> known(known_ini_keys.begin(), known_ini_keys.end());
    std::set<std::string> known_sections;
    for (const auto& key : known) known_sections.insert(key.substr(0, key.find('.')));

    // Keep the keys of this command's sections, renamed to their command-line names.
    po::parsed_options mine(&everything);
    for (auto option : parsed_file.options) {
      std::string key = option.string_key;
      auto dot = key.find('.');
      if (dot == std::string::npos)
        NLA_INPUT_ERROR(config_path_, ": key '", key, "' is outside any [section]; expected e.g. [",
                        entries_.empty() ? "common" : entries_.back().section, "] ", key, " = ...");
      std::string section = key.substr(0, dot);
      std::string name = canonical_option_name(key.substr(dot + 1));
      if (!known_sections.count(section))
        NLA_INPUT_ERROR(config_path_, ": unknown section [", section, "]");
      if (!known.count(section + "." + name))
        NLA_INPUT_ERROR(config_path_, ": unknown key '", name, "' in section [", section, "]");
      auto owner = impl_->section_of.find(name);
      if (owner == impl_->section_of.end() || owner->second != section) continue;  // another command's
      if (from_cli.count(name)) continue;  // the command line wins
      option.string_key = name;
      option.unregistered = false;
      from_config.insert(name);
      mine.options.push_back(option);
    }
    try {
      po::store(mine, values);
    } catch (const po::error& error) {
      NLA_INPUT_ERROR(config_path_, ": ", error.what());
    }
  }
  try {
    po::notify(values);
  } catch (const po::error& error) {
    NLA_INPUT_ERROR("command line: ", error.what());
  }
  for (auto& entry : entries_) {
    if (from_cli.count(entry.name)) entry.source = "cli";
    else if (from_config.count(entry.name)) entry.source = "config";
  }
  return true;
}

std::string OptionSet::help_text(const std::string& summary) const {
  std::ostringstream out;
  out << "Usage: nla " << command_ << " [options]\n" << summary << "\n\n";
  out << "Options are `--name value` on the command line or `name = value` under [section]\n"
         "in an INI file given by --config; the command line wins. Defaults in (=...).\n\n";
  for (const auto& [section_name, description] : impl_->sections) out << *description << "\n";
  out << "[general]:\n  -h [ --help ]          show this help and exit\n"
         "  --config arg           INI file with options (command line wins)\n";
  return out.str();
}

std::string OptionSet::resolved_ini() const {
  std::ostringstream out;
  for (const auto& [section_name, description] : impl_->sections) {
    out << "[" << section_name << "]\n";
    for (const auto& entry : entries_) {
      if (entry.section != section_name) continue;
      out << entry.name << " = " << entry.value_text();
      if (entry.source != "default") out << "  # from " << entry.source;
      out << "\n";
    }
    out << "\n";
  }
  return out.str();
}

}  // namespace nla::cli
