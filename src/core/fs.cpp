// Files and directories on POSIX calls (see fs.hpp for why not std::filesystem).
#include "nla/core/fs.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <set>
#include <utility>

#include "nla/core/error.hpp"

namespace nla::fs {

namespace {

std::string errno_text() { return std::strerror(errno); }

bool stat_path(const std::string& path, struct stat& info) { return ::stat(path.c_str(), &info) == 0; }

// Splits on '/', dropping empty components ("a//b/" -> a, b).
std::vector<std::string_view> components(std::string_view path) {
  std::vector<std::string_view> parts;
  size_t begin = 0;
  while (begin <= path.size()) {
    size_t end = path.find('/', begin);
    if (end == std::string_view::npos) end = path.size();
    if (end > begin) parts.push_back(path.substr(begin, end - begin));
    begin = end + 1;
  }
  return parts;
}

// Closes a DIR* on every exit path.
struct DirHandle {
  DIR* dir;
  explicit DirHandle(const std::string& path) : dir(::opendir(path.c_str())) {}
  ~DirHandle() {
    if (dir) ::closedir(dir);
  }
  DirHandle(const DirHandle&) = delete;
  DirHandle& operator=(const DirHandle&) = delete;
};

// Names in an open directory, without "." and "..".
std::vector<std::string> read_names(DIR* dir) {
  std::vector<std::string> names;
  while (dirent* entry = ::readdir(dir)) {
    std::string_view name = entry->d_name;
    if (name == "." || name == "..") continue;
    names.emplace_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

void collect_files(const std::string& root, const std::string& relative, std::set<std::pair<dev_t, ino_t>>& seen,
                   std::vector<std::string>& out) {
  const std::string dir_path = relative.empty() ? root : join(root, relative);
  struct stat info {};
  if (!stat_path(dir_path, info) || !seen.insert({info.st_dev, info.st_ino}).second) return;
  DirHandle dir(dir_path);
  if (!dir.dir) return;
  for (const auto& name : read_names(dir.dir)) {
    const std::string child_relative = relative.empty() ? name : join(relative, name);
    struct stat child {};
    if (!stat_path(join(root, child_relative), child)) continue;  // a dangling link
    if (S_ISDIR(child.st_mode)) {
      collect_files(root, child_relative, seen, out);
    } else if (S_ISREG(child.st_mode)) {
      out.push_back(child_relative);
    }
  }
}

std::uint64_t remove_tree(const std::string& path) {
  struct stat info {};
  if (::lstat(path.c_str(), &info) != 0) {
    if (errno == ENOENT) return 0;
    NLA_THROW("remove_all ", path, ": ", errno_text());
  }
  std::uint64_t removed = 0;
  if (S_ISDIR(info.st_mode)) {
    std::vector<std::string> names;
    {
      DirHandle dir(path);
      if (!dir.dir) NLA_THROW("remove_all ", path, ": cannot read the directory: ", errno_text());
      names = read_names(dir.dir);
    }
    for (const auto& name : names) removed += remove_tree(join(path, name));
    if (::rmdir(path.c_str()) != 0 && errno != ENOENT) NLA_THROW("remove_all ", path, ": ", errno_text());
  } else if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    NLA_THROW("remove_all ", path, ": ", errno_text());
  }
  return removed + 1;
}

}  // namespace

// ---- path strings -----------------------------------------------------------------------

std::string join(std::string_view a, std::string_view b) {
  if (a.empty() || (!b.empty() && b.front() == '/')) return std::string(b);
  std::string out(a);
  if (out.back() != '/') out += '/';
  out += b;
  return out;
}

std::string filename(std::string_view path) {
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  if (path == "/") return "";
  size_t slash = path.rfind('/');
  return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

std::string parent(std::string_view path) {
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  size_t slash = path.rfind('/');
  if (slash == std::string_view::npos) return "";
  if (slash == 0) return "/";
  std::string_view head = path.substr(0, slash);
  while (head.size() > 1 && head.back() == '/') head.remove_suffix(1);
  return std::string(head);
}

std::string lexically_normal(std::string_view path) {
  const bool rooted = !path.empty() && path.front() == '/';
  std::vector<std::string_view> kept;
  for (auto part : components(path)) {
    if (part == ".") continue;
    if (part == "..") {
      if (!kept.empty() && kept.back() != "..") {
        kept.pop_back();
        continue;
      }
      if (rooted) continue;  // "/.." is "/"
    }
    kept.push_back(part);
  }
  std::string out = rooted ? "/" : "";
  for (size_t i = 0; i < kept.size(); ++i) {
    if (i) out += '/';
    out += kept[i];
  }
  return out.empty() ? "." : out;
}

std::string relative_to(std::string_view path, std::string_view base) {
  const auto path_parts = components(path);
  const auto base_parts = components(base);
  const bool same_root = (!path.empty() && path.front() == '/') == (!base.empty() && base.front() == '/');
  if (!same_root || base_parts.size() > path_parts.size() ||
      !std::equal(base_parts.begin(), base_parts.end(), path_parts.begin()))
    return std::string(path);
  std::string out;
  for (size_t i = base_parts.size(); i < path_parts.size(); ++i) {
    if (!out.empty()) out += '/';
    out += path_parts[i];
  }
  return out.empty() ? "." : out;
}

std::string absolute(std::string_view path) {
  if (!path.empty() && path.front() == '/') return lexically_normal(path);
  char cwd[PATH_MAX];
  if (::getcwd(cwd, sizeof cwd) == nullptr) NLA_THROW("getcwd: ", errno_text());
  return lexically_normal(join(cwd, path));
}

std::string weakly_canonical(std::string_view path) {
  const std::string full = absolute(path);
  // Walk back from the whole path to the longest prefix realpath() resolves.
  std::string head = full;
  std::string tail;
  while (true) {
    char resolved[PATH_MAX];
    if (::realpath(head.c_str(), resolved) != nullptr) return tail.empty() ? std::string(resolved) : join(resolved, tail);
    if (head == "/" || head.empty()) return full;
    tail = tail.empty() ? filename(head) : join(filename(head), tail);
    head = parent(head);
  }
}

// ---- queries ------------------------------------------------------------------------------

bool exists(const std::string& path) {
  struct stat info {};
  return stat_path(path, info);
}

bool is_directory(const std::string& path) {
  struct stat info {};
  return stat_path(path, info) && S_ISDIR(info.st_mode);
}

bool is_regular_file(const std::string& path) {
  struct stat info {};
  return stat_path(path, info) && S_ISREG(info.st_mode);
}

bool is_empty_directory(const std::string& path) {
  DirHandle dir(path);
  return dir.dir != nullptr && read_names(dir.dir).empty();
}

std::uint64_t file_size(const std::string& path) {
  struct stat info {};
  if (!stat_path(path, info)) NLA_THROW("file_size ", path, ": ", errno_text());
  if (!S_ISREG(info.st_mode)) NLA_THROW("file_size ", path, ": not a regular file");
  return static_cast<std::uint64_t>(info.st_size);
}

std::vector<std::string> list_directory(const std::string& path) {
  DirHandle dir(path);
  if (!dir.dir) NLA_THROW(path, ": cannot read the directory: ", errno_text());
  return read_names(dir.dir);
}

std::vector<std::string> list_files_recursive(const std::string& path) {
  std::vector<std::string> out;
  std::set<std::pair<dev_t, ino_t>> seen;
  collect_files(path, "", seen, out);
  std::sort(out.begin(), out.end());
  return out;
}

// ---- changes ------------------------------------------------------------------------------

void create_directories(const std::string& path) {
  if (path.empty() || is_directory(path)) return;
  const std::string up = parent(path);
  if (!up.empty() && up != path) create_directories(up);
  if (::mkdir(path.c_str(), 0777) != 0) {
    const int error = errno;
    if (error == EEXIST && is_directory(path)) return;  // made meanwhile, e.g. by another rank
    if (error == EEXIST) NLA_INPUT_ERROR(path, ": cannot create the directory: a file of that name exists");
    NLA_INPUT_ERROR(path, ": cannot create the directory: ", std::strerror(error));
  }
}

bool remove(const std::string& path) {
  struct stat info {};
  if (::lstat(path.c_str(), &info) != 0) {
    if (errno == ENOENT) return false;
    NLA_THROW("remove ", path, ": ", errno_text());
  }
  const int rc = S_ISDIR(info.st_mode) ? ::rmdir(path.c_str()) : ::unlink(path.c_str());
  if (rc != 0) {
    if (errno == ENOENT) return false;
    NLA_THROW("remove ", path, ": ", errno_text());
  }
  return true;
}

std::uint64_t remove_all(const std::string& path) { return remove_tree(path); }

void rename(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) NLA_THROW("rename ", from, " -> ", to, ": ", errno_text());
}

void copy_file(const std::string& from, const std::string& to) {
  const int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) NLA_THROW("copy ", from, ": cannot open: ", errno_text());
  struct stat info {};
  if (::fstat(in, &info) != 0) {
    const std::string why = errno_text();
    ::close(in);
    NLA_THROW("copy ", from, ": ", why);
  }
  const int out = ::open(to.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, info.st_mode & 07777);
  if (out < 0) {
    const std::string why = errno_text();
    ::close(in);
    NLA_THROW("copy ", from, " -> ", to, ": cannot open the target: ", why);
  }
  std::vector<char> buffer(1 << 20);
  std::string failure;
  while (failure.empty()) {
    const ssize_t got = ::read(in, buffer.data(), buffer.size());
    if (got < 0) {
      if (errno == EINTR) continue;
      failure = "read " + from + ": " + errno_text();
      break;
    }
    if (got == 0) break;
    for (ssize_t written = 0; written < got && failure.empty();) {
      const ssize_t put = ::write(out, buffer.data() + written, static_cast<size_t>(got - written));
      if (put < 0 && errno == EINTR) continue;
      if (put < 0) failure = "write " + to + ": " + errno_text();
      else written += put;
    }
  }
  ::close(in);
  if (::close(out) != 0 && failure.empty()) failure = "write " + to + ": " + errno_text();
  if (!failure.empty()) NLA_THROW("copy ", from, " -> ", to, " failed: ", failure);
}

void set_permissions(const std::string& path, unsigned mode) {
  if (::chmod(path.c_str(), static_cast<mode_t>(mode)) != 0) NLA_THROW("chmod ", path, ": ", errno_text());
}

std::string temp_directory() {
  const char* tmp = std::getenv("TMPDIR");
  return tmp && *tmp ? std::string(tmp) : std::string("/tmp");
}

}  // namespace nla::fs
