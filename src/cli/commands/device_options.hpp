// The device options every command that runs a model shares (one policy: nla/dist/device.hpp)
// and the record of what they resolved to, for provenance.
#pragma once

#include <optional>
#include <string>

#include "nla/cli/command.hpp"
#include "nla/cli/options.hpp"
#include "nla/dist/device.hpp"

namespace nla::cli {

// --device and --precision in `section`, with the same help everywhere; `applies_to`
// prefixes it where only part of a command runs a model ("av: ").
inline void declare_device_options(OptionSet& options, const std::string& section, std::string& device,
                                   std::string& precision, const std::string& applies_to = "") {
  options.add(section, "device", &device, applies_to + dist::kDeviceHelp);
  options.add(section, "precision", &precision, applies_to + dist::kPrecisionHelp);
}

// `context` with the resolved device and precision (rank 0's), which its provenance and
// announce() then record; `deterministic` for the trainers.
inline RunContext with_compute(const RunContext& context, const dist::Compute& compute,
                               std::optional<bool> deterministic = std::nullopt) {
  RunContext recorded = context;
  recorded.compute = ComputeRecord{compute.device_label(), compute.device_name, compute.precision_label(), deterministic};
  return recorded;
}

}  // namespace nla::cli
