// GRPO's role layout and communicators (see roles.hpp).
#include "nla/grpo/roles.hpp"

#include <mpi.h>

#include "nla/core/error.hpp"

namespace nla::grpo {

bool RoleLayout::has(int world_rank, Role role) const { return index(world_rank, role) >= 0; }

int RoleLayout::size(Role role) const {
  if (colocate) return world_size;
  switch (role) {
    case Role::trainer: return trainer_ranks;
    case Role::rollout: return rollout_ranks;
    case Role::reward: return reward_ranks;
  }
  return 0;
}

int RoleLayout::index(int world_rank, Role role) const {
  if (colocate) return world_rank;
  int first = 0;
  if (role != Role::trainer) first += trainer_ranks;
  if (role == Role::reward) first += rollout_ranks;
  int local = world_rank - first;
  return local >= 0 && local < size(role) ? local : -1;
}

std::string RoleLayout::describe() const {
  auto range = [](int first, int count) {
    return count == 1 ? std::to_string(first) : std::to_string(first) + "-" + std::to_string(first + count - 1);
  };
  if (colocate) return "colocate: every role on ranks " + range(0, world_size);
  return "split: trainer ranks " + range(0, trainer_ranks) + ", rollout " + range(trainer_ranks, rollout_ranks) +
         ", reward " + range(trainer_ranks + rollout_ranks, reward_ranks);
}

RoleLayout make_role_layout(const std::string& layout, int world_size, int trainer_ranks, int rollout_ranks,
                            int reward_ranks) {
  RoleLayout out;
  out.world_size = world_size;
  if (layout == "colocate") {
    out.colocate = true;
    out.trainer_ranks = out.rollout_ranks = out.reward_ranks = world_size;
    return out;
  }
  NLA_CHECK_INPUT(layout == "split", "option 'layout': expected colocate or split, got '", layout, "'");
  NLA_CHECK_INPUT(trainer_ranks >= 1 && rollout_ranks >= 1 && reward_ranks >= 1,
                  "options 'trainer-ranks', 'rollout-ranks', 'reward-ranks': expected >= 1 each with --layout split, got ",
                  trainer_ranks, ", ", rollout_ranks, ", ", reward_ranks);
  const int needed = trainer_ranks + rollout_ranks + reward_ranks;
  NLA_CHECK_INPUT(needed == world_size, "--layout split: trainer-ranks + rollout-ranks + reward-ranks = ", trainer_ranks,
                  " + ", rollout_ranks, " + ", reward_ranks, " = ", needed, " ranks, but the job has ", world_size,
                  "; expected them to add up to the world size");
  out.colocate = false;
  out.trainer_ranks = trainer_ranks;
  out.rollout_ranks = rollout_ranks;
  out.reward_ranks = reward_ranks;
  return out;
}

std::vector<int64_t> my_chunks(int64_t n_chunks, int index, int ranks) {
  std::vector<int64_t> chunks;
  if (index < 0) return chunks;
  for (int64_t c = index; c < n_chunks; c += ranks) chunks.push_back(c);
  return chunks;
}

std::pair<int64_t, int64_t> my_block(int64_t n, int index, int ranks) {
  return {n * index / ranks, n * (index + 1) / ranks};
}

RoleGroups make_role_groups(const RoleLayout& layout, const dist::Communicator& world) {
  RoleGroups groups;
  groups.layout = layout;
  groups.world = world;
  const int rank = world.rank();
  NLA_CHECK(world.size() == layout.world_size, "role layout for ", layout.world_size, " ranks, world has ",
            world.size());
  // Every split below is collective over the world, on every rank, in this order.
  groups.trainer = world.split(layout.has(rank, Role::trainer) ? 0 : MPI_UNDEFINED, rank);
  if (!layout.colocate) {
    const bool root = rank == 0;
    groups.av_sync = world.split(root || layout.has(rank, Role::rollout) ? 0 : MPI_UNDEFINED, rank);
    groups.ar_sync = world.split(root || layout.has(rank, Role::reward) ? 0 : MPI_UNDEFINED, rank);
  }
  return groups;
}

}  // namespace nla::grpo
