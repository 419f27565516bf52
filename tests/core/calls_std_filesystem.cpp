// A program that calls std::filesystem, linked the ordinary way: test_fs_symbols runs it
// with the trap library preloaded and expects the trap, which shows the preload catches a
// binary that binds std::filesystem (what nla did before it moved to nla::fs).
#include <cstdio>
#include <filesystem>

int main(int argc, char** argv) {
  const char* path = argc > 1 ? argv[1] : "calls_std_filesystem.missing";
  const auto removed = std::filesystem::remove_all(path);
  std::printf("std::filesystem::remove_all(%s) removed %ju entries\n", path, static_cast<std::uintmax_t>(removed));
  return 0;
}
