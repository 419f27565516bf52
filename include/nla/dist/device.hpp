// The device and precision policy of every command that runs a model (one policy, the same
// options and help text everywhere):
//
//   --device     auto    the local rank's GPU when one is visible, else cpu (the default)
//                cpu     the CPU
//                cuda    one GPU per rank of a node: GPU local_rank() % visible GPUs. The
//                        node-local rank, not the world rank: with 4 GPUs per node, world
//                        rank 5 is local rank 1 on the second node, and world_rank % 4 would
//                        only be right by luck of the rank layout.
//                cuda:N  GPU N of every rank (the caller pins it, e.g. one rank per node)
//   --precision  auto    bf16 on a GPU, fp32 on the CPU (the default)
//                fp32 | bf16
//     Inference commands load and compute the model in this dtype; trainers compute in it
//     while their master weights and optimizer state stay fp32 (dist/fsdp.hpp). Stored
//     activations and reconstructions are fp32 whatever the precision.
//   --deterministic (trainers) deterministic algorithms only, for bit-identical reruns.
//
// A bad value, or cuda without a visible GPU: InputError naming the option (exit 2).
#pragma once

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <string>

namespace nla::dist {

// The help text of the options, the same in every command.
inline constexpr const char* kDeviceHelp =
    "auto (the local rank's GPU when one is visible, else cpu) | cpu | cuda (the local rank's GPU) | cuda:N";
inline constexpr const char* kPrecisionHelp =
    "auto (bf16 on a GPU, fp32 on the CPU) | fp32 | bf16: the dtype the model computes in";
inline constexpr const char* kDeterministicHelp =
    "deterministic algorithms only (on a GPU also CUBLAS_WORKSPACE_CONFIG=:4096:8 unless set): "
    "bit-identical reruns and resumes, somewhat slower";

// Validates `name` and says whether it means the CPU or a GPU, without choosing a GPU and
// without any collective, so one rank may call it alone (input checks on rank 0).
// InputError naming option 'device' for an unknown name or cuda without a visible GPU.
c10::DeviceType device_kind(const std::string& name);

// This rank's device for `name`. Collective over MPI_COMM_WORLD (local_rank() on its first
// call in the process): every rank calls it, whatever the name, so a CPU run exercises the
// same call pattern as a GPU run.
c10::Device resolve_device(const std::string& name);

// The dtype `precision` means on `device`; InputError naming option 'precision' for a
// value other than auto, fp32 or bf16. No collective.
c10::ScalarType resolve_precision(const std::string& precision, c10::DeviceType device);

// "fp32" | "bf16" (what provenance records), else the dtype's LibTorch name.
std::string precision_name(c10::ScalarType dtype);

// Both options, resolved for this rank.
struct Compute {
  c10::Device device = c10::Device(c10::DeviceType::CPU);
  c10::ScalarType dtype = c10::ScalarType::Float;
  std::string device_name;  // the GPU's name ("" on the CPU, or in a build without the CUDA runtime)

  std::string device_label() const { return device.str(); }  // "cpu" | "cuda:0"
  std::string precision_label() const { return precision_name(dtype); }
};

// The options of a command that runs a model: checked on rank 0 first (a bad value is one
// line and exit 2 on every rank), then this rank's device and dtype. Collective over
// MPI_COMM_WORLD; cheap, so commands call it first and the library code again.
Compute resolve_compute(const std::string& device, const std::string& precision);

// --deterministic: LibTorch uses deterministic algorithms only (an op without one throws)
// when `on`, and on a GPU CUBLAS_WORKSPACE_CONFIG=:4096:8 is set unless the user set it
// (cuBLAS is reproducible only with a fixed workspace). Call before the first cuBLAS call
// (before any model is built). `on` false turns the global setting off again.
void use_deterministic_algorithms(bool on, c10::DeviceType device);

}  // namespace nla::dist
