// GRPO's ranks and roles (DESIGN section 6): MPI_COMM_WORLD split into rollout (AV
// generation), reward (AR scoring) and trainer (sharded AV and AR updates) groups.
//
//   colocate: every rank has every role; the trainer group is the world.
//   split:    world ranks [0, T) train, [T, T + R) roll out, [T + R, T + R + W) score, so
//             world rank 0 is the trainer root (it writes metrics and checkpoints). The
//             world size must equal T + R + W.
// Work is dealt in fixed-size global chunks (chunk c to role rank c % group size), so a
// chunk's batch is the same on any layout and any rank count: generation and scoring give
// the same numbers whatever the layout.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nla/dist/communicator.hpp"

namespace nla::grpo {

enum class Role { rollout, reward, trainer };

struct RoleLayout {
  bool colocate = true;
  int world_size = 1;
  int trainer_ranks = 1, rollout_ranks = 1, reward_ranks = 1;

  bool has(int world_rank, Role role) const;
  // The rank's index within its role group (-1 when it lacks the role).
  int index(int world_rank, Role role) const;
  int size(Role role) const;
  std::string describe() const;  // "split: trainer 0-1, rollout 2, reward 3"
};

// layout: "colocate" | "split". InputError naming the options and the arithmetic when the
// world does not fit (e.g. "... 2 + 1 + 2 = 5 ranks, but the job has 4").
RoleLayout make_role_layout(const std::string& layout, int world_size, int trainer_ranks, int rollout_ranks,
                            int reward_ranks);

// Chunks [0, n_chunks) dealt round-robin: those of role rank `index` among `ranks`.
std::vector<int64_t> my_chunks(int64_t n_chunks, int index, int ranks);
// Balanced contiguous block of rank `index` among `ranks` over n items: [begin, end).
std::pair<int64_t, int64_t> my_block(int64_t n, int index, int ranks);

// The communicators of one rank. Invalid communicators where the rank has no part.
struct RoleGroups {
  RoleLayout layout;
  dist::Communicator world;
  dist::Communicator trainer;      // the trainer group (sharding of the AV and AR)
  // split only: trainer root + the rollout group / + the reward group, trainer root at 0:
  // the weight broadcasts. Colocate needs none (every rank gathers the sharded models).
  dist::Communicator av_sync, ar_sync;
};

// Collective over the world.
RoleGroups make_role_groups(const RoleLayout& layout, const dist::Communicator& world);

}  // namespace nla::grpo
