// GRPO's checkpoint of a finished step: av/ and ar/ written beside their places and
// published, then trainer_state/ (optimizer shards, the AR refresh buffer, the fingerprint),
// written last: it marks the step done.
#include "grpo_run.hpp"
#include "nla/core/fs.hpp"
#include "nla/core/log.hpp"
#include "nla/core/world.hpp"

namespace nla::grpo {

void save_checkpoint(GrpoRun& run, int64_t done_steps) {
  if (!run.is_trainer) return;
  const std::string& out = run.o.out;
  const std::string av_tmp = fs::join(out, "av.tmp"), ar_tmp = fs::join(out, "ar.tmp");
  const MPI_Comm trainers = run.groups.trainer.mpi_comm();
  run_on_root(trainers, [&] {
    fs::remove_all(av_tmp);
    fs::remove_all(ar_tmp);
  });
  run.policy->save_checkpoint(run.in.av_meta, av_tmp, run.tokenizer_dir);
  run.critic->save_checkpoint(run.in.ar_meta, ar_tmp, run.tokenizer_dir);
  run_on_root(trainers, [&] {
    run::replace_directory(av_tmp, fs::join(out, "av"));
    run::replace_directory(ar_tmp, fs::join(out, "ar"));
  });
  run::TrainerState state;
  state.step = done_steps;
  state.extra = {{"run", run.fingerprint.json()}, {"ar_buffer", pairs_to_json(run.ar_buffer)}};
  run::save_trainer_state(out, state, run.optimizers, run.groups.trainer);
  log_info("grpo: checkpoint after step %lld -> %s/{av,ar,trainer_state}", static_cast<long long>(done_steps),
           out.c_str());
}

}  // namespace nla::grpo
