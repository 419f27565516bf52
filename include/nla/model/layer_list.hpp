// Layer lists on the command line (extract --layers, eval --layers / --pca-layers).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace nla::model {

// "20" | "0-27" | "all" | "1,5,9-11" -> sorted unique layers, each < num_layers;
// InputError naming `option` otherwise.
std::vector<int> parse_layer_list(const std::string& spec, int64_t num_layers, const std::string& option);

}  // namespace nla::model
