// Restricted unpickler for torch.save zip checkpoints (pickle protocol 2, as torch.save writes).
#include "transformers/torch_bin.h"

#include "transformers/errors.h"

#include <ATen/ATen.h>
#include <caffe2/serialize/inline_container.h>

#include <cstring>
#include <map>
#include <memory>
#include <set>

namespace transformers {

namespace {

struct Value;
using ValuePtr = std::shared_ptr<Value>;

// The Python objects a state dict pickle contains.
struct Value {
  enum class Kind { None, Bool, Int, Float, String, Tuple, List, Dict, Global, Storage, Tensor, Mark };
  Kind kind = Kind::None;
  int64_t i = 0;
  double f = 0;
  std::string s;                                  // String; Global "module.name"
  std::vector<ValuePtr> items;                    // Tuple, List; Dict keys/values interleaved
  at::Tensor tensor;                              // Storage (1-D, its dtype), Tensor
};

ValuePtr make(Value::Kind kind) {
  auto v = std::make_shared<Value>();
  v->kind = kind;
  return v;
}

class Unpickler {
 public:
  Unpickler(std::string path, caffe2::serialize::PyTorchStreamReader& reader, const std::string& data)
      : path_(std::move(path)), reader_(reader), data_(data) {}

  ValuePtr load() {
    while (true) {
      uint8_t op = read<uint8_t>();
      switch (op) {
        case 0x80: read<uint8_t>(); break;                                 // PROTO
        case '}': push(make(Value::Kind::Dict)); break;                   // EMPTY_DICT
        case ']': push(make(Value::Kind::List)); break;                    // EMPTY_LIST
        case ')': push(make(Value::Kind::Tuple)); break;                   // EMPTY_TUPLE
        case '(': push(make(Value::Kind::Mark)); break;                    // MARK
        case 'N': push(make(Value::Kind::None)); break;                    // NONE
        case 0x88: push_bool(true); break;                                 // NEWTRUE
        case 0x89: push_bool(false); break;                                // NEWFALSE
        case 'K': push_int(read<uint8_t>()); break;                        // BININT1
        case 'M': push_int(read<uint16_t>()); break;                       // BININT2
        case 'J': push_int(read<int32_t>()); break;                        // BININT
        case 0x8a: push_int(read_long(read<uint8_t>())); break;            // LONG1
        case 'G': push_float(read_be_double()); break;                     // BINFLOAT
        case 'X': push_string(read_bytes(read<uint32_t>())); break;        // BINUNICODE
        case 0x8c: push_string(read_bytes(read<uint8_t>())); break;        // SHORT_BINUNICODE
        case 'U': push_string(read_bytes(read<uint8_t>())); break;         // SHORT_BINSTRING
        case 'T': push_string(read_bytes(read<uint32_t>())); break;        // BINSTRING
        case 'C': push_string(read_bytes(read<uint8_t>())); break;         // SHORT_BINBYTES
        case 'B': push_string(read_bytes(read<uint32_t>())); break;        // BINBYTES
        case 'q': memo_[read<uint8_t>()] = top(); break;                   // BINPUT
        case 'r': memo_[read<uint32_t>()] = top(); break;                  // LONG_BINPUT
        case 0x94: memo_[memo_.size()] = top(); break;                     // MEMOIZE
        case 'h': push(memo(read<uint8_t>())); break;                      // BINGET
        case 'j': push(memo(read<uint32_t>())); break;                     // LONG_BINGET
        case 'c': global(); break;                                         // GLOBAL
        case 't': tuple(pop_mark()); break;                                // TUPLE
        case 0x85: tuple(pop_n(1)); break;                                 // TUPLE1
        case 0x86: tuple(pop_n(2)); break;                                 // TUPLE2
        case 0x87: tuple(pop_n(3)); break;                                 // TUPLE3
        case 'a': { ValuePtr v = pop(); list_of(top())->items.push_back(v); break; }  // APPEND
        case 'e': { auto v = pop_mark(); auto l = list_of(top()); l->items.insert(l->items.end(), v.begin(), v.end()); break; }
        case 's': { ValuePtr v = pop(), k = pop(); dict_of(top())->items.insert(dict_of(top())->items.end(), {k, v}); break; }
        case 'u': { auto kv = pop_mark(); auto d = dict_of(top()); d->items.insert(d->items.end(), kv.begin(), kv.end()); break; }
        case 'Q': persistent_load(pop()); break;                           // BINPERSID
        case 'R': reduce(); break;                                         // REDUCE
        case 'b': pop(); break;                                            // BUILD: state of OrderedDict/_metadata
        case '.': return pop();                                            // STOP
        default: fail("unsupported pickle opcode 0x" + hex(op));
      }
    }
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw CheckpointError(path_ + ": " + what + " (at byte " + std::to_string(pos_) + " of data.pkl)");
  }
  static std::string hex(uint8_t b) {
    const char* digits = "0123456789abcdef";
    return {digits[b >> 4], digits[b & 15]};
  }
  template <typename T>
  T read() {
    if (pos_ + sizeof(T) > data_.size()) fail("truncated pickle");
    T v;
    std::memcpy(&v, data_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string read_bytes(size_t n) {
    if (pos_ + n > data_.size()) fail("truncated pickle");
    std::string out = data_.substr(pos_, n);
    pos_ += n;
    return out;
  }
  int64_t read_long(size_t n) {
    if (n > 8) fail("integer wider than 64 bits");
    std::string bytes = read_bytes(n);
    int64_t v = 0;
    for (size_t i = 0; i < n; ++i) v |= static_cast<int64_t>(static_cast<uint8_t>(bytes[i])) << (8 * i);
    if (n > 0 && n < 8 && (static_cast<uint8_t>(bytes[n - 1]) & 0x80)) v -= int64_t{1} << (8 * n);  // sign
    return v;
  }
  double read_be_double() {
    std::string b = read_bytes(8);
    uint64_t bits = 0;
    for (int i = 0; i < 8; ++i) bits = (bits << 8) | static_cast<uint8_t>(b[i]);
    double d;
    std::memcpy(&d, &bits, 8);
    return d;
  }

  void push(ValuePtr v) { stack_.push_back(std::move(v)); }
  void push_bool(bool b) { auto v = make(Value::Kind::Bool); v->i = b; push(v); }
  void push_int(int64_t i) { auto v = make(Value::Kind::Int); v->i = i; push(v); }
  void push_float(double f) { auto v = make(Value::Kind::Float); v->f = f; push(v); }
  void push_string(std::string s) { auto v = make(Value::Kind::String); v->s = std::move(s); push(v); }
  ValuePtr top() {
    if (stack_.empty()) fail("pickle stack underflow");
    return stack_.back();
  }
  ValuePtr pop() {
    ValuePtr v = top();
    stack_.pop_back();
    return v;
  }
  std::vector<ValuePtr> pop_n(size_t n) {
    if (stack_.size() < n) fail("pickle stack underflow");
    std::vector<ValuePtr> out(stack_.end() - n, stack_.end());
    stack_.resize(stack_.size() - n);
    return out;
  }
  std::vector<ValuePtr> pop_mark() {
    for (size_t i = stack_.size(); i-- > 0;)
      if (stack_[i]->kind == Value::Kind::Mark) {
        std::vector<ValuePtr> out(stack_.begin() + i + 1, stack_.end());
        stack_.resize(i);
        return out;
      }
    fail("MARK not found");
  }
  ValuePtr memo(uint32_t id) {
    auto it = memo_.find(id);
    if (it == memo_.end()) fail("memo entry " + std::to_string(id) + " missing");
    return it->second;
  }
  ValuePtr list_of(const ValuePtr& v) {
    if (v->kind != Value::Kind::List) fail("APPEND on a non-list");
    return v;
  }
  ValuePtr dict_of(const ValuePtr& v) {
    if (v->kind != Value::Kind::Dict) fail("SETITEM on a non-dict");
    return v;
  }
  void tuple(std::vector<ValuePtr> items) {
    auto v = make(Value::Kind::Tuple);
    v->items = std::move(items);
    push(v);
  }

  static const std::map<std::string, c10::ScalarType>& storage_types() {
    static const std::map<std::string, c10::ScalarType> table{
        {"torch.FloatStorage", at::kFloat},   {"torch.DoubleStorage", at::kDouble}, {"torch.HalfStorage", at::kHalf},
        {"torch.BFloat16Storage", at::kBFloat16}, {"torch.LongStorage", at::kLong}, {"torch.IntStorage", at::kInt},
        {"torch.ShortStorage", at::kShort},   {"torch.CharStorage", at::kChar},     {"torch.ByteStorage", at::kByte},
        {"torch.BoolStorage", at::kBool}};
    return table;
  }

  void global() {
    std::string module = read_line(), name = read_line();
    std::string full = module + "." + name;
    static const std::set<std::string> allowed{"collections.OrderedDict", "torch._utils._rebuild_tensor_v2",
                                               "torch._utils._rebuild_parameter"};
    if (!allowed.count(full) && !storage_types().count(full))
      fail("refusing to load global '" + full + "': a state dict holds only tensors (weights_only)");
    auto v = make(Value::Kind::Global);
    v->s = full;
    push(v);
  }
  std::string read_line() {
    size_t end = data_.find('\n', pos_);
    if (end == std::string::npos) fail("truncated GLOBAL");
    std::string out = data_.substr(pos_, end - pos_);
    pos_ = end + 1;
    return out;
  }

  // ('storage', storage_type, key, location, numel) -> the record data/<key> as a 1-D tensor.
  void persistent_load(const ValuePtr& pid) {
    if (pid->kind != Value::Kind::Tuple || pid->items.size() < 5 || pid->items[0]->s != "storage" ||
        pid->items[1]->kind != Value::Kind::Global || pid->items[2]->kind != Value::Kind::String)
      fail("unsupported persistent id");
    auto type_it = storage_types().find(pid->items[1]->s);
    if (type_it == storage_types().end())
      fail("persistent id names '" + pid->items[1]->s + "', which is not a storage type");
    c10::ScalarType type = type_it->second;
    const std::string& key = pid->items[2]->s;
    auto it = storages_.find(key);
    if (it == storages_.end()) {
      std::string record = "data/" + key;
      if (!reader_.hasRecord(record)) fail("storage record '" + record + "' missing from the archive");
      auto [ptr, size] = reader_.getRecord(record);
      int64_t numel = static_cast<int64_t>(size / c10::elementSize(type));
      auto holder = std::make_shared<at::DataPtr>(std::move(ptr));
      at::Tensor storage = at::from_blob(holder->get(), {numel}, [holder](void*) {}, at::TensorOptions(type));
      it = storages_.emplace(key, storage).first;
    }
    auto v = make(Value::Kind::Storage);
    v->tensor = it->second;
    push(v);
  }

  std::vector<int64_t> ints(const ValuePtr& tuple, const char* what) {
    if (tuple->kind != Value::Kind::Tuple) fail(std::string("tensor rebuild: ") + what + " is not a tuple");
    std::vector<int64_t> out;
    for (const auto& item : tuple->items) {
      if (item->kind != Value::Kind::Int || item->i < 0)
        fail(std::string("tensor rebuild: ") + what + " holds something other than a non-negative integer");
      out.push_back(item->i);
    }
    return out;
  }

  void reduce() {
    ValuePtr args = pop(), callable = pop();
    if (callable->kind != Value::Kind::Global || args->kind != Value::Kind::Tuple) fail("unsupported REDUCE");
    const std::string& fn = callable->s;
    if (fn == "collections.OrderedDict") {
      push(make(Value::Kind::Dict));
    } else if (fn == "torch._utils._rebuild_tensor_v2") {
      // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
      if (args->items.size() < 4 || args->items[0]->kind != Value::Kind::Storage) fail("malformed tensor rebuild");
      const at::Tensor& storage = args->items[0]->tensor;
      if (args->items[1]->kind != Value::Kind::Int || args->items[1]->i < 0)
        fail("tensor rebuild: storage offset is not a non-negative integer");
      int64_t offset = args->items[1]->i;
      std::vector<int64_t> size = ints(args->items[2], "size"), stride = ints(args->items[3], "stride");
      if (size.size() != stride.size()) fail("tensor rebuild: size and stride have different lengths");
      // The last element the view touches, with overflow checks: it must lie inside the storage.
      int64_t last = offset;
      bool overflow = false;
      for (size_t d = 0; d < size.size(); ++d) {
        int64_t step = 0;
        if (size[d] > 0) overflow |= __builtin_mul_overflow(size[d] - 1, stride[d], &step) ||
                                     __builtin_add_overflow(last, step, &last);
      }
      int64_t numel = 1;
      for (int64_t s : size) overflow |= __builtin_mul_overflow(numel, s, &numel);
      if (overflow) fail("tensor rebuild: size/stride overflow");
      bool empty = numel == 0;
      if (!empty && last >= storage.numel()) fail("tensor view past the end of its storage");
      auto v = make(Value::Kind::Tensor);
      v->tensor = empty ? at::empty(size, storage.options()) : storage.as_strided(size, stride, offset);
      push(v);
    } else if (fn == "torch._utils._rebuild_parameter") {
      if (args->items.empty() || args->items[0]->kind != Value::Kind::Tensor) fail("malformed parameter rebuild");
      push(args->items[0]);
    } else {
      fail("unsupported call to '" + fn + "'");
    }
  }

  std::string path_;
  caffe2::serialize::PyTorchStreamReader& reader_;
  const std::string& data_;
  size_t pos_ = 0;
  std::vector<ValuePtr> stack_;
  std::map<uint32_t, ValuePtr> memo_;
  std::map<std::string, at::Tensor> storages_;
};

}  // namespace

std::vector<std::pair<std::string, at::Tensor>> load_torch_bin(const std::string& path) {
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> reader;
  std::string data;
  try {
    reader = std::make_unique<caffe2::serialize::PyTorchStreamReader>(path);
    auto [ptr, size] = reader->getRecord("data.pkl");
    data.assign(static_cast<const char*>(ptr.get()), size);
  } catch (const c10::Error& e) {
    throw CheckpointError(path + ": not a torch.save zip archive (legacy or corrupt file): " +
                          e.what_without_backtrace());
  }
  ValuePtr root = Unpickler(path, *reader, data).load();
  if (root->kind != Value::Kind::Dict) throw CheckpointError(path + ": top-level object is not a state dict");
  // A checkpoint dict wrapping the state dict ({"state_dict": {...}} / {"model": {...}}) is unwrapped.
  if (root->items.size() == 2 && root->items[1]->kind == Value::Kind::Dict) root = root->items[1];
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (size_t i = 0; i + 1 < root->items.size(); i += 2) {
    const ValuePtr& key = root->items[i];
    const ValuePtr& value = root->items[i + 1];
    if (key->kind != Value::Kind::String) throw CheckpointError(path + ": state dict key is not a string");
    if (value->kind != Value::Kind::Tensor)
      throw CheckpointError(path + ": entry '" + key->s + "' is not a tensor");
    out.emplace_back(key->s, value->tensor);
  }
  return out;
}

}  // namespace transformers
