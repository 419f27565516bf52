// Collectives of host values over an MPI communicator: text (JSON records, descriptions,
// paths) and rank 0's small decisions (layer lists, a scale). The stages move per-rank results
// and rank 0's decisions with these. Device tensors go
// through dist::Communicator instead. MPI counts are int: each call checks the 2 GiB limit.
#pragma once

#include <mpi.h>

#include <string>
#include <vector>

namespace nla::dist {

// Every rank's text, in rank order, on every rank of comm.
std::vector<std::string> all_gather_text(MPI_Comm comm, const std::string& mine);

// Every rank's text, in rank order, on `root`; the other ranks get {}.
std::vector<std::string> gather_text(MPI_Comm comm, const std::string& mine, int root);

// Every rank's numbers, in rank order, on `root` (per-rank results: activations' reductions,
// norms); the other ranks get {}.
std::vector<std::vector<double>> gather_doubles(MPI_Comm comm, const std::vector<double>& mine, int root);

// Root's text on every rank (the others' `text` is ignored).
std::string broadcast_text(MPI_Comm comm, std::string text, int root = 0);

// Root's list (any length) on every rank (the others' `values` are ignored).
std::vector<int> broadcast_ints(MPI_Comm comm, std::vector<int> values, int root = 0);

// Root's value on every rank.
double broadcast_double(MPI_Comm comm, double value, int root = 0);

}  // namespace nla::dist
