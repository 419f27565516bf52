// Option layering: defaults < config file < command line; unknown keys; --help; types.
#include <gtest/gtest.h>

#include "nla/cli/options.hpp"
#include "nla/core/error.hpp"
#include "test_support.hpp"

namespace nla::cli {

namespace {

struct ToyOptions {
  std::string input = "in.jsonl";
  int64_t max_new_tokens = 150;
  double temperature = 1.0;
  bool chat = false;
  std::string log_level = "info";

  void declare(OptionSet& options) {
    options.add("toy", "input", &input, "input file");
    options.add("toy", "max-new-tokens", &max_new_tokens, "tokens to generate");
    options.add("toy", "temperature", &temperature, "sampling temperature");
    options.add("toy", "chat", &chat, "use the chat template");
    options.add("common", "log-level", &log_level, "log level");
  }
};

// Keys of the toy command plus another command's section, as run_main collects them.
std::vector<std::string> known_keys() {
  return {"toy.input", "toy.max-new-tokens", "toy.temperature", "toy.chat", "common.log-level", "other.layers"};
}

}  // namespace

TEST(Options, DefaultsStayWithoutArguments) {
  ToyOptions toy;
  OptionSet options("toy");
  toy.declare(options);
  ASSERT_TRUE(options.parse({}, known_keys()));
  EXPECT_EQ(toy.input, "in.jsonl");
  EXPECT_EQ(toy.max_new_tokens, 150);
  EXPECT_FALSE(toy.chat);
  for (const auto& entry : options.entries()) EXPECT_EQ(entry.source, "default") << entry.name;
}

TEST(Options, CommandLineBeatsConfigBeatsDefault) {
  test::TempDir dir;
  test::write_text(dir.file("c.ini"),
                   "# pipeline config\n[toy]\ninput = from_config.jsonl\nmax_new_tokens = 20\nchat = true\n"
                   "[other]\nlayers = 0-3\n[common]\nlog-level = debug\n");
  ToyOptions toy;
  OptionSet options("toy");
  toy.declare(options);
  ASSERT_TRUE(options.parse({"--config", dir.file("c.ini"), "--max_new_tokens=7", "--temperature", "0.5"}, known_keys()));
  EXPECT_EQ(toy.input, "from_config.jsonl");  // config
  EXPECT_EQ(toy.max_new_tokens, 7);           // command line wins over config
  EXPECT_DOUBLE_EQ(toy.temperature, 0.5);     // command line
  EXPECT_TRUE(toy.chat);                      // config flag
  EXPECT_EQ(toy.log_level, "debug");
  std::string ini = options.resolved_ini();
  EXPECT_NE(ini.find("[toy]\ninput = from_config.jsonl  # from config\nmax-new-tokens = 7  # from cli\n"), std::string::npos)
      << ini;

  // The resolved configuration is itself a valid config file that reproduces the run.
  test::write_text(dir.file("resolved.ini"), ini);
  ToyOptions again;
  OptionSet reparsed("toy");
  again.declare(reparsed);
  ASSERT_TRUE(reparsed.parse({"--config", dir.file("resolved.ini")}, known_keys()));
  EXPECT_EQ(again.input, toy.input);
  EXPECT_EQ(again.max_new_tokens, toy.max_new_tokens);
  EXPECT_DOUBLE_EQ(again.temperature, toy.temperature);
  EXPECT_EQ(again.chat, toy.chat);
}

TEST(Options, LastOccurrenceOnTheCommandLineWins) {
  ToyOptions toy;
  OptionSet options("toy");
  toy.declare(options);
  ASSERT_TRUE(options.parse({"--max-new-tokens", "3", "--input", "a", "--max-new-tokens=9"}, known_keys()));
  EXPECT_EQ(toy.max_new_tokens, 9);
  EXPECT_EQ(toy.input, "a");
}

TEST(Options, FlagsOnTheCommandLine) {
  ToyOptions toy;
  OptionSet options("toy");
  toy.declare(options);
  ASSERT_TRUE(options.parse({"--chat"}, known_keys()));
  EXPECT_TRUE(toy.chat);
  ToyOptions off;
  off.chat = true;
  OptionSet options_off("toy");
  off.declare(options_off);
  ASSERT_TRUE(options_off.parse({"--chat=false"}, known_keys()));
  EXPECT_FALSE(off.chat);
}

void expect_input_error(const std::vector<std::string>& args, const std::string& config, const std::string& fragment) {
  test::TempDir dir;
  std::vector<std::string> full = args;
  if (!config.empty()) {
    test::write_text(dir.file("c.ini"), config);
    full.push_back("--config");
    full.push_back(dir.file("c.ini"));
  }
  ToyOptions toy;
  OptionSet options("toy");
  toy.declare(options);
  try {
    options.parse(full, known_keys());
    FAIL() << "no error for " << fragment;
  } catch (const InputError& error) {
    EXPECT_NE(std::string(error.what()).find(fragment), std::string::npos) << error.what();
    EXPECT_EQ(std::string(error.what()).find('\n'), std::string::npos) << "one line: " << error.what();
  }
}

TEST(Options, ErrorsNameWhatIsWrong) {
  expect_input_error({"--no-such-option", "1"}, "", "no-such-option");
  expect_input_error({"--max-new-tokens", "many"}, "", "max-new-tokens");
  expect_input_error({}, "[toy]\ninptu = x\n", "unknown key 'inptu' in section [toy]");
  expect_input_error({}, "[toyy]\ninput = x\n", "unknown section [toyy]");
  expect_input_error({}, "input = x\n", "outside any [section]");
  expect_input_error({}, "[toy]\nmax_new_tokens = lots\n", "c.ini");
  expect_input_error({"--config", "/nonexistent.ini"}, "", "/nonexistent.ini: cannot open config file");
}

TEST(Options, HelpShowsEveryOptionWithItsDefault) {
  ToyOptions toy;
  OptionSet options("toy");
  toy.declare(options);
  EXPECT_FALSE(options.parse({"--help"}, known_keys()));
  std::string help = options.help_text("a toy command");
  for (const char* expected : {"--input arg (=in.jsonl)", "--max-new-tokens arg (=150)", "--temperature arg (=1)",
                               "--chat [=arg(=true)] (=false)", "[toy]", "[common]", "--config"})
    EXPECT_NE(help.find(expected), std::string::npos) << expected << " missing in:\n" << help;
}

TEST(Options, DuplicateDeclarationIsABug) {
  std::string a, b;
  OptionSet options("toy");
  options.add("toy", "input", &a, "");
  EXPECT_THROW(options.add("other", "input", &b, ""), Error);
}

}  // namespace nla::cli
