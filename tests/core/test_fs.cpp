// nla::fs, the POSIX replacement for std::filesystem: path strings (lexical edge cases),
// queries, and changes on real trees, symlinks included (remove_all must not follow a link
// out of the tree; a directory symlink loop must not make a listing run forever).
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "nla/core/error.hpp"
#include "nla/core/fs.hpp"
#include "test_support.hpp"

namespace nla {
namespace {

using Names = std::vector<std::string>;

void make_symlink(const std::string& target, const std::string& link) {
  ASSERT_EQ(::symlink(target.c_str(), link.c_str()), 0) << link << " -> " << target;
}

std::string real_path(const std::string& path) {
  char resolved[PATH_MAX];
  EXPECT_NE(::realpath(path.c_str(), resolved), nullptr) << path;
  return resolved;
}

unsigned mode_bits(const std::string& path) {
  struct stat info {};
  EXPECT_EQ(::stat(path.c_str(), &info), 0) << path;
  return info.st_mode & 07777;
}

// ---- path strings ------------------------------------------------------------------------

TEST(FsPaths, Join) {
  EXPECT_EQ(fs::join("a", "b"), "a/b");
  EXPECT_EQ(fs::join("a/", "b"), "a/b");  // no doubled slash
  EXPECT_EQ(fs::join("", "b"), "b");
  EXPECT_EQ(fs::join("a", "/b"), "/b");  // an absolute right side wins, as std::filesystem's /
  EXPECT_EQ(fs::join("/", "b"), "/b");
  EXPECT_EQ(fs::join("a", ""), "a/");
  EXPECT_EQ(fs::join("a", "b", "c.h5"), "a/b/c.h5");
}

TEST(FsPaths, FilenameAndParent) {
  EXPECT_EQ(fs::filename("x/y.h5"), "y.h5");
  EXPECT_EQ(fs::filename("x/y/"), "y");
  EXPECT_EQ(fs::filename("y"), "y");
  EXPECT_EQ(fs::filename("/y"), "y");
  EXPECT_EQ(fs::filename(""), "");
  EXPECT_EQ(fs::filename("/"), "");
  EXPECT_EQ(fs::filename("//"), "");

  EXPECT_EQ(fs::parent("x/y.h5"), "x");
  EXPECT_EQ(fs::parent("a/b/c"), "a/b");
  EXPECT_EQ(fs::parent("x/y/"), "x");
  EXPECT_EQ(fs::parent("x//y"), "x");
  EXPECT_EQ(fs::parent("y.h5"), "");
  EXPECT_EQ(fs::parent("/y"), "/");
  EXPECT_EQ(fs::parent(""), "");
}

TEST(FsPaths, LexicallyNormal) {
  EXPECT_EQ(fs::lexically_normal("a/./b/../c//"), "a/c");
  EXPECT_EQ(fs::lexically_normal(""), ".");
  EXPECT_EQ(fs::lexically_normal("."), ".");
  EXPECT_EQ(fs::lexically_normal("./"), ".");
  EXPECT_EQ(fs::lexically_normal("a/.."), ".");
  EXPECT_EQ(fs::lexically_normal("../a"), "../a");  // a relative path keeps leading ..
  EXPECT_EQ(fs::lexically_normal("a/../.."), "..");
  EXPECT_EQ(fs::lexically_normal("a/b/../../../c"), "../c");
  EXPECT_EQ(fs::lexically_normal("/"), "/");
  EXPECT_EQ(fs::lexically_normal("//a///b"), "/a/b");
  EXPECT_EQ(fs::lexically_normal("/../a"), "/a");  // nothing is above the root
}

TEST(FsPaths, RelativeTo) {
  EXPECT_EQ(fs::relative_to("d/x/y", "d"), "x/y");
  EXPECT_EQ(fs::relative_to("d/x/y", "d/"), "x/y");
  EXPECT_EQ(fs::relative_to("/r/d/x", "/r/d"), "x");
  EXPECT_EQ(fs::relative_to("d", "d"), ".");
  EXPECT_EQ(fs::relative_to("dx/y", "d"), "dx/y");  // by component, not by character prefix
  EXPECT_EQ(fs::relative_to("e/x", "d"), "e/x");    // not under the base: unchanged
  EXPECT_EQ(fs::relative_to("d", "d/x"), "d");
  EXPECT_EQ(fs::relative_to("/d/x", "d"), "/d/x");  // an absolute path is not under a relative base
  EXPECT_EQ(fs::relative_to("d/x", "/d"), "d/x");
}

TEST(FsPaths, AbsoluteAndWeaklyCanonical) {
  char cwd[PATH_MAX];
  ASSERT_NE(::getcwd(cwd, sizeof cwd), nullptr);
  EXPECT_EQ(fs::absolute("x/./y"), fs::lexically_normal(std::string(cwd) + "/x/y"));
  EXPECT_EQ(fs::absolute("/p/../q"), "/q");

  test::TempDir dir;
  const std::string real = real_path(dir.path());  // the temp directory may itself sit under a link
  fs::create_directories(dir.file("real/sub"));
  make_symlink(dir.file("real"), dir.file("link"));
  // Existing prefix through a link, a tail that does not exist: the link resolved, the tail appended.
  EXPECT_EQ(fs::weakly_canonical(dir.file("link/sub/missing/leaf.h5")), real + "/real/sub/missing/leaf.h5");
  EXPECT_EQ(fs::weakly_canonical(dir.file("link/missing")), real + "/real/missing");
  // Whole path exists: realpath itself.
  EXPECT_EQ(fs::weakly_canonical(dir.file("link/sub")), real + "/real/sub");
  EXPECT_EQ(fs::weakly_canonical(dir.file("link/./sub/")), real + "/real/sub");
  // Nothing but the root exists.
  EXPECT_EQ(fs::weakly_canonical("/nla-no-such-dir/a/b"), "/nla-no-such-dir/a/b");
}

// ---- queries --------------------------------------------------------------------------------

TEST(FsQueries, KindsSizesAndEmptiness) {
  test::TempDir dir;
  test::write_text(dir.file("five"), "12345");
  test::write_text(dir.file("empty"), "");
  fs::create_directories(dir.file("d"));
  make_symlink(dir.file("nowhere"), dir.file("dangling"));
  make_symlink(dir.file("d"), dir.file("dir_link"));

  EXPECT_TRUE(fs::exists(dir.file("five")));
  EXPECT_TRUE(fs::is_regular_file(dir.file("five")));
  EXPECT_FALSE(fs::is_directory(dir.file("five")));
  EXPECT_TRUE(fs::is_directory(dir.file("d")));
  EXPECT_TRUE(fs::is_directory(dir.file("dir_link")));  // follows the link
  EXPECT_FALSE(fs::exists(dir.file("missing")));
  EXPECT_FALSE(fs::exists(dir.file("dangling")));  // follows the link to nothing
  EXPECT_FALSE(fs::is_regular_file(dir.file("d")));

  EXPECT_EQ(fs::file_size(dir.file("five")), 5u);
  EXPECT_EQ(fs::file_size(dir.file("empty")), 0u);
  EXPECT_THROW(fs::file_size(dir.file("d")), Error);
  EXPECT_THROW(fs::file_size(dir.file("missing")), Error);

  EXPECT_TRUE(fs::is_empty_directory(dir.file("d")));
  EXPECT_FALSE(fs::is_empty_directory(dir.path()));
  EXPECT_FALSE(fs::is_empty_directory(dir.file("five")));
  EXPECT_FALSE(fs::is_empty_directory(dir.file("missing")));
}

TEST(FsQueries, ListDirectoryIsSortedWithoutDotEntries) {
  test::TempDir dir;
  for (const char* name : {"b", "a", ".hidden", "B"}) test::write_text(dir.file(name), name);
  fs::create_directories(dir.file("c"));
  EXPECT_EQ(fs::list_directory(dir.path()), (Names{".hidden", "B", "a", "b", "c"}));  // byte order
  EXPECT_EQ(fs::list_directory(dir.file("c")), Names{});
  EXPECT_THROW(fs::list_directory(dir.file("missing")), Error);
  EXPECT_THROW(fs::list_directory(dir.file("a")), Error);
}

TEST(FsQueries, ListFilesRecursiveSurvivesASymlinkLoop) {
  test::TempDir dir;
  const std::string root = dir.file("root");
  fs::create_directories(root + "/sub/deeper");
  test::write_text(root + "/1.txt", "1");
  test::write_text(root + "/sub/2.txt", "2");
  test::write_text(root + "/sub/deeper/3.txt", "3");
  make_symlink("..", root + "/sub/deeper/up");  // root/sub/deeper/up -> root/sub: a loop
  make_symlink(root, root + "/sub/to_root");     // and one back to the top
  make_symlink(root + "/nowhere", root + "/dangling");
  EXPECT_EQ(fs::list_files_recursive(root), (Names{"1.txt", "sub/2.txt", "sub/deeper/3.txt"}));

  // A second name for a directory: its files are listed once, under one of the names.
  const std::string twice = dir.file("twice");
  fs::create_directories(twice + "/real");
  test::write_text(twice + "/real/f", "f");
  make_symlink(twice + "/real", twice + "/alias");
  const Names listed = fs::list_files_recursive(twice);
  ASSERT_EQ(listed.size(), 1u) << testing::PrintToString(listed);
  EXPECT_TRUE(listed[0] == "alias/f" || listed[0] == "real/f") << listed[0];

  EXPECT_EQ(fs::list_files_recursive(dir.file("missing")), Names{});  // skips what it cannot read
}

// ---- changes ----------------------------------------------------------------------------------

TEST(FsChanges, CreateDirectories) {
  test::TempDir dir;
  fs::create_directories(dir.file("a/b/c"));
  EXPECT_TRUE(fs::is_directory(dir.file("a/b/c")));
  EXPECT_NO_THROW(fs::create_directories(dir.file("a/b/c")));  // existing: nothing to do
  EXPECT_NO_THROW(fs::create_directories(dir.file("a/b/c/")));
  fs::create_directories(dir.file("t/u/"));  // a trailing slash
  EXPECT_TRUE(fs::is_directory(dir.file("t/u")));

  test::write_text(dir.file("file"), "x");
  for (const std::string& blocked : {dir.file("file"), dir.file("file/sub"), dir.file("file/sub/deeper")}) {
    try {
      fs::create_directories(blocked);
      ADD_FAILURE() << "no throw for " << blocked;
    } catch (const InputError& error) {
      // The message names the component that could not be made a directory.
      EXPECT_NE(std::string(error.what()).find(dir.file("file")), std::string::npos) << error.what();
    }
  }
  EXPECT_TRUE(fs::is_regular_file(dir.file("file")));  // left alone
}

TEST(FsChanges, RemoveAllDoesNotFollowSymlinksOutOfTheTree) {
  test::TempDir dir;
  const std::string outside = dir.file("outside"), tree = dir.file("tree");
  fs::create_directories(outside + "/inner");
  test::write_text(outside + "/keep.txt", "keep");
  test::write_text(outside + "/inner/keep2.txt", "keep");
  fs::create_directories(tree + "/a/b");
  test::write_text(tree + "/a/b/f1", "1");
  test::write_text(tree + "/f2", "2");
  make_symlink(outside, tree + "/a/to_outside");              // a directory link
  make_symlink(outside + "/keep.txt", tree + "/file_link");  // a file link
  make_symlink(tree + "/nowhere", tree + "/dangling");

  // tree, a, a/b, a/b/f1, f2, a/to_outside, file_link, dangling
  EXPECT_EQ(fs::remove_all(tree), 8u);
  EXPECT_FALSE(fs::exists(tree));
  EXPECT_EQ(test::read_text(outside + "/keep.txt"), "keep");
  EXPECT_EQ(test::read_text(outside + "/inner/keep2.txt"), "keep");
  EXPECT_EQ(fs::remove_all(tree), 0u);  // already gone

  // A link given as the path itself: the link goes, its target stays.
  make_symlink(outside, dir.file("link_itself"));
  EXPECT_EQ(fs::remove_all(dir.file("link_itself")), 1u);
  EXPECT_EQ(::access(dir.file("link_itself").c_str(), F_OK), -1);
  EXPECT_TRUE(fs::is_regular_file(outside + "/keep.txt"));

  // A plain file.
  EXPECT_EQ(fs::remove_all(outside + "/keep.txt"), 1u);
  EXPECT_FALSE(fs::exists(outside + "/keep.txt"));
}

TEST(FsChanges, Remove) {
  test::TempDir dir;
  test::write_text(dir.file("f"), "x");
  fs::create_directories(dir.file("empty"));
  fs::create_directories(dir.file("full/x"));
  EXPECT_TRUE(fs::remove(dir.file("f")));
  EXPECT_FALSE(fs::exists(dir.file("f")));
  EXPECT_FALSE(fs::remove(dir.file("f")));  // did not exist
  EXPECT_TRUE(fs::remove(dir.file("empty")));
  EXPECT_THROW(fs::remove(dir.file("full")), Error);  // not empty
  EXPECT_TRUE(fs::is_directory(dir.file("full/x")));
}

TEST(FsChanges, Rename) {
  test::TempDir dir;
  test::write_text(dir.file("from"), "new");
  test::write_text(dir.file("to"), "old contents, longer");
  fs::rename(dir.file("from"), dir.file("to"));  // replaces the file
  EXPECT_FALSE(fs::exists(dir.file("from")));
  EXPECT_EQ(test::read_text(dir.file("to")), "new");

  fs::create_directories(dir.file("d1/inner"));
  fs::create_directories(dir.file("d2"));  // empty: replaced
  fs::rename(dir.file("d1"), dir.file("d2"));
  EXPECT_TRUE(fs::is_directory(dir.file("d2/inner")));
  EXPECT_FALSE(fs::exists(dir.file("d1")));

  try {
    fs::rename(dir.file("missing"), dir.file("x"));
    ADD_FAILURE() << "no throw";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find(dir.file("missing")), std::string::npos) << error.what();
  }
}

TEST(FsChanges, CopyFileCopiesBytesAndReplaces) {
  test::TempDir dir;
  // Every byte value, and longer than copy_file's 1 MiB buffer so the loop runs more than once.
  std::string bytes;
  for (int i = 0; i < (3 << 20) + 17; ++i) bytes.push_back(static_cast<char>((i * 7 + i / 256) & 0xff));
  test::write_text(dir.file("src.bin"), bytes);
  fs::set_permissions(dir.file("src.bin"), 0640);
  fs::copy_file(dir.file("src.bin"), dir.file("copy.bin"));
  EXPECT_TRUE(test::read_text(dir.file("copy.bin")) == bytes);  // not EXPECT_EQ: 3 MB on failure
  EXPECT_EQ(mode_bits(dir.file("copy.bin")), 0640u);

  // Replacing a longer file truncates it to the source.
  test::write_text(dir.file("short"), "abc");
  fs::copy_file(dir.file("short"), dir.file("copy.bin"));
  EXPECT_EQ(test::read_text(dir.file("copy.bin")), "abc");
  test::write_text(dir.file("empty"), "");
  fs::copy_file(dir.file("empty"), dir.file("copy.bin"));
  EXPECT_EQ(fs::file_size(dir.file("copy.bin")), 0u);

  EXPECT_THROW(fs::copy_file(dir.file("missing"), dir.file("x")), Error);
  EXPECT_THROW(fs::copy_file(dir.file("short"), dir.file("no_dir/x")), Error);
  EXPECT_FALSE(fs::exists(dir.file("x")));
}

TEST(FsChanges, SetPermissions) {
  test::TempDir dir;
  test::write_text(dir.file("f"), "x");
  fs::set_permissions(dir.file("f"), 0);
  EXPECT_EQ(mode_bits(dir.file("f")), 0u);
  fs::set_permissions(dir.file("f"), 0754);
  EXPECT_EQ(mode_bits(dir.file("f")), 0754u);
  EXPECT_THROW(fs::set_permissions(dir.file("missing"), 0644), Error);
}

TEST(FsChanges, TempDirectoryFollowsTmpdir) {
  const char* saved = std::getenv("TMPDIR");
  const std::optional<std::string> original = saved ? std::optional<std::string>(saved) : std::nullopt;
  ::setenv("TMPDIR", "/scratch/nla", 1);
  EXPECT_EQ(fs::temp_directory(), "/scratch/nla");
  ::setenv("TMPDIR", "", 1);
  EXPECT_EQ(fs::temp_directory(), "/tmp");
  ::unsetenv("TMPDIR");
  EXPECT_EQ(fs::temp_directory(), "/tmp");
  if (original) ::setenv("TMPDIR", original->c_str(), 1);
}

}  // namespace
}  // namespace nla
