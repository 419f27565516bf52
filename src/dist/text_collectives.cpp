// Host-text collectives (see text_collectives.hpp).
#include "nla/dist/text_collectives.hpp"

#include <climits>
#include <cstdint>

#include "nla/core/error.hpp"

namespace nla::dist {

namespace {

int checked_count(size_t bytes, const char* what) {
  NLA_CHECK(bytes < static_cast<size_t>(INT_MAX), what, ": ", bytes, " bytes exceed MPI's int counts (2 GiB)");
  return static_cast<int>(bytes);
}

// Displacements of `counts` laid end to end, and their total.
std::vector<int> offsets_of(const std::vector<int>& counts, const char* what) {
  std::vector<int> offsets(counts.size());
  int64_t total = 0;
  for (size_t r = 0; r < counts.size(); ++r) {
    offsets[r] = static_cast<int>(total);
    total += counts[r];
  }
  checked_count(static_cast<size_t>(total), what);
  return offsets;
}

std::vector<std::string> split(const std::string& all, const std::vector<int>& counts, const std::vector<int>& offsets) {
  std::vector<std::string> parts;
  parts.reserve(counts.size());
  for (size_t r = 0; r < counts.size(); ++r)
    parts.push_back(all.substr(static_cast<size_t>(offsets[r]), static_cast<size_t>(counts[r])));
  return parts;
}

}  // namespace

std::vector<std::string> all_gather_text(MPI_Comm comm, const std::string& mine) {
  int size = 1;
  NLA_CHECK_MPI(MPI_Comm_size(comm, &size));
  int count = checked_count(mine.size(), "all_gather_text: one rank's text");
  std::vector<int> counts(static_cast<size_t>(size));
  NLA_CHECK_MPI(MPI_Allgather(&count, 1, MPI_INT, counts.data(), 1, MPI_INT, comm));
  const auto offsets = offsets_of(counts, "all_gather_text: the gathered text");
  std::string all(static_cast<size_t>(offsets.back()) + static_cast<size_t>(counts.back()), '\0');
  NLA_CHECK_MPI(
      MPI_Allgatherv(mine.data(), count, MPI_CHAR, all.data(), counts.data(), offsets.data(), MPI_CHAR, comm));
  return split(all, counts, offsets);
}

namespace {

// Every rank's `mine` (a string or a vector of numbers), in rank order, on `root`; the other
// ranks get {}.
template <typename Container>
std::vector<Container> gather_parts(MPI_Comm comm, const Container& mine, int root, MPI_Datatype type,
                                    const char* what) {
  int size = 1, rank = 0;
  NLA_CHECK_MPI(MPI_Comm_size(comm, &size));
  NLA_CHECK_MPI(MPI_Comm_rank(comm, &rank));
  int count = checked_count(mine.size(), what);
  std::vector<int> counts(static_cast<size_t>(size));
  NLA_CHECK_MPI(MPI_Gather(&count, 1, MPI_INT, counts.data(), 1, MPI_INT, root, comm));
  std::vector<int> offsets(static_cast<size_t>(size));
  Container all;
  if (rank == root) {
    offsets = offsets_of(counts, what);
    all.resize(static_cast<size_t>(offsets.back()) + static_cast<size_t>(counts.back()));
  }
  NLA_CHECK_MPI(MPI_Gatherv(mine.data(), count, type, all.data(), counts.data(), offsets.data(), type, root, comm));
  if (rank != root) return {};
  std::vector<Container> parts;
  for (size_t r = 0; r < counts.size(); ++r)
    parts.emplace_back(all.begin() + offsets[r], all.begin() + offsets[r] + counts[r]);
  return parts;
}

}  // namespace

std::vector<std::string> gather_text(MPI_Comm comm, const std::string& mine, int root) {
  return gather_parts(comm, mine, root, MPI_CHAR, "gather_text: the text");
}

std::vector<std::vector<double>> gather_doubles(MPI_Comm comm, const std::vector<double>& mine, int root) {
  return gather_parts(comm, mine, root, MPI_DOUBLE, "gather_doubles: the numbers");
}

std::string broadcast_text(MPI_Comm comm, std::string text, int root) {
  int64_t length = static_cast<int64_t>(text.size());
  NLA_CHECK_MPI(MPI_Bcast(&length, 1, MPI_INT64_T, root, comm));
  text.resize(static_cast<size_t>(length));
  if (length > 0)
    NLA_CHECK_MPI(MPI_Bcast(text.data(), checked_count(static_cast<size_t>(length), "broadcast_text"), MPI_CHAR, root,
                            comm));
  return text;
}

std::vector<int> broadcast_ints(MPI_Comm comm, std::vector<int> values, int root) {
  int64_t length = static_cast<int64_t>(values.size());
  NLA_CHECK_MPI(MPI_Bcast(&length, 1, MPI_INT64_T, root, comm));
  values.resize(static_cast<size_t>(length));
  if (length > 0)
    NLA_CHECK_MPI(MPI_Bcast(values.data(), checked_count(static_cast<size_t>(length), "broadcast_ints"), MPI_INT, root,
                            comm));
  return values;
}

double broadcast_double(MPI_Comm comm, double value, int root) {
  NLA_CHECK_MPI(MPI_Bcast(&value, 1, MPI_DOUBLE, root, comm));
  return value;
}

}  // namespace nla::dist
