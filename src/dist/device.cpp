// The `device`, `precision` and `deterministic` options -> this rank's device, dtype and
// algorithm settings (see device.hpp).
#include "nla/dist/device.hpp"

#include <ATen/Context.h>
#include <ATen/detail/CUDAHooksInterface.h>

#include <cstdlib>

#if defined(NLA_WITH_CUDA)
#include <cuda_runtime.h>
#endif

#include "nla/core/error.hpp"
#include "nla/core/world.hpp"               // defines: run_on_root
#include "nla/dist/communicator.hpp"        // defines: local_rank

namespace nla::dist {

namespace {

int visible_gpus() { return at::detail::getCUDAHooks().getNumGPUs(); }

// The GPU's marketing name for provenance ("NVIDIA H200"); "" without the CUDA runtime.
std::string gpu_name(const c10::Device& device) {
#if defined(NLA_WITH_CUDA)
  cudaDeviceProp properties{};
  NLA_CHECK_CUDA(cudaGetDeviceProperties(&properties, device.has_index() ? device.index() : 0));
  return properties.name;
#else
  (void)device;
  return "";
#endif
}

}  // namespace

c10::DeviceType device_kind(const std::string& name) {
  if (name == "cpu") return c10::DeviceType::CPU;
  if (name == "auto") return visible_gpus() > 0 ? c10::DeviceType::CUDA : c10::DeviceType::CPU;
  c10::Device device(c10::DeviceType::CPU);
  try {
    device = c10::Device(name);
  } catch (const std::exception&) {
    NLA_INPUT_ERROR("option 'device': expected auto, cpu, cuda or cuda:N, got '", name, "'");
  }
  NLA_CHECK_INPUT(device.is_cuda(), "option 'device': expected auto, cpu, cuda or cuda:N, got '", name, "'");
  const int count = visible_gpus();
  NLA_CHECK_INPUT(count > 0, "option 'device': ", name, " asked for, but no CUDA device is visible");
  NLA_CHECK_INPUT(!device.has_index() || device.index() < count, "option 'device': ", name, " asked for, but only ",
                  count, " CUDA device", count == 1 ? " is" : "s are", " visible");
  return c10::DeviceType::CUDA;
}

c10::Device resolve_device(const std::string& name) {
  const int local = local_rank();  // first: collective, so every rank calls it whatever the name
  if (device_kind(name) == c10::DeviceType::CPU) return c10::Device(c10::DeviceType::CPU);
  if (name != "cuda" && name != "auto") return c10::Device(name);  // cuda:N
  return c10::Device(c10::DeviceType::CUDA, static_cast<c10::DeviceIndex>(local % visible_gpus()));
}

c10::ScalarType resolve_precision(const std::string& precision, c10::DeviceType device) {
  if (precision == "fp32") return c10::ScalarType::Float;
  if (precision == "bf16") return c10::ScalarType::BFloat16;
  NLA_CHECK_INPUT(precision == "auto", "option 'precision': expected auto, fp32 or bf16, got '", precision, "'");
  return device == c10::DeviceType::CUDA ? c10::ScalarType::BFloat16 : c10::ScalarType::Float;
}

std::string precision_name(c10::ScalarType dtype) {
  if (dtype == c10::ScalarType::Float) return "fp32";
  if (dtype == c10::ScalarType::BFloat16) return "bf16";
  return c10::toString(dtype);
}

Compute resolve_compute(const std::string& device, const std::string& precision) {
  run_on_root(MPI_COMM_WORLD, [&] { resolve_precision(precision, device_kind(device)); });
  Compute compute;
  compute.device = resolve_device(device);
  compute.dtype = resolve_precision(precision, compute.device.type());
  if (compute.device.is_cuda()) compute.device_name = gpu_name(compute.device);
  return compute;
}

void use_deterministic_algorithms(bool on, c10::DeviceType device) {
  // Read when LibTorch creates its cuBLAS handle and workspace (the first matmul on the
  // GPU). overwrite = 0: a value the user chose stays.
  if (on && device == c10::DeviceType::CUDA) setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8", 0);
  at::globalContext().setDeterministicAlgorithms(on, /*warn_only=*/false);
}

}  // namespace nla::dist
