// The `device` option -> this rank's device (see device.hpp).
#include "nla/dist/device.hpp"

#include <ATen/detail/CUDAHooksInterface.h>

#include "nla/core/error.hpp"
#include "nla/dist/communicator.hpp"  // defines: local_rank

namespace nla::dist {

namespace {

int visible_gpus() { return at::detail::getCUDAHooks().getNumGPUs(); }

}  // namespace

c10::DeviceType device_kind(const std::string& name) {
  if (name == "cpu") return c10::DeviceType::CPU;
  if (name == "auto") return visible_gpus() > 0 ? c10::DeviceType::CUDA : c10::DeviceType::CPU;
  c10::Device device(c10::DeviceType::CPU);
  try {
    device = c10::Device(name);
  } catch (const std::exception&) {
    NLA_INPUT_ERROR("option 'device': expected cpu, cuda, cuda:N or auto, got '", name, "'");
  }
  NLA_CHECK_INPUT(device.is_cuda(), "option 'device': expected cpu, cuda, cuda:N or auto, got '", name, "'");
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

}  // namespace nla::dist
