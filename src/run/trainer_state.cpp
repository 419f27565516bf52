// trainer_state/: step, extra state and the sharded optimizers, replaced atomically.
#include "nla/run/trainer_state.hpp"

#include <fstream>

#include "nla/core/atomic_file.hpp"
#include "nla/core/error.hpp"
#include "nla/core/fs.hpp"
#include "nla/core/world.hpp"

namespace nla::run {

namespace {

constexpr const char* kFormat = "nla-trainer-state";

}  // namespace

void save_trainer_state(const std::string& run_directory, const TrainerState& state, const NamedOptimizers& optimizers,
                        const dist::Communicator& comm) {
  const std::string final_dir = fs::join(run_directory, "trainer_state");
  const std::string tmp_dir = fs::join(run_directory, "trainer_state.tmp");
  run_on_root(comm.mpi_comm(), [&] {
    fs::remove_all(tmp_dir);
    fs::create_directories(tmp_dir);
  });
  for (const auto& [name, optimizer] : optimizers) optimizer->save(fs::join(tmp_dir, name));  // collective
  run_on_root(comm.mpi_comm(), [&] {
    nlohmann::json index;
    index["format"] = kFormat;
    index["version"] = 1;
    index["step"] = state.step;
    index["world_size"] = comm.size();
    index["optimizers"] = nlohmann::json::array();
    for (const auto& named : optimizers) index["optimizers"].push_back(named.first);
    index["extra"] = state.extra;
    write_file_atomic(fs::join(tmp_dir, "state.json"), index.dump(2) + "\n");
    // Two renames: a kill between them leaves trainer_state.old, which load() accepts.
    replace_directory(tmp_dir, final_dir);
  });
}

std::optional<TrainerState> load_trainer_state(const std::string& run_directory, const NamedOptimizers& optimizers,
                                               const dist::Communicator& comm) {
  // Every rank sees the same shared file system: the decision is the same everywhere.
  std::string dir = fs::join(run_directory, "trainer_state");
  if (!fs::exists(fs::join(dir, "state.json"))) dir = fs::join(run_directory, "trainer_state.old");
  if (!fs::exists(fs::join(dir, "state.json"))) return std::nullopt;
  const std::string path = fs::join(dir, "state.json");
  nlohmann::json index;
  {
    std::ifstream in(path);
    NLA_CHECK_INPUT(in, path, ": cannot open");
    try {
      in >> index;
    } catch (const std::exception& error) {
      NLA_INPUT_ERROR(path, ": not valid JSON: ", error.what());
    }
  }
  NLA_CHECK_INPUT(index.value("format", "") == kFormat, path, ": field 'format': expected '", kFormat, "'");
  NLA_CHECK_INPUT(index.contains("step") && index["step"].is_number_integer(), path,
                  ": field 'step': expected an integer");
  for (const auto& [name, optimizer] : optimizers) {
    bool listed = false;
    for (const auto& saved : index.value("optimizers", nlohmann::json::array())) listed = listed || saved == name;
    NLA_CHECK_INPUT(listed, path, ": field 'optimizers': expected an entry '", name, "'");
    optimizer->load(fs::join(dir, name));  // collective
  }
  TrainerState state;
  state.step = index["step"].get<int64_t>();
  state.extra = index.value("extra", nlohmann::json::object());
  comm.barrier();
  return state;
}

void replace_directory(const std::string& written, const std::string& final_path) {
  const std::string old = final_path + ".old";
  fs::remove_all(old);
  if (fs::exists(final_path)) fs::rename(final_path, old);
  fs::rename(written, final_path);
  fs::remove_all(old);
}

}  // namespace nla::run
