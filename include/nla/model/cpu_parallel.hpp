// How many threads at::parallel_for runs on in nla's own code. It is a header template of
// ATen: in a translation unit built without OpenMP it is a plain loop, whatever
// at::set_num_threads says, and nla's CPU kernels (head_argmax, decode_attention, the
// sampler) quietly lose their threads. nla_model is built with the OpenMP runtime LibTorch
// uses (nla_openmp in cmake/nla_dependencies.cmake); this says whether that took.
#pragma once

#include <cstdint>

namespace nla::model {

// The number of distinct threads that ran the chunks of an at::parallel_for over `items`
// items in nla_model: min(items, at::get_num_threads()) when built with OpenMP, else 1.
int64_t parallel_for_threads(int64_t items);

}  // namespace nla::model
