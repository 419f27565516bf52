// Files and directories, on POSIX calls: nla's only way to touch the filesystem by name.
//
// Why not std::filesystem: PyTorch's pip wheels export the std::filesystem symbols of the
// libstdc++ they link statically (pytorch/pytorch#133437). Linked against such a libtorch,
// an executable's calls to std::filesystem bind to the wheel's copy, whose ABI is not the
// system compiler's: nla crashed in remove_all at its first checkpoint rotation on a GPU
// machine. Code that references no std::filesystem symbol cannot bind to them, so nla and
// its tests do not include <filesystem> (tests/core/test_fs_symbols checks the binaries).
//
// Paths are plain strings. Failures throw nla::Error naming the call, the path and errno's
// text; creating a directory that cannot be created is nla::InputError (a bad --out).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace nla::fs {

// ---- path strings (lexical, no system calls) ----------------------------------
// a/b; b as it is when it is absolute or a is empty.
std::string join(std::string_view a, std::string_view b);
template <typename... Rest>
std::string join(std::string_view a, std::string_view b, const Rest&... rest) {
  return join(join(a, b), rest...);
}
// The last component ("x/y.h5" -> "y.h5", "x/y/" -> "y"), "" for "" and "/".
std::string filename(std::string_view path);
// Everything before the last component ("x/y.h5" -> "x", "y.h5" -> "", "/y" -> "/").
std::string parent(std::string_view path);
// "a/./b/../c//" -> "a/c"; "" -> ".".
std::string lexically_normal(std::string_view path);
// `path` relative to `base` when `path` lies under it, else `path` ("d/x/y", "d" -> "x/y").
std::string relative_to(std::string_view path, std::string_view base);
// The working directory joined to a relative path, normalised lexically.
std::string absolute(std::string_view path);
// realpath() of the longest existing prefix with the rest appended (symlinks resolved).
std::string weakly_canonical(std::string_view path);

// ---- queries (never throw: false / 0 when the path cannot be examined) --------------
bool exists(const std::string& path);              // follows symlinks
bool is_directory(const std::string& path);        // follows symlinks
bool is_regular_file(const std::string& path);     // follows symlinks
bool is_empty_directory(const std::string& path);  // a directory with no entries
std::uint64_t file_size(const std::string& path);  // throws when it is not a readable file

// Entries of a directory (not "." or ".."), sorted by name. Throws when it cannot be read.
std::vector<std::string> list_directory(const std::string& path);
// Regular files under `path`, recursively, as paths relative to it, sorted. Follows
// directory symlinks (each real directory visited once); skips what it cannot read.
std::vector<std::string> list_files_recursive(const std::string& path);

// ---- changes ------------------------------------------------------------------------
// mkdir -p. InputError when a component cannot be created or is not a directory.
void create_directories(const std::string& path);
// Removes a file or an empty directory; false when it did not exist.
bool remove(const std::string& path);
// Removes a file or a directory tree without following symlinks; returns the number of
// entries removed (0 when it did not exist).
std::uint64_t remove_all(const std::string& path);
// rename(2): atomic within one filesystem; replaces a file or an empty directory at `to`.
void rename(const std::string& from, const std::string& to);
// Copies a regular file's bytes (and permission bits); replaces `to` when it exists.
void copy_file(const std::string& from, const std::string& to);
// chmod(2).
void set_permissions(const std::string& path, unsigned mode);
// $TMPDIR when set and non-empty, else /tmp.
std::string temp_directory();

}  // namespace nla::fs
