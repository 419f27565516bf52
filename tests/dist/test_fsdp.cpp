// Sharded training of a small Qwen2 against plain training: the same losses step by step
// and the same parameters after the last step, on the rank count the launcher gave (ctest
// runs 1, 2 and 3), in both modes (gather-all, per-block with recomputation), tied and
// untied heads; optimizer state saved on N - 1 ranks and resumed on N.
//
// The reference is independent of nla_dist: the model's parameters as autograd leaves,
// LibTorch's own torch::optim::AdamW and torch::nn::utils::clip_grad_norm_, on the whole
// batch in one process. The sharded run splits the batch's rows over the ranks and
// averages the gradients.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <memory>

#include "nla/core/error.hpp"
#include "nla/core/fs.hpp"
#include "nla/dist/adamw.hpp"
#include "nla/dist/communicator.hpp"
#include "nla/dist/fsdp.hpp"
#include "nla/model/qwen2.hpp"

namespace {

using nla::dist::Communicator;
using nla::dist::ShardedAdamW;
using nla::dist::ShardedModel;
namespace model = nla::model;

constexpr uint64_t kSeed = 11;
constexpr int kBatch = 12;    // rows; divisible by 1, 2, 3 and 4 ranks
constexpr int kSeqLen = 9;    // tokens per row (8 predictions)
constexpr double kMaxNorm = 0.5;  // below the first steps' gradient norm: clipping is exercised

nla::dist::AdamWOptions adamw_options() {
  nla::dist::AdamWOptions options;
  options.lr = 3e-3;
  options.weight_decay = 0.1;
  return options;
}

model::Qwen2Config test_config(bool tied) {
  model::Qwen2Config config = model::qwen2_preset("tiny");
  config.vocab_size = 96;  // a small vocabulary keeps the test in milliseconds
  config.num_hidden_layers = 2;
  config.tie_word_embeddings = tied;
  return config;
}

at::Tensor test_tokens(const model::Qwen2Config& config) {
  auto generator = at::make_generator<at::CPUGeneratorImpl>(1234);
  return at::randint(config.vocab_size, {kBatch, kSeqLen}, generator, at::kLong);  // (B, T + 1)
}

// Mean next-token cross-entropy of rows `tokens` (R, T + 1) given the logits (R, T, V).
at::Tensor next_token_loss(const at::Tensor& logits, const at::Tensor& tokens) {
  at::Tensor targets = tokens.narrow(1, 1, tokens.size(1) - 1);  // (R, T)
  return at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}), targets.reshape({-1}));
}

model::ForwardInput inputs_of(const at::Tensor& tokens) {
  model::ForwardInput input;
  input.input_ids = tokens.narrow(1, 0, tokens.size(1) - 1);  // (R, T)
  return input;
}

struct TrainingRun {
  std::vector<double> losses;
  std::vector<double> grad_norms;                // before clipping, per step
  std::map<std::string, at::Tensor> parameters;  // after the last step
};

// Plain autograd on the whole batch, torch's AdamW and clip_grad_norm_. With
// freeze_embedding the embedding (and a tied head) is left out of the optimizer and of autograd.
TrainingRun reference_run(const model::Qwen2Config& config, int steps, bool freeze_embedding = false) {
  model::Qwen2Model net = model::Qwen2Model::random_init(config, kSeed);
  std::vector<at::Tensor> params;
  for (auto& [name, p] : net.named_parameters()) {
    if (freeze_embedding && name == "model.embed_tokens.weight") continue;
    p.requires_grad_(true);
    params.push_back(p);
  }
  auto a = adamw_options();
  torch::optim::AdamW optimizer(
      params, torch::optim::AdamWOptions(a.lr).betas({a.beta1, a.beta2}).eps(a.eps).weight_decay(a.weight_decay));
  at::Tensor tokens = test_tokens(config);
  TrainingRun run;
  for (int step = 0; step < steps; ++step) {
    optimizer.zero_grad();
    at::Tensor loss = next_token_loss(net.forward(inputs_of(tokens)).logits, tokens);
    loss.backward();
    run.grad_norms.push_back(torch::nn::utils::clip_grad_norm_(params, kMaxNorm));
    optimizer.step();
    run.losses.push_back(loss.item<double>());
  }
  for (auto& [name, tensor] : net.named_parameters()) run.parameters[name] = tensor.detach().clone();
  return run;
}

// This rank's rows of the batch.
at::Tensor local_rows(const at::Tensor& tokens, const Communicator& comm) {
  const int64_t rows = tokens.size(0) / comm.size();
  return tokens.narrow(0, comm.rank() * rows, rows);
}

// `steps` sharded steps; the loss of a step is the mean over ranks of the local means.
std::vector<double> train_steps(ShardedModel& sharded, ShardedAdamW& optimizer, int steps,
                                std::vector<double>* grad_norms = nullptr) {
  at::Tensor tokens = local_rows(test_tokens(sharded.config()), sharded.comm());
  std::vector<double> losses;
  for (int step = 0; step < steps; ++step) {
    sharded.zero_grad();
    at::Tensor loss = sharded.forward_backward(inputs_of(tokens), {}, [&](const model::ForwardOutput& out) {
      return next_token_loss(out.logits, tokens);
    });
    losses.push_back(sharded.comm().all_reduce_scalar(loss.item<double>()) / sharded.comm().size());
    const double norm = sharded.clip_grad_norm(kMaxNorm);
    if (grad_norms) grad_norms->push_back(norm);
    optimizer.step();
  }
  return losses;
}

double max_loss_diff(const std::vector<double>& a, const std::vector<double>& b) {
  double worst = a.size() == b.size() ? 0.0 : 1e30;
  for (size_t k = 0; k < std::min(a.size(), b.size()); ++k) worst = std::max(worst, std::abs(a[k] - b[k]));
  return worst;
}

double max_relative_diff(const std::vector<double>& a, const std::vector<double>& b) {
  double worst = a.size() == b.size() ? 0.0 : 1e30;
  for (size_t k = 0; k < std::min(a.size(), b.size()); ++k)
    worst = std::max(worst, std::abs(a[k] - b[k]) / std::abs(b[k]));
  return worst;
}

// Max |a - b| over every parameter; `where` names the worst tensor.
double max_param_diff(const std::map<std::string, at::Tensor>& a, ShardedModel& sharded, std::string& where) {
  double worst = 0;
  int matched = 0;
  sharded.for_each_full_parameter([&](const std::string& name, const at::Tensor& tensor) {
    auto found = a.find(name);
    if (found == a.end()) {
      worst = 1e30;
      where = name + " (missing in the reference)";
      return;
    }
    ++matched;
    const double diff = (found->second - tensor).abs().max().item<double>();
    if (diff > worst) {
      worst = diff;
      where = name;
    }
  });
  if (matched != static_cast<int>(a.size())) worst = 1e30;
  return worst;
}

// fp32 tolerances. The sharded run sums in another order (per-rank means, then a
// reduce-scatter; the global norm over flat units instead of per tensor), so each step
// differs from the reference by float32 rounding (~1e-7 relative). Losses and gradient
// norms keep that size; measured worst on 1-3 ranks: loss 7.2e-7, norm 5.3e-7 relative.
constexpr double kLossTolerance = 5e-6;      // absolute, on losses of ~4.6 (ln 96)
constexpr double kGradNormTolerance = 1e-5;  // relative: catches a wrong sum or average,
                                             // which AdamW's scale invariance would hide
// Parameters: AdamW moves an element by ~lr whatever its gradient's size, so elements whose
// exact gradient is 0 (k_proj.bias: softmax ignores a shift shared by all keys) follow
// their rounding noise; measured worst 1.9e-5 (3 ranks). The bound is 1% of the largest
// possible move lr * steps = 1.2e-2: a lost or doubled contribution moves far more.
constexpr double kParamTolerance = 1.2e-4;

struct Case {
  bool per_block;
  bool tied;
};

class ShardedTraining : public testing::TestWithParam<Case> {};

TEST_P(ShardedTraining, MatchesUnshardedTraining) {
  const Case c = GetParam();
  const int steps = 4;
  const model::Qwen2Config config = test_config(c.tied);
  TrainingRun reference = reference_run(config, steps);

  nla::dist::FsdpOptions options;
  options.per_block = c.per_block;
  ShardedModel sharded(model::Qwen2Model::random_init(config, kSeed), Communicator::world(), options);
  ShardedAdamW optimizer(sharded, adamw_options());
  std::vector<double> norms;
  std::vector<double> losses = train_steps(sharded, optimizer, steps, &norms);
  std::string where;
  const double param_diff = max_param_diff(reference.parameters, sharded, where);
  const double loss_diff = max_loss_diff(losses, reference.losses);
  const double norm_diff = max_relative_diff(norms, reference.grad_norms);
  if (sharded.comm().rank() == 0)
    std::printf("[ranks %d, %s, %s] loss %.6f -> %.6f; max |loss diff| %.3g, max rel grad-norm diff %.3g, "
                "max |param diff| %.3g (%s)\n",
                sharded.comm().size(), c.per_block ? "per-block" : "gather-all", c.tied ? "tied" : "untied",
                losses.front(), losses.back(), loss_diff, norm_diff, param_diff, where.c_str());
  EXPECT_LT(losses.back(), losses.front()) << "training should lower the loss";
  EXPECT_GT(reference.grad_norms.front(), kMaxNorm) << "clipping should be exercised";
  EXPECT_LE(loss_diff, kLossTolerance);
  EXPECT_LE(norm_diff, kGradNormTolerance);
  EXPECT_LE(param_diff, kParamTolerance) << "worst tensor: " << where;
}

INSTANTIATE_TEST_SUITE_P(Modes, ShardedTraining,
                         testing::Values(Case{false, true}, Case{true, true}, Case{true, false}, Case{false, false}),
                         [](const testing::TestParamInfo<Case>& info) {
                           return std::string(info.param.per_block ? "PerBlock" : "GatherAll") +
                                  (info.param.tied ? "Tied" : "Untied");
                         });

// --freeze-embeddings: the frozen unit keeps its initial values and gets no gradient; the
// other units follow torch's AdamW over the remaining parameters (the clipping norm too).
TEST(ShardedTraining, FrozenEmbeddingMatchesReferenceWithoutIt) {
  const int steps = 3;
  const model::Qwen2Config config = test_config(true);
  TrainingRun reference = reference_run(config, steps, /*freeze_embedding=*/true);
  for (bool per_block : {false, true}) {
    nla::dist::FsdpOptions options;
    options.per_block = per_block;
    ShardedModel sharded(model::Qwen2Model::random_init(config, kSeed), Communicator::world(), options);
    sharded.freeze("embed");
    const at::Tensor embed_before = sharded.units().front().master.clone();
    ShardedAdamW optimizer(sharded, adamw_options());
    std::vector<double> norms;
    std::vector<double> losses = train_steps(sharded, optimizer, steps, &norms);
    EXPECT_TRUE(at::equal(sharded.units().front().master, embed_before)) << "the frozen embedding moved";
    EXPECT_EQ(sharded.units().front().grad.abs().max().item<double>(), 0.0);
    std::string where;
    EXPECT_LE(max_param_diff(reference.parameters, sharded, where), kParamTolerance) << "worst tensor: " << where;
    EXPECT_LE(max_loss_diff(losses, reference.losses), kLossTolerance);
    EXPECT_LE(max_relative_diff(norms, reference.grad_norms), kGradNormTolerance);
  }
  ShardedModel sharded(model::Qwen2Model::random_init(config, kSeed), Communicator::world());
  EXPECT_THROW(sharded.freeze("embeddings"), nla::InputError);
}

// The AR's shape of loss: blocks 0..L only (stop_after_layer), a loss on the hidden state,
// no head. Per-block recomputation must give the gather-all gradients; units the loss does
// not reach (later blocks, the head) get none.
TEST(ShardedTrunk, PerBlockGradientsMatchGatherAll) {
  const model::Qwen2Config config = test_config(false);
  at::Tensor tokens = test_tokens(config);
  std::vector<std::vector<at::Tensor>> grads;  // per mode, per unit: (S)
  for (bool per_block : {false, true}) {
    nla::dist::FsdpOptions options;
    options.per_block = per_block;
    ShardedModel sharded(model::Qwen2Model::random_init(config, kSeed), Communicator::world(), options);
    at::Tensor rows = local_rows(tokens, sharded.comm());
    model::ForwardOptions forward;
    forward.stop_after_layer = 0;
    forward.compute_logits = false;
    sharded.forward_backward(inputs_of(rows), forward,
                             [](const model::ForwardOutput& out) { return out.hidden.pow(2).mean(); });
    grads.emplace_back();
    for (auto& unit : sharded.units()) grads.back().push_back(unit.grad.clone());
  }
  double worst = 0, scale = 0;
  for (size_t u = 0; u < grads[0].size(); ++u) {
    worst = std::max(worst, (grads[0][u] - grads[1][u]).abs().max().item<double>());
    scale = std::max(scale, grads[0][u].abs().max().item<double>());
  }
  // Units: embed, layers.0, layers.1, head; only the first two are on the loss's path.
  EXPECT_GT(grads[1][0].abs().max().item<double>(), 0.0);
  EXPECT_GT(grads[1][1].abs().max().item<double>(), 0.0);
  EXPECT_EQ(grads[1][2].abs().max().item<double>(), 0.0);
  EXPECT_EQ(grads[1][3].abs().max().item<double>(), 0.0);
  // Same ops in the same order except the split of the backward at block boundaries:
  // float32 rounding only.
  EXPECT_LE(worst, 1e-5 * scale) << "largest gradient element " << scale;
}

// Steering under sharding: the sharded forward (both modes) adds the vector where the plain
// model does, with and without listed positions, and a per-block training step's loss is
// the plain model's steered loss.
TEST(ShardedSteering, ForwardAndLossMatchThePlainModel) {
  const model::Qwen2Config config = test_config(false);
  at::Tensor tokens = test_tokens(config);
  auto generator = at::make_generator<at::CPUGeneratorImpl>(5);
  model::ForwardOptions options;
  options.capture_layers = {0, 1};
  options.steering = {{0, at::randn({config.hidden_size}, generator), 1.5, {}},
                      {1, at::randn({config.hidden_size}, generator), -2.0, {2, 3, 7}}};
  model::Qwen2Model plain = model::Qwen2Model::random_init(config, kSeed);
  auto expected = plain.forward(inputs_of(tokens), options);
  auto unsteered = plain.forward(inputs_of(tokens));
  ASSERT_GT((expected.logits - unsteered.logits).abs().max().item<double>(), 1e-3);
  const double expected_loss = next_token_loss(expected.logits, tokens).item<double>();
  for (bool per_block : {false, true}) {
    SCOPED_TRACE(per_block ? "per-block" : "gather-all");
    nla::dist::FsdpOptions fsdp;
    fsdp.per_block = per_block;
    ShardedModel sharded(model::Qwen2Model::random_init(config, kSeed), Communicator::world(), fsdp);
    auto out = sharded.forward(inputs_of(tokens), options);
    const double scale = expected.logits.abs().max().item<double>();
    EXPECT_LE((out.logits - expected.logits).abs().max().item<double>(), 1e-5 * scale);
    for (int64_t l : options.capture_layers)
      EXPECT_LE((out.captured.at(l) - expected.captured.at(l)).abs().max().item<double>(),
                1e-5 * expected.captured.at(l).abs().max().item<double>()) << "layer " << l;
    // A training step on this rank's rows: the mean over ranks is the plain loss.
    model::ForwardOptions train = options;
    train.capture_layers.clear();
    at::Tensor rows = local_rows(tokens, sharded.comm());
    at::Tensor loss = sharded.forward_backward(inputs_of(rows), train, [&](const model::ForwardOutput& o) {
      return next_token_loss(o.logits, rows);
    });
    const double mean = sharded.comm().all_reduce_scalar(loss.item<double>()) / sharded.comm().size();
    EXPECT_NEAR(mean, expected_loss, 1e-5 * std::abs(expected_loss));
  }
}

// A directory every rank sees: made by rank 0, its path broadcast.
std::string shared_temp_dir(const Communicator& comm) {
  std::string path(256, '\0');
  if (comm.rank() == 0) {
    std::string pattern = nla::fs::join(nla::fs::temp_directory(), "nla-fsdp-XXXXXX");
    if (mkdtemp(pattern.data())) path.replace(0, pattern.size(), pattern);
  }
  MPI_Bcast(path.data(), static_cast<int>(path.size()), MPI_CHAR, 0, comm.mpi_comm());
  return path.c_str();
}

// Save, reload on the same ranks, continue: bit-identical losses (deterministic CPU math).
TEST(ShardedCheckpoint, SameRanksResumeIsBitIdentical) {
  Communicator world = Communicator::world();
  const std::string dir = shared_temp_dir(world);
  const model::Qwen2Config config = test_config(true);
  std::vector<double> uninterrupted, resumed;
  {
    ShardedModel sharded(model::Qwen2Model::random_init(config, kSeed), world);
    ShardedAdamW optimizer(sharded, adamw_options());
    train_steps(sharded, optimizer, 2);
    optimizer.save(dir);
    uninterrupted = train_steps(sharded, optimizer, 2);
  }
  {
    // Another seed: every value must come from the saved state.
    ShardedModel sharded(model::Qwen2Model::random_init(config, kSeed + 1), world);
    ShardedAdamW optimizer(sharded, adamw_options());
    optimizer.load(dir);
    EXPECT_EQ(optimizer.step_count(), 2);
    resumed = train_steps(sharded, optimizer, 2);
  }
  EXPECT_EQ(resumed, uninterrupted);
  world.barrier();
  if (world.rank() == 0) nla::fs::remove_all(dir);
}

// Save on N - 1 ranks (a sub-group), load on all N, continue: the losses of an
// uninterrupted unsharded run, within the fp32 tolerance above.
TEST(ShardedCheckpoint, ResumeOnMoreRanks) {
  Communicator world = Communicator::world();
  if (world.size() < 2) GTEST_SKIP() << "needs 2 or more ranks";  // the same on every rank
  const std::string dir = shared_temp_dir(world);
  const model::Qwen2Config config = test_config(true);
  TrainingRun reference = reference_run(config, 4);
  std::vector<double> first(2, 0.0), second;
  Communicator fewer = world.split(world.rank() < world.size() - 1 ? 0 : -1, world.rank());
  if (fewer.valid()) {
    ShardedModel sharded(model::Qwen2Model::random_init(config, kSeed), fewer);
    ShardedAdamW optimizer(sharded, adamw_options());
    first = train_steps(sharded, optimizer, 2);
    optimizer.save(dir);
  }
  world.barrier();
  {
    ShardedModel sharded(model::Qwen2Model::random_init(config, kSeed + 1), world);
    ShardedAdamW optimizer(sharded, adamw_options());
    optimizer.load(dir);
    second = train_steps(sharded, optimizer, 2);
  }
  // Rank 0 was in both groups: it holds all four losses.
  std::vector<double> all = first;
  all.insert(all.end(), second.begin(), second.end());
  const double diff = max_loss_diff(all, reference.losses);
  if (world.rank() == 0) {
    std::printf("[save on %d, resume on %d] max |loss diff| vs uninterrupted unsharded %.3g\n", world.size() - 1,
                world.size(), diff);
    EXPECT_LE(diff, kLossTolerance);
  }
  EXPECT_LE(max_loss_diff(second, std::vector<double>{reference.losses[2], reference.losses[3]}), kLossTolerance);
  world.barrier();
  if (world.rank() == 0) nla::fs::remove_all(dir);
}

}  // namespace
