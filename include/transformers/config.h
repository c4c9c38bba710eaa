// PretrainedConfig: config.json <-> typed fields, as transformers' configuration_utils.py.
// A family declares its fields once in `visit`; reading, writing and the diff against defaults all come from there.
// Keys no field claims are kept in `extra` and written back unchanged.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace nlohmann {
template <typename T>
struct adl_serializer<std::optional<T>> {
  static void to_json(json& j, const std::optional<T>& v) {
    if (v) j = *v; else j = nullptr;
  }
  static void from_json(const json& j, std::optional<T>& v) {
    if (j.is_null()) v.reset(); else v = j.get<T>();
  }
};
}  // namespace nlohmann

namespace transformers {

using json = nlohmann::json;

// Reads fields from a JSON object (mode kRead) or writes them into one (mode kWrite).
class ConfigVisitor {
 public:
  enum class Mode { kRead, kWrite };
  ConfigVisitor(Mode mode, json& object, std::string source) : mode_(mode), object_(object), source_(std::move(source)) {}

  template <typename T>
  void operator()(const char* key, T& value) {
    seen_.insert(key);
    if (mode_ == Mode::kWrite) {
      object_[key] = value;
      return;
    }
    auto it = object_.find(key);
    if (it == object_.end()) return;
    try {
      value = read_value<T>(*it);
    } catch (const json::exception& e) {
      type_error(key, *it, e.what());
    }
  }

  Mode mode() const { return mode_; }
  const std::set<std::string>& seen() const { return seen_; }

 private:
  template <typename T>
  struct is_optional : std::false_type {};
  template <typename U>
  struct is_optional<std::optional<U>> : std::true_type {};

  template <typename T>
  static T read_value(const json& j) {
    // JSON numbers written by Python as 1.0 may land in integer fields and vice versa; accept both but never a bool
    // or a string where a number is expected, nor a number the field's type cannot hold.
    if constexpr (is_optional<T>::value) {
      if (j.is_null()) return std::nullopt;
      return read_value<typename T::value_type>(j);
    } else if constexpr (std::is_same_v<T, bool>) {
      if (!j.is_boolean()) throw json::type_error::create(302, "expected a boolean", &j);
    } else if constexpr (std::is_arithmetic_v<T>) {
      if (!j.is_number()) throw json::type_error::create(302, "expected a number", &j);
      if constexpr (std::is_integral_v<T>) {
        if (j.is_number_float()) {
          const double d = j.get<double>();
          // 2^63 and beyond (or NaN) would be undefined to convert.
          if (!(d >= static_cast<double>(std::numeric_limits<T>::min()) &&
                d < 2.0 * (static_cast<double>(std::numeric_limits<T>::max() / 2 + 1))) ||
              d != static_cast<double>(static_cast<T>(d)))
            throw json::type_error::create(302, "expected an integer", &j);
          return static_cast<T>(d);
        }
        const bool fits = j.is_number_unsigned()
                              ? j.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<T>::max())
                              : (j.get<int64_t>() >= static_cast<int64_t>(std::numeric_limits<T>::min()) &&
                                 (j.get<int64_t>() < 0 ||
                                  static_cast<uint64_t>(j.get<int64_t>()) <= static_cast<uint64_t>(std::numeric_limits<T>::max())));
        if (!fits) throw json::type_error::create(302, "integer out of range", &j);
      } else {
        if (j.is_number_float() && std::is_same_v<T, float> && std::isfinite(j.get<double>()) &&
            std::abs(j.get<double>()) > static_cast<double>(std::numeric_limits<float>::max()))
          throw json::type_error::create(302, "number out of range for a float", &j);
      }
    }
    return j.get<T>();
  }
  [[noreturn]] void type_error(const char* key, const json& value, const std::string& what) const;

  Mode mode_;
  json& object_;
  std::string source_;
  std::set<std::string> seen_;
};

// eos_token_id and friends may be one id or a list of ids.
using TokenIds = std::vector<int64_t>;

class PretrainedConfig {
 public:
  PretrainedConfig() = default;
  virtual ~PretrainedConfig() = default;

  // Class-level in transformers.
  virtual std::string model_type() const { return ""; }
  // attribute name -> stored name (GPT-2: hidden_size -> n_embd).
  virtual std::map<std::string, std::string> attribute_map() const { return {}; }
  virtual std::shared_ptr<PretrainedConfig> clone_default() const { return std::make_shared<PretrainedConfig>(); }
  // Family fields. The base class visits the common ones itself (see visit_common).
  virtual void visit(ConfigVisitor& v) {}
  // Called after reading: validation and derived defaults (e.g. num_key_value_heads = num_attention_heads).
  virtual void post_read(const std::string& source) {}

  // Common attributes, with transformers' defaults.
  bool return_dict = true;
  bool output_hidden_states = false;
  bool output_attentions = false;
  bool torchscript = false;
  std::optional<std::string> torch_dtype;
  bool use_bfloat16 = false;
  bool tf_legacy_loss = false;
  std::map<int64_t, std::vector<int64_t>> pruned_heads;
  bool tie_word_embeddings = true;
  int64_t chunk_size_feed_forward = 0;
  bool is_encoder_decoder = false;
  bool is_decoder = false;
  std::optional<int64_t> cross_attention_hidden_size;
  bool add_cross_attention = false;
  bool tie_encoder_decoder = false;
  std::optional<std::vector<std::string>> architectures;
  std::optional<std::string> finetuning_task;
  std::map<int64_t, std::string> id2label{{0, "LABEL_0"}, {1, "LABEL_1"}};
  std::map<std::string, int64_t> label2id{{"LABEL_0", 0}, {"LABEL_1", 1}};
  std::optional<std::string> tokenizer_class;
  std::optional<std::string> prefix;
  std::optional<int64_t> bos_token_id;
  std::optional<int64_t> pad_token_id;
  std::optional<TokenIds> eos_token_id;
  std::optional<int64_t> sep_token_id;
  std::optional<int64_t> decoder_start_token_id;
  json task_specific_params = nullptr;
  std::optional<std::string> problem_type;
  // Legacy generation parameters stored in config.json (max_length, num_beams, ...), name -> value.
  json generation_defaults = default_generation_parameters();

  std::string name_or_path;
  // "eager" unless set; not serialised.
  std::string attn_implementation_internal;
  std::string _attn_implementation() const {
    return attn_implementation_internal.empty() ? "eager" : attn_implementation_internal;
  }
  std::string transformers_version = "4.40.2";
  // Keys of config.json no field claimed.
  json extra = json::object();

  bool use_return_dict() const { return return_dict && !torchscript; }
  int64_t num_labels() const { return static_cast<int64_t>(id2label.size()); }
  void set_num_labels(int64_t n);
  // Value of any attribute by its transformers name (aliases resolved), from to_dict(). Null if absent.
  json get(const std::string& name) const;

  // Reads a dict (config.json content). `source` names the file in errors.
  void from_dict(json dict, const std::string& source = "<dict>");
  // Sets the keys present in `partial` (transformers names or aliases), keeping everything else.
  void update(const json& partial, const std::string& source = "<update>");
  json to_dict() const;
  // What save_pretrained writes: keys that differ from PretrainedConfig() or from this class's defaults,
  // plus every key the base class does not know.
  json to_diff_dict() const;
  std::string to_json_string(bool use_diff = true) const;
  void to_json_file(const std::string& path, bool use_diff = true) const;
  void save_pretrained(const std::string& dir) const;

  static json default_generation_parameters();
  // Reads `dir/config.json` (or a config file path) into this object.
  void load_file(const std::string& path);

 protected:
  void visit_common(ConfigVisitor& v);
};

// Parses a JSON file; ConfigError naming the file if it is missing or malformed.
json read_json_file(const std::string& path, const char* what = "config");
// Writes JSON atomically (temp file + rename) with 2-space indent and sorted keys, as transformers does.
void write_json_file(const json& value, const std::string& path);

}  // namespace transformers
