// Device maps, as accelerate's utils/modeling.py (v0.30, the release transformers 4.40 uses) and transformers'
// from_pretrained(device_map=...). Devices: "cpu", "disk" (weights stay memory-mapped and are paged in per layer at
// forward time), "meta" (not loaded), and accelerator devices "cuda:N" (also written "N", as accelerate's ints): the
// planner handles them (balanced strategies split over them) though this CPU build cannot place weights there.
#pragma once

#include "transformers/modeling_utils.h"

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace transformers {

// Ordered module prefix -> device ("" = the whole model).
using DeviceMap = std::vector<std::pair<std::string, std::string>>;
// Ordered device -> bytes (accelerators first, then "cpu", then "disk"), as get_max_memory returns.
using MaxMemory = std::vector<std::pair<std::string, int64_t>>;

// get_max_memory: sizes parsed ("10GiB", "200MB", bytes), devices ordered; empty: {"cpu": available RAM}.
// ValueError for an unknown device name.
MaxMemory get_max_memory(const std::map<std::string, std::string>& max_memory = {});
// "0" -> "cuda:0"; "cpu", "disk", "meta" unchanged; ValueError otherwise.
std::string normalize_device(const std::string& device);

// compute_module_sizes: bytes of every module prefix and tensor name ("" = total); tied tensors counted once.
// `dtype` (if set) caps floating tensors at its size, as loading in that dtype would.
std::map<std::string, int64_t> compute_module_sizes(const torch::nn::Module& model,
                                                    std::optional<c10::ScalarType> dtype = std::nullopt);
// get_balanced_memory: caps each accelerator but the last at an even share of the model (plus a buffer of the
// largest no-split block / mean leaf size); low_zero ("balanced_low_0") keeps the first accelerator as empty as
// possible. Without accelerators, returns max_memory unchanged.
MaxMemory get_balanced_memory(const torch::nn::Module& model, const MaxMemory& max_memory,
                              const std::vector<std::string>& no_split_module_classes,
                              std::optional<c10::ScalarType> dtype = std::nullopt, bool low_zero = false);
// infer_auto_device_map: fills devices in order (accelerators, cpu, disk), never splitting a module whose class is
// in no_split_module_classes, keeping room on the main devices for the largest layer, and keeping tied weights
// together. clean_result merges children that all went to the same device.
DeviceMap infer_auto_device_map(const torch::nn::Module& model, const MaxMemory& max_memory,
                                const std::vector<std::string>& no_split_module_classes,
                                std::optional<c10::ScalarType> dtype = std::nullopt, bool clean_result = true);
DeviceMap clean_device_map(DeviceMap device_map, const std::string& module_name = "");
// The device of one parameter / module name under `device_map` (longest matching prefix); ValueError if none.
std::string device_for(const DeviceMap& device_map, const std::string& name);

// from_pretrained's device_map step: resolves "auto" / "balanced" / "balanced_low_0" / "sequential" (with
// options.max_memory) or takes an explicit map, checks that every tensor has a device, places the modules, sets
// model.hf_device_map. Disk weights stay memory-mapped from their checkpoint file when it holds them in the
// model's dtype; the rest are written to options.offload_folder in accelerate's layout (index.json + <name>.dat)
// and mapped from there.
void dispatch_model(PreTrainedModel& model, const json& device_map, const FromPretrainedOptions& options);

// Resident memory of this process (/proc/self/status), bytes: VmRSS, and VmHWM (peak since start or since
// reset_peak_rss()).
int64_t current_rss_bytes();
int64_t peak_rss_bytes();
void reset_peak_rss();

}  // namespace transformers
