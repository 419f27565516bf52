// trainer_state/: what a run needs to continue exactly (DESIGN section 3), beside the
// checkpoints of its run directory.
//
//   trainer_state/state.json                 {format, step, world_size, extra: {...}}
//   trainer_state/<name>/                    one ShardedAdamW state per optimizer (master
//                                            weights + moments, one file per rank; any rank
//                                            count can load it)
// The data order and every random draw are functions of (seed, step, sample), so the
// step is the whole data cursor; `extra` holds anything else a trainer keeps (e.g. GRPO's
// AR refresh buffer position). Saving writes trainer_state.tmp/ and renames it over the
// old one, so a kill at any moment leaves the previous complete state.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "nla/dist/adamw.hpp"
#include "nla/dist/communicator.hpp"

namespace nla::run {

struct TrainerState {
  int64_t step = 0;  // optimizer steps done
  nlohmann::json extra = nlohmann::json::object();
};

using NamedOptimizers = std::vector<std::pair<std::string, dist::ShardedAdamW*>>;

// Collective over comm. `run_directory`/trainer_state is replaced atomically.
void save_trainer_state(const std::string& run_directory, const TrainerState& state, const NamedOptimizers& optimizers,
                        const dist::Communicator& comm);
// Collective. nullopt when run_directory/trainer_state does not exist; otherwise the
// optimizers (and through them the sharded parameters) are restored.
std::optional<TrainerState> load_trainer_state(const std::string& run_directory, const NamedOptimizers& optimizers,
                                               const dist::Communicator& comm);

// Publishes a directory written beside its final place (`written`, e.g. av.tmp) as `final_path`:
// the old one is renamed to <final_path>.old first and removed last, so a kill at any moment
// leaves one complete directory. Rank 0 only (the caller's run_on_root).
void replace_directory(const std::string& written, const std::string& final_path);

}  // namespace nla::run
