// The device a rank computes on, from the `device` option of every command that runs a model:
//   cpu     the CPU
//   cuda    one GPU per rank of a node: GPU local_rank() % visible GPUs. The node-local rank,
//           not the world rank: with 4 GPUs per node, world rank 5 is local rank 1 on the
//           second node, and world_rank % 4 would only be right by luck of the rank layout.
//   cuda:N  GPU N of every rank (the caller pins it, e.g. one rank per node)
//   auto    cuda when a GPU is visible, else cpu
#pragma once

#include <c10/core/Device.h>

#include <string>

namespace nla::dist {

// Validates `name` and says whether it means the CPU or a GPU, without choosing a GPU and
// without any collective, so one rank may call it alone (input checks on rank 0).
// InputError naming option 'device' for an unknown name or cuda without a visible GPU.
c10::DeviceType device_kind(const std::string& name);

// This rank's device for `name`. Collective over MPI_COMM_WORLD (local_rank() on its first
// call in the process): every rank calls it, whatever the name, so a CPU run exercises the
// same call pattern as a GPU run.
c10::Device resolve_device(const std::string& name);

}  // namespace nla::dist
