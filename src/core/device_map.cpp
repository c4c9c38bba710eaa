// Port of accelerate/utils/modeling.py v0.30 (get_max_memory, compute_module_sizes, get_max_layer_size,
// get_balanced_memory, infer_auto_device_map, clean_device_map), transformers' _get_no_split_modules and the
// device_map step of from_pretrained, plus disk offload: memory-mapped weights paged in/out around the shared
// layers' forward (nn::offload hooks).
#include "pch.h"

#include "transformers/device_map.h"

#include "transformers/errors.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <unordered_map>

namespace fs = std::filesystem;

namespace transformers {

namespace {

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

// Python's module.__class__.__name__: "transformers::nn::ModuleList<transformers::X>" -> "ModuleList".
std::string class_name_of(const torch::nn::Module& module) {
  std::string name = module.name();
  auto lt = name.find('<');
  if (lt != std::string::npos) name = name.substr(0, lt);
  auto colon = name.rfind("::");
  return colon == std::string::npos ? name : name.substr(colon + 2);
}

bool is_accelerator(const std::string& device) { return starts_with(device, "cuda:"); }

int64_t accelerator_index(const std::string& device) { return std::stoll(device.substr(5)); }

// One entry of modules_to_treat: a module, or a direct parameter/buffer (module == nullptr).
struct Item {
  std::string name;
  const torch::nn::Module* module;
};

// compute_module_sizes in insertion order (named_module_tensors: parameters then buffers, duplicates dropped).
std::vector<std::pair<std::string, int64_t>> module_sizes_ordered(const torch::nn::Module& model,
                                                                  std::optional<c10::ScalarType> dtype) {
  std::vector<std::pair<std::string, int64_t>> order;
  std::unordered_map<std::string, size_t> index;
  std::set<const void*> seen;
  auto add = [&](const std::string& name, const at::Tensor& t) {
    if (!t.defined() || !seen.insert(t.unsafeGetTensorImpl()).second) return;
    int64_t elem = static_cast<int64_t>(t.element_size());
    if (dtype && at::isFloatingType(t.scalar_type()))
      elem = std::min<int64_t>(elem, static_cast<int64_t>(c10::elementSize(*dtype)));
    const int64_t size = t.numel() * elem;
    std::string prefix;
    std::vector<std::string> parts;
    std::stringstream ss(name);
    for (std::string part; std::getline(ss, part, '.');) parts.push_back(part);
    for (size_t i = 0; i <= parts.size(); ++i) {
      if (i > 0) prefix += (i > 1 ? "." : "") + parts[i - 1];
      auto it = index.find(prefix);
      if (it == index.end()) {
        index[prefix] = order.size();
        order.emplace_back(prefix, size);
      } else {
        order[it->second].second += size;
      }
    }
  };
  for (const auto& p : model.named_parameters(true)) add(p.key(), p.value());
  for (const auto& b : model.named_buffers(true)) add(b.key(), b.value());
  return order;
}

int64_t size_of(const std::map<std::string, int64_t>& sizes, const std::string& name) {
  auto it = sizes.find(name);
  return it == sizes.end() ? 0 : it->second;
}

std::vector<Item> children_of(const Item& item) {
  std::vector<Item> out;
  for (const auto& child : item.module->named_children())
    out.push_back({item.name.empty() ? child.key() : item.name + "." + child.key(), child.value().get()});
  return out;
}

std::vector<Item> direct_parameters(const Item& item) {
  std::vector<Item> out;
  for (const auto& p : item.module->named_parameters(false))
    out.push_back({item.name.empty() ? p.key() : item.name + "." + p.key(), nullptr});
  return out;
}

bool in_list(const std::vector<std::string>& list, const std::string& value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

// get_max_layer_size: the largest leaf module or no-split module among `modules`, and the names realising it.
std::pair<int64_t, std::vector<std::string>> get_max_layer_size(std::vector<Item> modules,
                                                                const std::map<std::string, int64_t>& sizes,
                                                                const std::vector<std::string>& no_split) {
  int64_t max_size = 0;
  std::vector<std::string> names;
  while (!modules.empty()) {
    Item item = modules.front();
    modules.erase(modules.begin());
    std::vector<Item> children = item.module ? children_of(item) : std::vector<Item>{};
    if (children.empty() || (item.module && in_list(no_split, class_name_of(*item.module)))) {
      const int64_t size = size_of(sizes, item.name);
      if (size > max_size) {
        max_size = size;
        names = {item.name};
      } else if (size == max_size) {
        names.push_back(item.name);
      }
    } else {
      children.insert(children.end(), modules.begin(), modules.end());
      modules = std::move(children);
    }
  }
  return {max_size, names};
}

std::vector<Item> only_modules(const std::vector<Item>& items) {
  std::vector<Item> out;
  for (const auto& item : items)
    if (item.module) out.push_back(item);
  return out;
}

// find_tied_parameters: groups (sorted names) of parameters that are one tensor.
std::vector<std::vector<std::string>> find_tied_parameters(const torch::nn::Module& model) {
  std::map<const void*, std::vector<std::string>> groups;
  for (const auto& p : model.named_parameters(true)) groups[p.value().unsafeGetTensorImpl()].push_back(p.key());
  std::vector<std::vector<std::string>> out;
  for (auto& [id, names] : groups)
    if (names.size() > 1) {
      std::sort(names.begin(), names.end());
      out.push_back(names);
    }
  return out;
}

int64_t meminfo_available() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  int64_t value = 0;
  std::string unit;
  while (in >> key >> value >> unit)
    if (key == "MemAvailable:") return value * 1024;
  return 0;
}

int64_t status_field(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (starts_with(line, field + ":")) return std::stoll(line.substr(field.size() + 1)) * 1024;
  return 0;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// Planning

std::string normalize_device(const std::string& device) {
  if (device == "cpu" || device == "disk" || device == "meta") return device;
  std::string index = starts_with(device, "cuda:") ? device.substr(5) : device;
  if (!index.empty() && std::all_of(index.begin(), index.end(), [](char c) { return std::isdigit(c); }))
    return "cuda:" + std::to_string(std::stoll(index));
  throw ValueError("Device " + device +
                   " is not recognized, available devices are integers (for GPUs, or \"cuda:N\"), 'cpu', 'disk' "
                   "and 'meta'");
}

MaxMemory get_max_memory(const std::map<std::string, std::string>& max_memory) {
  if (max_memory.empty()) return {{"cpu", meminfo_available()}};
  std::vector<std::pair<int64_t, std::pair<std::string, int64_t>>> gpus;
  std::optional<int64_t> cpu, disk;
  for (const auto& [key, value] : max_memory) {
    if (key == "meta")
      throw ValueError("Device meta is not recognized in max_memory, available devices are integers (for GPUs), "
                       "'cpu' and 'disk'");
    const std::string device = normalize_device(key);
    const int64_t bytes = convert_file_size_to_int(value);
    if (device == "cpu") cpu = bytes;
    else if (device == "disk") disk = bytes;
    else gpus.push_back({accelerator_index(device), {device, bytes}});
  }
  std::sort(gpus.begin(), gpus.end());
  MaxMemory out;
  for (const auto& g : gpus) out.push_back(g.second);
  if (cpu) out.emplace_back("cpu", *cpu);
  if (disk) out.emplace_back("disk", *disk);
  return out;
}

std::map<std::string, int64_t> compute_module_sizes(const torch::nn::Module& model,
                                                    std::optional<c10::ScalarType> dtype) {
  auto ordered = module_sizes_ordered(model, dtype);
  return {ordered.begin(), ordered.end()};
}

MaxMemory get_balanced_memory(const torch::nn::Module& model, const MaxMemory& input,
                              const std::vector<std::string>& no_split, std::optional<c10::ScalarType> dtype,
                              bool low_zero) {
  MaxMemory max_memory = input;
  auto mem = [&](const std::string& device) -> int64_t& {
    for (auto& [d, v] : max_memory)
      if (d == device) return v;
    throw ValueError("max_memory has no entry for " + device);
  };
  std::vector<std::string> gpus;
  for (const auto& [d, v] : max_memory)
    if (is_accelerator(d) && v > 0) gpus.push_back(d);
  const int64_t num_devices = static_cast<int64_t>(gpus.size());
  if (num_devices == 0) return max_memory;
  if (num_devices == 1) low_zero = false;

  auto ordered = module_sizes_ordered(model, dtype);
  std::map<std::string, int64_t> sizes(ordered.begin(), ordered.end());
  const int64_t total = size_of(sizes, "");
  int64_t per_gpu = total / (low_zero ? num_devices - 1 : num_devices);

  // The size of the first module of each no-split class (a block may not be split over devices).
  int64_t buffer = 0;
  if (!no_split.empty()) {
    std::map<std::string, int64_t> no_split_children;
    std::map<std::string, const torch::nn::Module*> modules;
    for (const auto& item : model.named_modules("", false)) modules[item.key()] = item.value().get();
    for (const auto& [name, size] : ordered) {
      if (name.empty()) continue;
      auto it = modules.find(name);
      if (it == modules.end()) continue;  // a tensor
      const std::string cls = class_name_of(*it->second);
      if (in_list(no_split, cls) && !no_split_children.count(cls)) no_split_children[cls] = size;
      if (no_split_children.size() == std::set<std::string>(no_split.begin(), no_split.end()).size()) break;
    }
    for (const auto& [cls, size] : no_split_children) buffer = std::max(buffer, size);
  }
  // Mean size of the final modules: drop the leaves (tensors) once, then the leaves are the last modules.
  auto leaves_of = [](const std::vector<std::pair<std::string, int64_t>>& list) {
    std::set<std::string> leaves;
    for (const auto& entry : list) {
      const std::string& n = entry.first;
      if (n.empty()) continue;
      bool has_child = std::any_of(list.begin(), list.end(), [&](const auto& p) { return starts_with(p.first, n + "."); });
      if (!has_child) leaves.insert(n);
    }
    return leaves;
  };
  std::set<std::string> tensor_leaves = leaves_of(ordered);
  std::vector<std::pair<std::string, int64_t>> modules_only;
  for (const auto& entry : ordered)
    if (!tensor_leaves.count(entry.first)) modules_only.push_back(entry);
  std::set<std::string> leaves = leaves_of(modules_only);
  int64_t leaves_total = 0;
  for (const auto& [n, s] : modules_only)
    if (leaves.count(n)) leaves_total += s;
  const int64_t mean_leaves = static_cast<int64_t>(static_cast<double>(leaves_total) / std::max<size_t>(leaves.size(), 1));
  buffer = static_cast<int64_t>(1.25 * static_cast<double>(std::max(buffer, mean_leaves)));
  per_gpu += buffer;

  std::vector<std::string> sorted_gpus = gpus;
  std::sort(sorted_gpus.begin(), sorted_gpus.end(),
            [](const std::string& a, const std::string& b) { return accelerator_index(a) < accelerator_index(b); });
  // The last device keeps its max_memory in case the buffer is not enough.
  for (size_t i = 0; i + 1 < sorted_gpus.size(); ++i) {
    const std::string& d = sorted_gpus[i];
    const bool first = accelerator_index(d) == 0;
    mem(d) = std::min(low_zero && first ? mem("cuda:0") : per_gpu, mem(d));
  }
  if (low_zero) {
    int64_t others = 0;
    for (int64_t i = 1; i < num_devices; ++i) others += mem("cuda:" + std::to_string(i));
    const int64_t min_zero = std::max<int64_t>(0, total - others);
    mem("cuda:0") = std::min(min_zero, mem("cuda:0"));
  }
  return max_memory;
}

DeviceMap clean_device_map(DeviceMap device_map, const std::string& module_name) {
  const std::string prefix = module_name.empty() ? "" : module_name + ".";
  std::vector<std::string> values;
  for (const auto& [k, v] : device_map)
    if (starts_with(k, prefix)) values.push_back(v);
  if (values.size() > 1 && std::set<std::string>(values.begin(), values.end()).size() == 1) {
    // Regroup under module_name, at the place of its first child (accelerate appends at the end; the order of its
    // result depends on Python's set order anyway).
    DeviceMap merged;
    bool placed = false;
    for (const auto& [k, v] : device_map) {
      if (!starts_with(k, prefix)) merged.emplace_back(k, v);
      else if (!placed) {
        merged.emplace_back(module_name, values[0]);
        placed = true;
      }
    }
    device_map = std::move(merged);
  }
  std::vector<std::string> children;
  const size_t depth = module_name.empty() ? 1 : std::count(module_name.begin(), module_name.end(), '.') + 2;
  for (const auto& [k, v] : device_map) {
    if (!starts_with(k, prefix) || k.size() <= module_name.size()) continue;
    std::string child;
    size_t pos = 0;
    for (size_t part = 0; part < depth; ++part) {
      size_t dot = k.find('.', pos);
      if (dot == std::string::npos) {
        pos = k.size();
        break;
      }
      pos = dot + 1;
    }
    child = k.substr(0, pos == k.size() ? k.size() : pos - 1);
    if (!in_list(children, child)) children.push_back(child);
  }
  for (const auto& child : children) device_map = clean_device_map(std::move(device_map), child);
  return device_map;
}

DeviceMap infer_auto_device_map(const torch::nn::Module& model, const MaxMemory& max_memory,
                                const std::vector<std::string>& no_split, std::optional<c10::ScalarType> dtype,
                                bool clean_result) {
  std::vector<std::string> devices;
  for (const auto& [d, v] : max_memory) devices.push_back(d);
  if (!in_list(devices, "disk")) devices.push_back("disk");
  std::vector<std::string> gpus;
  for (const auto& d : devices)
    if (d != "cpu" && d != "disk") gpus.push_back(d);
  const std::vector<std::string> main_devices =
      gpus.empty() ? std::vector<std::string>{"cpu"} : std::vector<std::string>{gpus[0], "cpu"};
  auto limit = [&](const std::string& device) -> std::optional<int64_t> {
    if (device == "disk") return std::nullopt;
    for (const auto& [d, v] : max_memory)
      if (d == device) return v;
    return std::nullopt;
  };

  const std::map<std::string, int64_t> sizes = compute_module_sizes(model, dtype);
  const auto tied_parameters = find_tied_parameters(model);

  DeviceMap device_map;
  size_t current_device = 0;
  int64_t current_memory_used = 0;

  // Direct parameters, children, direct buffers.
  std::vector<Item> modules_to_treat;
  const Item root{"", &model};
  for (const auto& p : model.named_parameters(false)) modules_to_treat.push_back({p.key(), nullptr});
  for (const auto& c : children_of(root)) modules_to_treat.push_back(c);
  for (const auto& b : model.named_buffers(false)) modules_to_treat.push_back({b.key(), nullptr});
  auto [max_layer_size, max_layer_names] = get_max_layer_size(only_modules(modules_to_treat), sizes, no_split);

  auto index_of = [&](const std::string& name, bool substring) -> std::optional<size_t> {
    for (size_t i = 0; i < modules_to_treat.size(); ++i)
      if (substring ? name.find(modules_to_treat[i].name) != std::string::npos : modules_to_treat[i].name == name)
        return i;
    return std::nullopt;
  };

  while (!modules_to_treat.empty()) {
    Item item = modules_to_treat.front();
    modules_to_treat.erase(modules_to_treat.begin());
    const std::string& name = item.name;
    max_layer_names.erase(std::remove_if(max_layer_names.begin(), max_layer_names.end(),
                                         [&](const std::string& n) { return n == name || starts_with(n, name + "."); }),
                          max_layer_names.end());
    if (max_layer_names.empty())
      std::tie(max_layer_size, max_layer_names) = get_max_layer_size(only_modules(modules_to_treat), sizes, no_split);
    const int64_t module_size = size_of(sizes, name);

    // Tied groups with a member inside this module and one outside; the outside members.
    std::vector<std::string> tied_params;
    for (const auto& group : tied_parameters) {
      bool any_in = false, all_in = true;
      for (const auto& k : group) {
        const bool inside = (k + ".").find(name + ".") != std::string::npos;
        any_in |= inside;
        all_in &= inside;
      }
      if (!any_in || all_in) continue;
      for (const auto& k : group)
        if ((k + ".").find(name + ".") == std::string::npos) tied_params.push_back(k);
    }

    const std::string device = devices[current_device];
    std::optional<int64_t> current_max_size = limit(device);
    int64_t current_memory_reserved = 0;
    if (in_list(main_devices, device)) {
      if (current_max_size) *current_max_size -= max_layer_size;
      current_memory_reserved = max_layer_size;
    }
    (void)current_memory_reserved;

    if (current_max_size && current_memory_used + module_size > *current_max_size) {
      // Too big: split, or go to the next device.
      std::vector<Item> children = item.module ? children_of(item) : std::vector<Item>{};
      if (children.empty() || in_list(no_split, class_name_of(*item.module))) {
        ++current_device;
        modules_to_treat.insert(modules_to_treat.begin(), item);
        current_memory_used = 0;
      } else {
        std::vector<Item> parts = direct_parameters(item);
        parts.insert(parts.end(), children.begin(), children.end());
        modules_to_treat.insert(modules_to_treat.begin(), parts.begin(), parts.end());
        std::tie(max_layer_size, max_layer_names) = get_max_layer_size(only_modules(modules_to_treat), sizes, no_split);
      }
    } else if (!tied_params.empty()) {
      std::vector<std::string> tied_module_names;
      std::vector<Item> tied_modules;
      for (const auto& tied_param : tied_params) {
        auto index = index_of(tied_param, true);
        if (!index) continue;
        tied_module_names.push_back(modules_to_treat[*index].name);
        tied_modules.push_back(modules_to_treat[*index]);
      }
      int64_t module_size_with_ties = module_size;
      for (size_t i = 0; i < tied_module_names.size(); ++i)
        module_size_with_ties += size_of(sizes, tied_module_names[i]) - size_of(sizes, tied_params[i]);
      if (!current_max_size || current_memory_used + module_size_with_ties <= *current_max_size) {
        current_memory_used += module_size_with_ties;
        device_map.emplace_back(name, device);
        for (const auto& tied_name : tied_module_names) {
          if (auto index = index_of(tied_name, false)) modules_to_treat.erase(modules_to_treat.begin() + *index);
          device_map.emplace_back(tied_name, device);
        }
      } else {
        bool split_happened = false;
        for (size_t i = 0; i < tied_modules.size(); ++i) {
          const Item& tied = tied_modules[i];
          std::vector<Item> tied_children = tied.module ? children_of(tied) : std::vector<Item>{};
          if (tied_children.empty() || in_list(no_split, class_name_of(*tied.module))) continue;
          std::vector<Item> parts = direct_parameters(tied);
          parts.insert(parts.end(), tied_children.begin(), tied_children.end());
          size_t tied_index = *index_of(tied_module_names[i], false);
          std::vector<Item> rebuilt{item};
          rebuilt.insert(rebuilt.end(), modules_to_treat.begin(), modules_to_treat.begin() + tied_index);
          rebuilt.insert(rebuilt.end(), parts.begin(), parts.end());
          rebuilt.insert(rebuilt.end(), modules_to_treat.begin() + tied_index + 1, modules_to_treat.end());
          modules_to_treat = std::move(rebuilt);
          std::tie(max_layer_size, max_layer_names) =
              get_max_layer_size(only_modules(modules_to_treat), sizes, no_split);
          split_happened = true;
          break;
        }
        if (!split_happened) {
          ++current_device;
          modules_to_treat.insert(modules_to_treat.begin(), item);
          current_memory_used = 0;
        }
      }
    } else {
      current_memory_used += module_size;
      device_map.emplace_back(name, device);
    }
  }
  return clean_result ? clean_device_map(std::move(device_map)) : device_map;
}

std::string device_for(const DeviceMap& device_map, const std::string& name) {
  const std::string* best = nullptr;
  size_t best_len = 0;
  for (const auto& [prefix, device] : device_map) {
    const bool match = prefix.empty() || name == prefix || starts_with(name, prefix + ".");
    if (match && (!best || prefix.size() >= best_len)) {
      best = &device;
      best_len = prefix.size();
    }
  }
  if (!best) throw ValueError("The device_map provided does not give any device for " + name);
  return *best;
}

// ---------------------------------------------------------------------------------------------------------------
// PreTrainedModel::_get_no_split_modules

std::vector<std::string> PreTrainedModel::_get_no_split_modules(const std::string& device_map) const {
  std::set<std::string> no_split;
  std::vector<const torch::nn::Module*> to_check{this};
  while (!to_check.empty()) {
    const torch::nn::Module* module = to_check.back();
    to_check.pop_back();
    if (no_split.count(class_name_of(*module))) continue;
    if (auto* pretrained = dynamic_cast<const PreTrainedModel*>(module)) {
      if (!pretrained->_no_split_modules)
        throw ValueError(pretrained->class_name + " does not support `device_map='" + device_map +
                         "'`. To implement support, the model class needs to implement the `_no_split_modules` "
                         "attribute.");
      no_split.insert(pretrained->_no_split_modules->begin(), pretrained->_no_split_modules->end());
    }
    for (const auto& child : module->children()) to_check.push_back(child.get());
  }
  return {no_split.begin(), no_split.end()};
}

// ---------------------------------------------------------------------------------------------------------------
// Disk offload: hooks

namespace {

struct Range {
  uintptr_t begin, end;  // page aligned
};

struct Block {
  std::vector<Range> ranges;
};

struct Leaf {
  Block* block;
  std::vector<Range> own;
};

struct Registry {
  std::mutex mutex;
  std::unordered_map<const nn::Module*, Leaf> leaves;
  Block* current = nullptr;
};

Registry& registry() {
  static Registry r;
  return r;
}

void advise(const std::vector<Range>& ranges, int advice) {
  for (const auto& r : ranges)
    if (r.end > r.begin) ::madvise(reinterpret_cast<void*>(r.begin), r.end - r.begin, advice);
}

Range range_of(const at::Tensor& t) {
  static const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<uintptr_t>(t.data_ptr());
  const uintptr_t end = begin + static_cast<uintptr_t>(t.numel()) * t.element_size();
  return {begin / page * page, (end + page - 1) / page * page};
}

// The offloaded blocks of one model; unregisters its hooks when the model goes.
struct OffloadState {
  std::vector<std::unique_ptr<Block>> blocks;
  std::vector<const nn::Module*> leaves;
  ~OffloadState() {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    for (const auto* leaf : leaves) r.leaves.erase(leaf);
    for (const auto& block : blocks)
      if (r.current == block.get()) r.current = nullptr;
    nn::offload::active_models.fetch_sub(1);
  }
};

// File-backed mappings of this process (/proc/self/maps), to tell mmapped checkpoint tensors from copies.
std::vector<std::pair<uintptr_t, uintptr_t>> file_mappings() {
  std::vector<std::pair<uintptr_t, uintptr_t>> out;
  std::ifstream in("/proc/self/maps");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string range, perms, offset, dev, inode, path;
    fields >> range >> perms >> offset >> dev >> inode >> path;
    if (path.empty() || path[0] != '/' || inode == "0") continue;
    auto dash = range.find('-');
    out.emplace_back(std::stoull(range.substr(0, dash), nullptr, 16), std::stoull(range.substr(dash + 1), nullptr, 16));
  }
  return out;
}

bool file_backed(const at::Tensor& t, const std::vector<std::pair<uintptr_t, uintptr_t>>& maps) {
  if (t.numel() == 0) return true;
  const auto begin = reinterpret_cast<uintptr_t>(t.data_ptr());
  const uintptr_t end = begin + static_cast<uintptr_t>(t.numel()) * t.element_size();
  return std::any_of(maps.begin(), maps.end(), [&](const auto& m) { return m.first <= begin && end <= m.second; });
}

// accelerate's offload_weight dtype names (numpy's, bfloat16 stored as int16).
std::string numpy_dtype(c10::ScalarType type) {
  switch (type) {
    case at::kFloat: return "float32";
    case at::kDouble: return "float64";
    case at::kHalf: return "float16";
    case at::kBFloat16: return "bfloat16";
    case at::kLong: return "int64";
    case at::kInt: return "int32";
    case at::kShort: return "int16";
    case at::kChar: return "int8";
    case at::kByte: return "uint8";
    case at::kBool: return "bool";
    default: throw ValueError(std::string("cannot offload a tensor of dtype ") + c10::toString(type));
  }
}

struct MappedFile {
  void* base = nullptr;
  size_t size = 0;
  ~MappedFile() {
    if (base) ::munmap(base, size);
  }
};

// Writes `t` as <folder>/<name>.dat (accelerate's offload_weight) and returns a tensor mapped from that file.
at::Tensor offload_weight(const at::Tensor& t, const std::string& name, const std::string& folder, json& index) {
  const std::string path = (fs::path(folder) / (name + ".dat")).string();
  at::Tensor data = t.detach().contiguous();
  const size_t bytes = static_cast<size_t>(data.numel()) * data.element_size();
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(static_cast<const char*>(data.data_ptr()), static_cast<std::streamsize>(bytes));
    if (!out) throw CheckpointError("cannot write offloaded weight " + path);
  }
  index[name] = {{"dtype", numpy_dtype(data.scalar_type())}, {"shape", data.sizes().vec()}};
  if (bytes == 0) return data;
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw CheckpointError("cannot open " + path + ": " + std::strerror(errno));
  auto mapped = std::make_shared<MappedFile>();
  mapped->size = bytes;
  mapped->base = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (mapped->base == MAP_FAILED) {
    mapped->base = nullptr;
    throw CheckpointError("cannot mmap " + path + ": " + std::strerror(errno));
  }
  void* base = mapped->base;
  return at::from_blob(base, data.sizes(), [mapped](void*) mutable { mapped.reset(); }, data.options());
}

// Every (name, tensor, owning module, local name) of the model, parameters then buffers, duplicates dropped.
struct TensorRef {
  std::string name;
  at::Tensor tensor;
  torch::nn::Module* owner;
  std::string local;
  bool is_buffer;
};

std::vector<TensorRef> named_tensors(PreTrainedModel& model) {
  std::vector<TensorRef> out;
  std::set<const void*> seen;
  std::vector<std::pair<std::string, torch::nn::Module*>> modules{{"", &model}};
  for (const auto& item : model.named_modules("", false)) modules.emplace_back(item.key(), item.value().get());
  for (int pass = 0; pass < 2; ++pass)
    for (const auto& [prefix, module] : modules) {
      const std::string p = prefix.empty() ? "" : prefix + ".";
      const auto tensors = pass == 0 ? module->named_parameters(false) : module->named_buffers(false);
      for (const auto& t : tensors)
        if (t.value().defined() && seen.insert(t.value().unsafeGetTensorImpl()).second)
          out.push_back({p + t.key(), t.value(), module, t.key(), pass == 1});
    }
  return out;
}

}  // namespace

namespace nn::offload {

std::atomic<int> active_models{0};

void pre_forward(const Module& module) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  auto it = r.leaves.find(&module);
  Block* block = it == r.leaves.end() ? nullptr : it->second.block;
  // Leaving an offloaded block: release all of it (weights of modules without hooks too).
  if (r.current && r.current != block) advise(r.current->ranges, MADV_DONTNEED);
  r.current = block;
  if (block) advise(it->second.own, MADV_WILLNEED);
}

void post_forward(const Module& module) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  auto it = r.leaves.find(&module);
  if (it != r.leaves.end()) advise(it->second.own, MADV_DONTNEED);
}

}  // namespace nn::offload

// ---------------------------------------------------------------------------------------------------------------
// dispatch

void dispatch_model(PreTrainedModel& model, const json& requested, const FromPretrainedOptions& options) {
  DeviceMap device_map;
  if (requested.is_string()) {
    const std::string strategy = requested.get<std::string>();
    const auto no_split = model._get_no_split_modules(strategy);
    if (strategy != "auto" && strategy != "balanced" && strategy != "balanced_low_0" && strategy != "sequential")
      throw ValueError("If passing a string for `device_map`, please choose 'auto', 'balanced', 'balanced_low_0' or "
                       "'sequential'.");
    MaxMemory max_memory = get_max_memory(options.max_memory);
    if (strategy != "sequential")
      max_memory = get_balanced_memory(model, max_memory, no_split, std::nullopt, strategy == "balanced_low_0");
    model.tie_weights();
    device_map = infer_auto_device_map(model, max_memory, no_split);
  } else if (requested.is_object()) {
    for (const auto& [key, value] : requested.items()) {
      std::string device;
      if (value.is_number_integer()) device = std::to_string(value.get<int64_t>());
      else if (value.is_string()) device = value.get<std::string>();
      else throw ValueError("device_map['" + key + "'] must be a device name or index, got " + value.dump());
      device_map.emplace_back(key, normalize_device(device));
    }
  } else {
    throw ValueError("device_map must be a string ('auto', 'balanced', 'balanced_low_0', 'sequential') or an object "
                     "mapping module names to devices, got " + requested.dump());
  }

  auto tensors = named_tensors(model);
  std::vector<std::string> uncovered;
  for (const auto& ref : tensors) {
    try {
      device_for(device_map, ref.name);
    } catch (const ValueError&) {
      uncovered.push_back(ref.name);
    }
  }
  if (!uncovered.empty())
    throw ValueError(fmt::format("The device_map provided does not give any device for the following parameters: {}",
                                 fmt::join(uncovered, ", ")));

  auto state = std::make_shared<OffloadState>();
  nn::offload::active_models.fetch_add(1);
  std::map<std::string, Block*> blocks;
  const auto maps = file_mappings();
  json index = json::object();
  for (auto& ref : tensors) {
    const std::string device = device_for(device_map, ref.name);
    if (device == "cpu") continue;
    if (is_accelerator(device)) {
      if (!at::hasCUDA())
        throw ValueError("device_map puts " + ref.name + " on " + device +
                         ", but this libtorch build has no CUDA; use \"cpu\", \"disk\" or \"meta\"");
      ref.tensor.set_data(ref.tensor.to(c10::Device(device)));
      continue;
    }
    auto* ours = dynamic_cast<nn::Module*>(ref.owner);
    if (device == "meta") {
      at::Tensor meta = at::empty(ref.tensor.sizes(), ref.tensor.options().device(at::kMeta));
      if (!ours) throw ValueError("cannot put " + ref.name + " on the meta device");
      if (ref.is_buffer) ours->set_buffer(ref.local, nullptr, meta);
      else ours->replace_parameter(ref.local, meta.set_requires_grad(ref.tensor.requires_grad()));
      continue;
    }
    // disk
    if (!file_backed(ref.tensor, maps)) {
      if (options.offload_folder.empty())
        throw ValueError("The current `device_map` had weights offloaded to the disk (" + ref.name +
                         " is not stored in the checkpoint in the model's dtype). Please provide an `offload_folder` "
                         "for them.");
      fs::create_directories(options.offload_folder);
      at::NoGradGuard no_grad;
      ref.tensor.set_data(offload_weight(ref.tensor, ref.name, options.offload_folder, index));
    }
    // The block is the device_map entry the tensor falls under.
    std::string block_name;
    size_t best = 0;
    bool found = false;
    for (const auto& [prefix, d] : device_map) {
      const bool match = prefix.empty() || ref.name == prefix || starts_with(ref.name, prefix + ".");
      if (match && (!found || prefix.size() >= best)) {
        block_name = prefix;
        best = prefix.size();
        found = true;
      }
    }
    Block*& block = blocks[block_name];
    if (!block) {
      state->blocks.push_back(std::make_unique<Block>());
      block = state->blocks.back().get();
    }
    block->ranges.push_back(range_of(ref.tensor));
  }
  if (!index.empty()) {
    const std::string index_path = (fs::path(options.offload_folder) / "index.json").string();
    json current = fs::exists(index_path) ? read_json_file(index_path, "offload index") : json::object();
    current.update(index);
    std::ofstream(index_path) << current.dump(2);
  }

  // Hooks on the shared layers of the offloaded blocks.
  {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    for (const auto& item : model.named_modules("", false)) {
      auto* leaf = dynamic_cast<nn::Module*>(item.value().get());
      if (!leaf || !(dynamic_cast<nn::Linear*>(leaf) || dynamic_cast<nn::Conv1D*>(leaf) || dynamic_cast<nn::Embedding*>(leaf) ||
                     dynamic_cast<nn::LayerNorm*>(leaf)))
        continue;
      std::string block_name;
      bool found = false;
      size_t best = 0;
      for (const auto& [prefix, d] : device_map) {
        const bool match = prefix.empty() || item.key() == prefix || starts_with(item.key(), prefix + ".");
        if (match && (!found || prefix.size() >= best)) {
          block_name = prefix;
          best = prefix.size();
          found = true;
        }
      }
      auto b = blocks.find(block_name);
      if (!found || b == blocks.end()) continue;
      Leaf info{b->second, {}};
      for (const auto& p : leaf->named_parameters(false)) info.own.push_back(range_of(p.value()));
      for (const auto& p : leaf->named_buffers(false)) info.own.push_back(range_of(p.value()));
      r.leaves[leaf] = info;
      state->leaves.push_back(leaf);
    }
  }
  for (const auto& block : state->blocks) advise(block->ranges, MADV_DONTNEED);
  model.hf_device_map = device_map;
  model._offload_state = state;
}

int64_t current_rss_bytes() { return status_field("VmRSS"); }
int64_t peak_rss_bytes() { return status_field("VmHWM"); }
void reset_peak_rss() { std::ofstream("/proc/self/clear_refs") << "5"; }

}  // namespace transformers
