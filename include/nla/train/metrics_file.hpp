// metrics.jsonl of a run directory (train-ar, train-av, grpo): one JSON record per line,
// each with the "step" it belongs to.
#pragma once

#include <cstdint>
#include <string>

namespace nla::train {

// Keeps the records of steps <= `step` (a resumed run redoes the later ones and writes
// them again). A line cut short by a kill is dropped; a missing file stays missing.
// Rewrites the file atomically. Rank 0 only.
void truncate_metrics(const std::string& path, int64_t step);

}  // namespace nla::train
