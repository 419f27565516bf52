// Layer lists on the command line (see layer_list.hpp).
#include "nla/model/layer_list.hpp"

#include <algorithm>
#include <sstream>
#include <stdexcept>

#include "nla/core/error.hpp"

namespace nla::model {

std::vector<int> parse_layer_list(const std::string& spec, int64_t num_layers, const std::string& option) {
  std::vector<int> layers;
  auto fail = [&](const std::string& why) {
    NLA_INPUT_ERROR("option '", option, "': ", why, " (got '", spec, "'; the model has layers 0-", num_layers - 1,
                    "; expected e.g. 20, 0-27, 1,5,9-11 or all)");
  };
  if (spec == "all") {
    for (int64_t l = 0; l < num_layers; ++l) layers.push_back(static_cast<int>(l));
    return layers;
  }
  std::stringstream parts(spec);
  std::string part;
  while (std::getline(parts, part, ',')) {
    auto dash = part.find('-');
    try {
      size_t used = 0;
      if (dash == std::string::npos) {
        int layer = std::stoi(part, &used);
        if (used != part.size()) fail("'" + part + "' is not a layer number");
        layers.push_back(layer);
      } else {
        int first = std::stoi(part.substr(0, dash), &used);
        if (used != dash) fail("'" + part + "' is not a range");
        int last = std::stoi(part.substr(dash + 1), &used);
        if (used != part.size() - dash - 1 || last < first) fail("'" + part + "' is not a range");
        for (int layer = first; layer <= last; ++layer) layers.push_back(layer);
      }
    } catch (const std::logic_error&) {
      fail("'" + part + "' is not a layer number");
    }
  }
  if (layers.empty()) fail("no layers");
  std::sort(layers.begin(), layers.end());
  layers.erase(std::unique(layers.begin(), layers.end()), layers.end());
  if (layers.front() < 0 || layers.back() >= num_layers)
    fail("layer " + std::to_string(layers.front() < 0 ? layers.front() : layers.back()) + " is outside the model");
  return layers;
}

}  // namespace nla::model
