// Several anchors in one sweep (see include/nla/eval/anchors.hpp): pairing AVs with ARs,
// one single-anchor sweep per anchor, the coverage tables, and eval-merge of part runs.
#include "nla/eval/anchors.hpp"

#include <mpi.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>

#include "nla/core/error.hpp"
#include "nla/dist/text_collectives.hpp"
#include "nla/core/fs.hpp"
#include "nla/core/log.hpp"
#include "nla/core/world.hpp"
#include "nla/model/qwen2_config.hpp"
#include "nla/autoencoder/checkpoint.hpp"
#include "nla/store/activation_store.hpp"

namespace nla::eval {

namespace {

// Rank 0's JSON value on every rank.
void broadcast_json(nlohmann::json& value) {
  const std::string text = dist::broadcast_text(MPI_COMM_WORLD, is_root() ? value.dump() : std::string());
  if (!is_root()) value = nlohmann::json::parse(text);
}

// The anchor layer a checkpoint names: critic.extraction_layer_index, or for an AR the
// truncated model's last layer (config.json num_hidden_layers - 1).
int checkpoint_layer(const std::string& dir, const autoencoder::NlaMeta& meta) {
  if (meta.extraction_layer_index >= 0) return static_cast<int>(meta.extraction_layer_index);
  NLA_CHECK_INPUT(meta.role == "ar", dir,
                  "/nla_meta.yaml: key 'critic.extraction_layer_index' absent (with several anchors each AV must name "
                  "its layer, to be paired with the AR of that layer)");
  return static_cast<int>(model::Qwen2Config::from_file(dir).num_hidden_layers) - 1;
}

// The run directories RUN/anchor_<L> holding a results.h5, by layer.
std::vector<std::pair<int, std::string>> anchor_subdirectories(const std::string& run) {
  std::vector<std::pair<int, std::string>> found;
  if (!fs::is_directory(run)) return found;
  for (const auto& name : fs::list_directory(run)) {
    if (name.rfind("anchor_", 0) != 0 || !fs::exists(fs::join(run, name, "results.h5"))) continue;
    const std::string digits = name.substr(7);
    if (digits.empty() || !std::all_of(digits.begin(), digits.end(), ::isdigit)) continue;
    found.emplace_back(std::stoi(digits), name);
  }
  std::sort(found.begin(), found.end());
  return found;
}

CoverageOptions coverage_options_of(const nlohmann::json& recorded, const std::string& source) {
  NLA_CHECK_INPUT(recorded.contains("layers_option") && recorded.contains("min_cosine") && recorded.contains("metric"),
                  source, ": expected keys layers_option, min_cosine and metric (a coverage.json of nla eval)");
  CoverageOptions options;
  options.layers = recorded["layers_option"].get<std::string>();
  options.min_cosine = recorded["min_cosine"].get<double>();
  options.metric = recorded["metric"].get<std::string>();
  if (recorded.contains("exact_limit")) options.exact_limit = recorded["exact_limit"].get<int64_t>();
  return options;
}

nlohmann::json read_json_file(const std::string& path) {
  std::ifstream in(path);
  NLA_CHECK_INPUT(in.good(), path, ": cannot be read");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& error) {
    NLA_INPUT_ERROR(path, ": not valid JSON (", error.what(), ")");
  }
}

}  // namespace

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> items;
  std::istringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    const auto first = item.find_first_not_of(" \t"), last = item.find_last_not_of(" \t");
    if (first != std::string::npos) items.push_back(item.substr(first, last - first + 1));
  }
  return items;
}

bool has_several_anchors(const SweepOptions& options) {
  return split_list(options.av).size() > 1 || split_list(options.ar).size() > 1;
}

std::string anchor_run_directory(const std::string& run, int layer) { return run + "/anchor_" + std::to_string(layer); }

std::vector<AnchorPair> pair_anchors(const std::vector<std::string>& avs, const std::vector<std::string>& ars) {
  NLA_CHECK_INPUT(!avs.empty() && !ars.empty(), "options 'av' and 'ar': expected AV and AR checkpoint directories");
  struct Side {
    std::string option, role;
    std::map<int, std::pair<std::string, int64_t>> by_layer;  // layer -> (dir, d_model)
  };
  Side av_side{"av", "av", {}}, ar_side{"ar", "ar", {}};
  for (auto* side : {&av_side, &ar_side}) {
    for (const auto& dir : side == &av_side ? avs : ars) {
      auto meta = autoencoder::NlaMeta::read(dir);
      NLA_CHECK_INPUT(meta.role == side->role, dir, "/nla_meta.yaml: key 'role': expected ", side->role, " (option '",
                      side->option, "'), got '", meta.role, "'");
      const int layer = checkpoint_layer(dir, meta);
      auto [it, inserted] = side->by_layer.emplace(layer, std::make_pair(dir, meta.d_model));
      NLA_CHECK_INPUT(inserted, "option '", side->option, "': ", it->second.first, " and ", dir, " are both ",
                      side->role == "av" ? "AVs" : "ARs", " of anchor layer ", layer,
                      " (expected one per anchor layer)");
    }
  }
  std::vector<AnchorPair> pairs;
  for (const auto& [layer, av] : av_side.by_layer) {
    auto ar = ar_side.by_layer.find(layer);
    NLA_CHECK_INPUT(ar != ar_side.by_layer.end(), "option 'av': ", av.first, " (anchor layer ", layer,
                    ") has no AR of layer ", layer, " in option 'ar' (expected one AR per AV, paired by layer)");
    NLA_CHECK_INPUT(av.second == ar->second.second, "options 'av' and 'ar': ", av.first, " has d_model ", av.second,
                    ", ", ar->second.first, " has ", ar->second.second, " (expected one base model)");
    pairs.push_back({layer, av.first, ar->second.first, av.second});
  }
  for (const auto& [layer, ar] : ar_side.by_layer)
    NLA_CHECK_INPUT(av_side.by_layer.count(layer), "option 'ar': ", ar.first, " (anchor layer ", layer,
                    ") has no AV of layer ", layer, " in option 'av' (expected one AV per AR, paired by layer)");
  for (const auto& pair : pairs)
    NLA_CHECK_INPUT(pair.d_model == pairs.front().d_model, "options 'av' and 'ar': anchor ", pair.layer, " (", pair.av,
                    ") has d_model ", pair.d_model, ", anchor ", pairs.front().layer, " (", pairs.front().av, ") ",
                    pairs.front().d_model, " (expected one base model)");
  return pairs;
}

void run_anchor_sweeps(const SweepOptions& o, const std::string& created_by, const std::function<void()>& announce,
                       const std::function<void(const SweepOptions&)>& record_anchor) {
  // Every input of every anchor is checked before the first sweep starts, so that a bad
  // one is one line and no anchor's time is spent.
  nlohmann::json shared = nlohmann::json::array();
  run_on_root(MPI_COMM_WORLD, [&] {
    NLA_CHECK_INPUT(!o.out.empty(), "option 'out': expected a run directory");
    NLA_CHECK_INPUT(!o.store.empty(), "option 'store': expected a held-out activation store");
    NLA_CHECK_INPUT(std::isfinite(o.coverage.min_cosine), "option 'coverage-min-cosine': expected a number, got ",
                    o.coverage.min_cosine);
    coverage_range(o.coverage.layers, {0});  // the syntax; the layers are known after the sweeps
    auto pairs = pair_anchors(split_list(o.av), split_list(o.ar));
    store::ActivationStore probe(o.store);
    for (const auto& pair : pairs) {
      NLA_CHECK_INPUT(probe.has_layer(pair.layer), o.store, ": anchor layer ", pair.layer, " (", pair.ar,
                      ") is not in the store (av_normed needs its median norm)");
      NLA_CHECK_INPUT(probe.hidden_size() == pair.d_model, o.store, ": hidden_size ", probe.hidden_size(), ", anchor ",
                      pair.layer, "'s d_model ", pair.d_model, ": expected equal");
      const std::string dir = anchor_run_directory(o.out, pair.layer);
      NLA_CHECK_INPUT(o.overwrite || !fs::exists(dir + "/results.h5"), dir,
                      "/results.h5: exists already (option 'overwrite' replaces it)");
      shared.push_back({{"layer", pair.layer}, {"av", pair.av}, {"ar", pair.ar}});
    }
    NLA_CHECK_INPUT(o.overwrite || !fs::exists(o.out + "/coverage.json"), o.out,
                    "/coverage.json: exists already (option 'overwrite' replaces it)");
  });
  broadcast_json(shared);
  if (announce) announce();
  std::string layer_list;
  for (const auto& pair : shared) layer_list += (layer_list.empty() ? "" : ", ") + std::to_string(pair["layer"].get<int>());
  log_info("eval: %zu anchors (layers %s), one sweep each into %s/anchor_<L>/", shared.size(), layer_list.c_str(),
           o.out.c_str());
  for (const auto& pair : shared) {
    SweepOptions one = o;
    one.av = pair["av"].get<std::string>();
    one.ar = pair["ar"].get<std::string>();
    one.out = anchor_run_directory(o.out, pair["layer"].get<int>());
    log_info("eval: anchor layer %d: AV %s, AR %s", pair["layer"].get<int>(), one.av.c_str(), one.ar.c_str());
    run_sweep(one, created_by, [&] {
      if (record_anchor) record_anchor(one);
    });
  }
  run_on_root(MPI_COMM_WORLD, [&] {
    std::string statement = write_run_coverage(o.out, o.coverage, created_by);
    log_info("eval: wrote %s/coverage.csv and coverage.json: %s", o.out.c_str(), statement.c_str());
  });
}

std::string write_run_coverage(const std::string& run, const CoverageOptions& options, const std::string& created_by) {
  std::vector<AnchorMeans> runs;
  std::vector<int> evaluated;
  for (const auto& [layer, name] : anchor_subdirectories(run)) {
    runs.push_back(read_anchor_means(run + "/" + name, name, options.metric));
    for (const auto& [evaluated_layer, mean] : runs.back().means) evaluated.push_back(evaluated_layer);
  }
  NLA_CHECK_INPUT(!runs.empty(), run, ": no anchor_<L>/results.h5 (expected a several-anchor run)");
  std::sort(evaluated.begin(), evaluated.end());
  evaluated.erase(std::unique(evaluated.begin(), evaluated.end()), evaluated.end());
  auto range = coverage_range(options.layers, evaluated);
  auto result = compute_coverage(runs, range, options);
  write_coverage(run, runs, result, options, created_by);
  return result.statement;
}

namespace {

// The single-anchor results of `parts` (run directories) merged into `out`: results.h5,
// summary.csv, and what `record` writes. Returns the number of layers merged.
size_t merge_single_anchor(const std::vector<std::string>& parts, const std::string& out, bool overwrite,
                           const std::string& created_by, const std::function<void(const std::string&)>& record) {
  NLA_CHECK_INPUT(overwrite || !fs::exists(out + "/results.h5"), out,
                  "/results.h5: exists already (option 'overwrite' replaces it)");
  std::vector<SweepResults> results;
  for (const auto& part : parts) results.push_back(read_results(part + "/results.h5"));
  auto merged = merge_results(results);
  merged.attributes["created_by"] = created_by;
  fs::create_directories(out);
  record(out);
  write_summary_csv(merged, out + "/summary.csv");
  write_results(merged, out + "/results.h5");
  return merged.layers.size();
}

}  // namespace

void merge_run_directories(const std::vector<std::string>& dirs, const std::string& out, bool overwrite,
                           const std::string& created_by, const std::function<void(const std::string&)>& record) {
  NLA_CHECK_INPUT(!out.empty(), "option 'out': expected a run directory");
  // Parts: a directory with results.h5 (one anchor) or coverage.json (several); any other
  // directory stands for its subdirectories of either kind.
  std::vector<std::string> single, several;
  auto classify = [&](const std::string& dir) {
    if (fs::exists(fs::join(dir, "results.h5"))) single.push_back(dir);
    else if (fs::exists(fs::join(dir, "coverage.json"))) several.push_back(dir);
    else return false;
    return true;
  };
  for (const auto& dir : dirs) {
    if (classify(dir)) continue;
    NLA_CHECK_INPUT(fs::is_directory(dir), dir, ": expected a part run directory (results.h5 or coverage.json) or a "
                                                "directory of them");
    for (const auto& name : fs::list_directory(dir)) {  // sorted by name
      const std::string child = fs::join(dir, name);
      if (fs::is_directory(child)) classify(child);
    }
  }
  NLA_CHECK_INPUT(!single.empty() || !several.empty(), "option 'parts': expected part run directories");
  NLA_CHECK_INPUT(single.empty() || several.empty(), "option 'parts': ", single.front(), " holds one anchor, ",
                  several.front(), " several (expected parts of one sweep)");

  if (!single.empty()) {
    const size_t n_layers = merge_single_anchor(single, out, overwrite, created_by, record);
    log_info("eval-merge: %zu parts, %zu layers -> %s", single.size(), n_layers, out.c_str());
    return;
  }

  // Several anchors: the same anchors and coverage options in every part; each anchor merged
  // as a single-anchor sweep, then the coverage of the merged runs.
  NLA_CHECK_INPUT(overwrite || !fs::exists(out + "/coverage.json"), out,
                  "/coverage.json: exists already (option 'overwrite' replaces it)");
  const auto anchors = anchor_subdirectories(several.front());
  const auto coverage = coverage_options_of(read_json_file(several.front() + "/coverage.json"),
                                            several.front() + "/coverage.json");
  for (const auto& part : several) {
    NLA_CHECK_INPUT(anchor_subdirectories(part) == anchors, "eval-merge: ", part, " and ", several.front(),
                    " hold different anchor_<L> runs (expected parts of one sweep)");
    auto options = coverage_options_of(read_json_file(part + "/coverage.json"), part + "/coverage.json");
    NLA_CHECK_INPUT(options.layers == coverage.layers && options.min_cosine == coverage.min_cosine &&
                        options.metric == coverage.metric && options.exact_limit == coverage.exact_limit,
                    "eval-merge: ", part, "/coverage.json: coverage options differ from ", several.front(),
                    "'s (expected parts of one sweep)");
  }
  fs::create_directories(out);
  record(out);
  size_t n_layers = 0;
  for (const auto& [layer, name] : anchors) {
    std::vector<std::string> anchor_parts;
    for (const auto& part : several) anchor_parts.push_back(part + "/" + name);
    n_layers = merge_single_anchor(anchor_parts, out + "/" + name, overwrite, created_by, record);
  }
  std::string statement = write_run_coverage(out, coverage, created_by);
  log_info("eval-merge: %zu parts, %zu anchors, %zu layers -> %s; %s", several.size(), anchors.size(), n_layers,
           out.c_str(), statement.c_str());
}

}  // namespace nla::eval
