// Follows huggingface/safetensors safetensors/src/tensor.rs: SafeTensors::read_metadata, Metadata::validate and
// serialize_to_file.
#include "transformers/safetensors.h"

#include "transformers/atomic_dir.h"
#include "transformers/errors.h"

#include <ATen/ATen.h>
#include <fcntl.h>
#include <nlohmann/json.hpp>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <limits>
#include <tuple>

namespace transformers::safetensors {

// A MAP_PRIVATE, writable mapping of a whole file: in-place ops on tensors copy pages and never touch the file.
class MappedFile {
 public:
  MappedFile(uint8_t* base, size_t size) : base_(base), size_(size) {}
  ~MappedFile() { ::munmap(base_, size_); }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* base() const { return base_; }
  size_t size() const { return size_; }
  uint8_t* data_section() const { return base_ + data_start; }

  uint64_t data_start = 0;  // 8 + header length

 private:
  uint8_t* base_;
  size_t size_;
};

namespace {

using Json = nlohmann::json;

struct DType {
  const char* name;
  c10::ScalarType type;
  size_t size;
};

constexpr DType kDTypes[] = {
    {"F64", at::kDouble, 8}, {"F32", at::kFloat, 4}, {"F16", at::kHalf, 2},  {"BF16", at::kBFloat16, 2},
    {"I64", at::kLong, 8},   {"I32", at::kInt, 4},   {"I16", at::kShort, 2}, {"I8", at::kChar, 1},
    {"U8", at::kByte, 1},    {"BOOL", at::kBool, 1},
};

const DType* find_dtype(const std::string& name) {
  for (const DType& d : kDTypes) {
    if (name == d.name) return &d;
  }
  return nullptr;
}

const DType* find_dtype(c10::ScalarType type) {
  for (const DType& d : kDTypes) {
    if (type == d.type) return &d;
  }
  return nullptr;
}

std::string supported_dtypes() {
  std::string names;
  for (const DType& d : kDTypes) names += std::string(names.empty() ? "" : " ") + d.name;
  return names;
}

const DType& dtype_or_throw(const std::string& name) {
  const DType* type = find_dtype(name);
  if (!type) {
    throw CheckpointError("unsupported safetensors dtype '" + name + "' (supported: " + supported_dtypes() + ")");
  }
  return *type;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string offsets_string(const TensorInfo& t) {
  return "[" + std::to_string(t.begin) + ", " + std::to_string(t.end) + "]";
}

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw CheckpointError("safetensors file '" + path + "': " + what);
}

[[noreturn]] void fail(const std::string& path, const std::string& tensor, const std::string& what) {
  fail(path, "tensor '" + tensor + "': " + what);
}

struct FileDescriptor {
  int fd;
  ~FileDescriptor() {
    if (fd >= 0) ::close(fd);
  }
};

std::shared_ptr<MappedFile> map_file(const std::string& path) {
  FileDescriptor file{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (file.fd < 0) fail(path, std::string("cannot open: ") + std::strerror(errno));
  struct stat st {};
  if (::fstat(file.fd, &st) != 0) fail(path, std::string("cannot stat: ") + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) fail(path, "not a regular file");
  if (st.st_size < 8) {
    fail(path, "file is " + std::to_string(st.st_size) + " bytes, shorter than the 8-byte header length prefix");
  }
  void* base = ::mmap(nullptr, st.st_size, PROT_READ | PROT_WRITE, MAP_PRIVATE, file.fd, 0);
  if (base == MAP_FAILED) fail(path, std::string("cannot mmap: ") + std::strerror(errno));
  return std::make_shared<MappedFile>(static_cast<uint8_t*>(base), st.st_size);
}

Json parse_header(const std::string& path, MappedFile& file) {
  uint64_t length = 0;
  std::memcpy(&length, file.base(), sizeof(length));
  if (length == 0) fail(path, "header length is 0");
  if (length > kMaxHeaderBytes) {
    fail(path, "header length " + std::to_string(length) + " exceeds the limit of " + std::to_string(kMaxHeaderBytes));
  }
  if (length > file.size() - 8) {
    fail(path, "header length " + std::to_string(length) + " runs past the end of the file (" +
                   std::to_string(file.size()) + " bytes)");
  }
  file.data_start = 8 + length;
  const auto* text = reinterpret_cast<const char*>(file.base() + 8);
  Json header;
  try {
    header = Json::parse(text, text + length);
  } catch (const Json::exception& e) {  // parse_error, and out_of_range for numbers like 1e999
    fail(path, std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) fail(path, std::string("header must be a JSON object, got ") + header.type_name());
  return header;
}

std::map<std::string, std::string> parse_metadata(const std::string& path, const Json& value) {
  if (!value.is_object()) {
    fail(path, std::string("'__metadata__' must be an object of strings, got ") + value.type_name());
  }
  std::map<std::string, std::string> metadata;
  for (const auto& [key, item] : value.items()) {
    if (!item.is_string()) {
      fail(path, "'__metadata__' value for key '" + key + "' must be a string, got " + item.type_name());
    }
    metadata[key] = item.get<std::string>();
  }
  return metadata;
}

TensorInfo parse_entry(const std::string& path, const std::string& name, const Json& entry, uint64_t data_size) {
  if (!entry.is_object()) fail(path, name, std::string("entry must be a JSON object, got ") + entry.type_name());
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    if (!entry.contains(key)) fail(path, name, std::string("missing '") + key + "'");
  }
  TensorInfo info;
  info.name = name;

  const Json& dtype = entry["dtype"];
  if (!dtype.is_string()) fail(path, name, std::string("'dtype' must be a string, got ") + dtype.type_name());
  info.dtype = dtype.get<std::string>();
  const DType* type = find_dtype(info.dtype);
  if (!type) fail(path, name, "unsupported dtype '" + info.dtype + "' (supported: " + supported_dtypes() + ")");

  const Json& shape = entry["shape"];
  if (!shape.is_array()) fail(path, name, "'shape' must be an array of integers, got " + shape.dump());
  uint64_t nbytes = type->size;
  for (const Json& dim : shape) {
    if (!dim.is_number_integer()) fail(path, name, "'shape' must be an array of integers, got " + shape.dump());
    if (!dim.is_number_unsigned()) fail(path, name, "negative dimension in shape " + shape.dump());
    const auto size = dim.get<uint64_t>();
    if (size > uint64_t(std::numeric_limits<int64_t>::max()) || __builtin_mul_overflow(nbytes, size, &nbytes)) {
      fail(path, name, "shape " + shape.dump() + " is too large");
    }
    info.shape.push_back(int64_t(size));
  }

  const Json& offsets = entry["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
      !offsets[1].is_number_unsigned()) {
    fail(path, name, "'data_offsets' must be [begin, end] with non-negative integers, got " + offsets.dump());
  }
  info.begin = offsets[0].get<uint64_t>();
  info.end = offsets[1].get<uint64_t>();
  if (info.begin > info.end) fail(path, name, "data_offsets " + offsets_string(info) + " have begin > end");
  if (info.end > data_size) {
    fail(path, name,
         "data_offsets " + offsets_string(info) + " end past the data section (" + std::to_string(data_size) +
             " bytes)");
  }
  if (nbytes != info.end - info.begin) {
    fail(path, name,
         "dtype " + info.dtype + " with shape " + shape_string(info.shape) + " needs " + std::to_string(nbytes) +
             " bytes, but data_offsets " + offsets_string(info) + " span " + std::to_string(info.end - info.begin));
  }
  return info;
}

// The data section must be covered exactly once, from 0 to the end of the file. `tensors` is sorted by offset.
void check_layout(const std::string& path, const std::vector<TensorInfo>& tensors, uint64_t data_size) {
  uint64_t covered = 0;
  const TensorInfo* previous = nullptr;
  for (const TensorInfo& t : tensors) {
    if (t.begin < covered) {
      fail(path, t.name,
           "data_offsets " + offsets_string(t) + " overlap tensor '" + previous->name + "' " +
               offsets_string(*previous));
    }
    if (t.begin > covered) {
      fail(path, t.name,
           "data_offsets " + offsets_string(t) + " leave a hole: bytes [" + std::to_string(covered) + ", " +
               std::to_string(t.begin) + ") of the data section belong to no tensor");
    }
    covered = t.end;
    previous = &t;
  }
  if (covered != data_size) {
    fail(path, "tensors cover " + std::to_string(covered) + " bytes of the data section, but it has " +
                   std::to_string(data_size) + " bytes (the file has trailing data)");
  }
}

bool write_all(int fd, const void* data, size_t size) {
  const auto* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    size -= size_t(n);
  }
  return true;
}

}  // namespace

SafeOpen::SafeOpen(const std::string& path) : path_(path), file_(map_file(path)) {
  const Json header = parse_header(path_, *file_);
  const uint64_t data_size = file_->size() - file_->data_start;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      metadata_ = parse_metadata(path_, entry);
    } else {
      tensors_.push_back(parse_entry(path_, name, entry, data_size));
    }
  }
  std::sort(tensors_.begin(), tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  check_layout(path_, tensors_, data_size);
  for (size_t i = 0; i < tensors_.size(); ++i) index_[tensors_[i].name] = i;
}

SafeOpen::~SafeOpen() = default;

std::vector<std::string> SafeOpen::keys() const {
  std::vector<std::string> names;
  for (const auto& entry : index_) names.push_back(entry.first);
  return names;
}

bool SafeOpen::contains(const std::string& name) const { return index_.count(name) > 0; }

const TensorInfo& SafeOpen::info(const std::string& name) const {
  const auto it = index_.find(name);
  if (it == index_.end()) {
    fail(path_, "no tensor named '" + name + "' (the file has " + std::to_string(tensors_.size()) + " tensors)");
  }
  return tensors_[it->second];
}

at::Tensor SafeOpen::get_tensor(const std::string& name) const {
  const TensorInfo& t = info(name);
  const auto options = at::TensorOptions().dtype(dtype_from_string(t.dtype));
  if (t.begin == t.end) return at::empty(t.shape, options);
  const auto keep_mapping_alive = [file = file_](void*) {};
  at::Tensor mapped = at::from_blob(file_->data_section() + t.begin, t.shape, keep_mapping_alive, options);
  // The format packs tensors back to back: after an odd-sized int8/uint8 tensor the next one may sit at an address
  // its element type must not be read from (undefined behaviour, and slow for SIMD). Such a tensor is copied.
  const auto address = reinterpret_cast<std::uintptr_t>(mapped.data_ptr());
  if (address % mapped.element_size() != 0) return mapped.clone();
  return mapped;
}

std::vector<std::pair<std::string, at::Tensor>> load_file(const std::string& path) {
  const SafeOpen file(path);
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const std::string& name : file.keys()) tensors.emplace_back(name, file.get_tensor(name));
  return tensors;
}

void save_file(const std::vector<std::pair<std::string, at::Tensor>>& tensors, const std::string& path,
               const std::map<std::string, std::string>& metadata) {
  std::map<std::string, nlohmann::ordered_json> entries;  // the header lists tensors by name, as Python writes it
  std::vector<at::Tensor> data;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    if (name == "__metadata__") fail(path, name, "'__metadata__' is reserved and cannot name a tensor");
    if (!tensor.defined()) fail(path, name, "tensor is undefined");
    if (tensor.layout() != at::kStrided) fail(path, name, "only strided (dense) tensors can be saved");
    const DType* type = find_dtype(tensor.scalar_type());
    if (!type) {
      fail(path, name,
           std::string("unsupported dtype ") + c10::toString(tensor.scalar_type()) +
               " (supported: " + supported_dtypes() + ")");
    }
    at::Tensor t = tensor.cpu().contiguous();
    const uint64_t nbytes = uint64_t(t.numel()) * type->size;
    nlohmann::ordered_json entry = {
        {"dtype", type->name}, {"shape", t.sizes().vec()}, {"data_offsets", {offset, offset + nbytes}}};
    if (!entries.emplace(name, std::move(entry)).second) fail(path, name, "duplicate tensor name");
    offset += nbytes;
    data.push_back(std::move(t));
  }

  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  for (auto& [name, entry] : entries) header[name] = std::move(entry);
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  const uint64_t length = text.size();

  const auto write_contents = [&](int fd) {
    if (!write_all(fd, &length, sizeof(length)) || !write_all(fd, text.data(), text.size())) return false;
    for (const at::Tensor& t : data) {
      if (!write_all(fd, t.data_ptr(), t.nbytes())) return false;
    }
    return true;
  };
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  std::string error;
  {
    FileDescriptor file{::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)};
    if (file.fd < 0) fail(path, "cannot create temporary file '" + tmp + "': " + std::strerror(errno));
    if (!write_contents(file.fd)) {
      error = std::string("write failed: ") + std::strerror(errno);
    } else if (::close(std::exchange(file.fd, -1)) != 0) {
      error = std::string("close failed: ") + std::strerror(errno);
    }
  }
  if (error.empty()) fault_point("safetensors written, not renamed");
  if (error.empty() && ::rename(tmp.c_str(), path.c_str()) != 0) {
    error = "cannot rename '" + tmp + "' into place: " + std::strerror(errno);
  }
  if (!error.empty()) {
    ::unlink(tmp.c_str());
    fail(path, error);
  }  fault_point("safetensors renamed");
}

c10::ScalarType dtype_from_string(const std::string& name) { return dtype_or_throw(name).type; }

std::string dtype_to_string(c10::ScalarType type) {
  const DType* d = find_dtype(type);
  if (!d) {
    throw CheckpointError(std::string("dtype ") + c10::toString(type) +
                          " cannot be stored in safetensors (supported: " + supported_dtypes() + ")");
  }
  return d->name;
}

size_t dtype_size(const std::string& name) { return dtype_or_throw(name).size; }

}  // namespace transformers::safetensors
