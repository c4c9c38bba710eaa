// Port of transformers/configuration_utils.py (4.40): PretrainedConfig.__init__ defaults, to_dict, to_diff_dict.
#include "transformers/config.h"

#include "transformers/atomic_dir.h"
#include "transformers/errors.h"
#include "transformers/hub.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace fs = std::filesystem;

namespace transformers {

void ConfigVisitor::type_error(const char* key, const json& value, const std::string& what) const {
  throw ConfigError(source_ + ": key '" + key + "' has an unexpected type (value " + value.dump() + "): " + what);
}

json PretrainedConfig::default_generation_parameters() {
  return json{{"max_length", 20},
              {"min_length", 0},
              {"do_sample", false},
              {"early_stopping", false},
              {"num_beams", 1},
              {"num_beam_groups", 1},
              {"diversity_penalty", 0.0},
              {"temperature", 1.0},
              {"top_k", 50},
              {"top_p", 1.0},
              {"typical_p", 1.0},
              {"repetition_penalty", 1.0},
              {"length_penalty", 1.0},
              {"no_repeat_ngram_size", 0},
              {"encoder_no_repeat_ngram_size", 0},
              {"bad_words_ids", nullptr},
              {"num_return_sequences", 1},
              {"output_scores", false},
              {"return_dict_in_generate", false},
              {"forced_bos_token_id", nullptr},
              {"forced_eos_token_id", nullptr},
              {"remove_invalid_values", false},
              {"exponential_decay_length_penalty", nullptr},
              {"suppress_tokens", nullptr},
              {"begin_suppress_tokens", nullptr}};
}

void PretrainedConfig::set_num_labels(int64_t n) {
  if (static_cast<int64_t>(id2label.size()) == n) return;
  id2label.clear();
  label2id.clear();
  for (int64_t i = 0; i < n; ++i) {
    id2label[i] = "LABEL_" + std::to_string(i);
    label2id["LABEL_" + std::to_string(i)] = i;
  }
}

void PretrainedConfig::visit_common(ConfigVisitor& v) {
  v("return_dict", return_dict);
  v("output_hidden_states", output_hidden_states);
  v("output_attentions", output_attentions);
  v("torchscript", torchscript);
  v("torch_dtype", torch_dtype);
  v("use_bfloat16", use_bfloat16);
  v("tf_legacy_loss", tf_legacy_loss);
  v("tie_word_embeddings", tie_word_embeddings);
  v("chunk_size_feed_forward", chunk_size_feed_forward);
  v("is_encoder_decoder", is_encoder_decoder);
  v("is_decoder", is_decoder);
  v("cross_attention_hidden_size", cross_attention_hidden_size);
  v("add_cross_attention", add_cross_attention);
  v("tie_encoder_decoder", tie_encoder_decoder);
  v("architectures", architectures);
  v("finetuning_task", finetuning_task);
  v("tokenizer_class", tokenizer_class);
  v("prefix", prefix);
  v("bos_token_id", bos_token_id);
  v("pad_token_id", pad_token_id);
  v("sep_token_id", sep_token_id);
  v("decoder_start_token_id", decoder_start_token_id);
  v("task_specific_params", task_specific_params);
  v("problem_type", problem_type);
}

namespace {

json read_token_ids(const json& j, const std::string& source, const char* key) {
  if (j.is_null() || j.is_number_integer()) return j;
  if (j.is_array() && std::all_of(j.begin(), j.end(), [](const json& e) { return e.is_number_integer(); })) return j;
  throw ConfigError(source + ": key '" + key + "' must be an integer, a list of integers or null, got " + j.dump());
}

}  // namespace

void PretrainedConfig::from_dict(json dict, const std::string& source) {
  if (!dict.is_object()) throw ConfigError(source + ": expected a JSON object, got " + std::string(dict.type_name()));
  for (const auto& [attr, stored] : attribute_map()) {
    auto it = dict.find(attr);
    if (it != dict.end()) {
      if (!dict.contains(stored)) dict[stored] = *it;
      dict.erase(attr);
    }
  }
  ConfigVisitor common(ConfigVisitor::Mode::kRead, dict, source);
  visit_common(common);
  ConfigVisitor family(ConfigVisitor::Mode::kRead, dict, source);
  visit(family);

  std::set<std::string> claimed = common.seen();
  claimed.insert(family.seen().begin(), family.seen().end());
  for (const char* key : {"eos_token_id", "pruned_heads", "id2label", "label2id", "num_labels", "model_type",
                          "transformers_version", "_name_or_path", "_commit_hash", "attn_implementation",
                          "_attn_implementation", "_attn_implementation_internal"})
    claimed.insert(key);

  if (dict.contains("eos_token_id")) {
    json e = read_token_ids(dict["eos_token_id"], source, "eos_token_id");
    if (e.is_null()) eos_token_id.reset();
    else if (e.is_number_integer()) eos_token_id = TokenIds{e.get<int64_t>()};
    else eos_token_id = e.get<TokenIds>();
  }
  if (dict.contains("pruned_heads")) {
    const json& p = dict["pruned_heads"];
    if (!p.is_object()) throw ConfigError(source + ": key 'pruned_heads' must be an object {layer: [heads]}");
    pruned_heads.clear();
    for (const auto& [layer, heads] : p.items()) {
      try {
        auto& list = pruned_heads[std::stoll(layer)];
        for (const auto& h : heads) list.push_back(h.get<int64_t>());
      } catch (const std::exception&) {
        throw ConfigError(source + ": key 'pruned_heads' entry '" + layer + "' must map a layer index to head indices");
      }
    }
  }
  if (dict.contains("id2label") && !dict["id2label"].is_null()) {
    const json& m = dict["id2label"];
    if (!m.is_object()) throw ConfigError(source + ": key 'id2label' must be an object");
    id2label.clear();
    for (const auto& [k, val] : m.items()) {
      try {
        id2label[std::stoll(k)] = val.get<std::string>();
      } catch (const std::exception&) {
        throw ConfigError(source + ": key 'id2label' entry '" + k + "' must map an integer to a label string");
      }
    }
    label2id.clear();
    if (dict.contains("label2id") && dict["label2id"].is_object()) {
      for (const auto& [k, val] : dict["label2id"].items()) {
        if (!val.is_number_integer())  // found by fuzz_config: a string here escaped as a raw JSON type_error
          throw ConfigError(source + ": key 'label2id' entry '" + k + "' must map a label to an integer");
        label2id[k] = val.get<int64_t>();
      }
    } else {
      for (const auto& [i, l] : id2label) label2id[l] = i;
    }
  } else if (dict.contains("num_labels")) {
    if (!dict["num_labels"].is_number_integer()) throw ConfigError(source + ": key 'num_labels' must be an integer");
    set_num_labels(dict["num_labels"].get<int64_t>());
  }
  const json generation_keys = default_generation_parameters();
  for (auto& [key, value] : generation_keys.items()) {
    claimed.insert(key);
    if (dict.contains(key)) generation_defaults[key] = dict[key];
  }
  if (dict.contains("transformers_version") && dict["transformers_version"].is_string())
    transformers_version = dict["transformers_version"].get<std::string>();
  for (const char* key : {"attn_implementation", "_attn_implementation"})
    if (dict.contains(key) && dict[key].is_string()) attn_implementation_internal = dict[key].get<std::string>();
  if (dict.contains("_name_or_path") && dict["_name_or_path"].is_string())
    name_or_path = dict["_name_or_path"].get<std::string>();

  extra = json::object();
  for (auto& [key, value] : dict.items())
    if (!claimed.count(key)) extra[key] = value;
  post_read(source);
}

void PretrainedConfig::update(const json& partial, const std::string& source) {
  if (!partial.is_object()) throw ConfigError(source + ": update expects a JSON object");
  json dict = to_dict();
  for (const auto& [attr, stored] : attribute_map()) dict.erase(attr);
  for (auto& [key, value] : partial.items()) {
    auto attrs = attribute_map();
    auto alias = attrs.find(key);
    dict[alias == attrs.end() ? key : alias->second] = value;
  }
  std::string keep_name = name_or_path, keep_attn = attn_implementation_internal;
  from_dict(dict, source);
  name_or_path = keep_name;
  attn_implementation_internal = keep_attn;
}

json PretrainedConfig::to_dict() const {
  json out = extra;
  auto* self = const_cast<PretrainedConfig*>(this);
  ConfigVisitor common(ConfigVisitor::Mode::kWrite, out, "");
  self->visit_common(common);
  ConfigVisitor family(ConfigVisitor::Mode::kWrite, out, "");
  self->visit(family);
  if (!eos_token_id) out["eos_token_id"] = nullptr;
  else if (eos_token_id->size() == 1) out["eos_token_id"] = (*eos_token_id)[0];
  else out["eos_token_id"] = *eos_token_id;
  json heads = json::object();
  for (const auto& [layer, list] : pruned_heads) heads[std::to_string(layer)] = list;
  out["pruned_heads"] = heads;
  json i2l = json::object();
  for (const auto& [i, l] : id2label) i2l[std::to_string(i)] = l;
  out["id2label"] = i2l;
  out["label2id"] = label2id;
  for (auto& [key, value] : generation_defaults.items()) out[key] = value;
  if (!model_type().empty()) out["model_type"] = model_type();
  out["transformers_version"] = transformers_version;
  return out;
}

json PretrainedConfig::to_diff_dict() const {
  json config = to_dict();
  json base = PretrainedConfig().to_dict();
  json klass = clone_default()->to_dict();
  json diff = json::object();
  for (auto& [key, value] : config.items()) {
    bool differs_from_base = !base.contains(key) || key == "transformers_version" || value != base[key];
    bool differs_from_class = klass.contains(key) && value != klass[key];
    if (differs_from_base || differs_from_class) diff[key] = value;
  }
  return diff;
}

json PretrainedConfig::get(const std::string& name) const {
  json all = to_dict();
  auto attrs = attribute_map();
  auto alias = attrs.find(name);
  const std::string& key = alias == attrs.end() ? name : alias->second;
  if (key == "num_labels") return num_labels();
  if (key == "_attn_implementation") return _attn_implementation();
  return all.contains(key) ? all[key] : json(nullptr);
}

std::string PretrainedConfig::to_json_string(bool use_diff) const {
  return (use_diff ? to_diff_dict() : to_dict()).dump(2) + "\n";
}

void PretrainedConfig::to_json_file(const std::string& path, bool use_diff) const {
  write_json_file(use_diff ? to_diff_dict() : to_dict(), path);
}

void PretrainedConfig::save_pretrained(const std::string& dir) const {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw ConfigError("cannot create directory " + dir + ": " + ec.message());
  to_json_file((fs::path(dir) / "config.json").string());
}

void PretrainedConfig::load_file(const std::string& path_or_repo_id) {
  std::error_code ec;  // a hub id: config.json from the cache / the Hub (hub.h)
  const std::string path = fs::exists(path_or_repo_id, ec) ? path_or_repo_id : hub::cached_file(path_or_repo_id, "config.json");
  std::string file = fs::is_directory(path) ? (fs::path(path) / "config.json").string() : path;
  from_dict(read_json_file(file), file);
  if (name_or_path.empty()) name_or_path = fs::is_directory(path) ? path : fs::path(path).parent_path().string();
}

json read_json_file(const std::string& path, const char* what) {
  // Bounds for files that come from strangers: configs and indexes are small and shallow.
  constexpr std::uintmax_t kMaxBytes = 256u << 20;
  constexpr int kMaxDepth = 128;
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw ConfigError(std::string(what) + " file " + path + " is a directory");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(std::string(what) + " file not found: " + path);
  const auto size = std::filesystem::file_size(path, ec);
  if (!ec && size > kMaxBytes)
    throw ConfigError(path + ": " + std::to_string(size) + " bytes is too large for a " + what + " file (limit " +
                      std::to_string(kMaxBytes) + ")");
  bool too_deep = false;
  const json::parser_callback_t limit_depth = [&](int depth, json::parse_event_t event, json&) {
    if (depth > kMaxDepth && (event == json::parse_event_t::object_start || event == json::parse_event_t::array_start))
      too_deep = true;
    return !too_deep;
  };
  json value;
  try {
    value = json::parse(in, limit_depth);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for numbers like 1e999
    throw ConfigError(path + ": invalid JSON: " + e.what());
  }
  if (too_deep)
    throw ConfigError(path + ": JSON nested deeper than " + std::to_string(kMaxDepth) + " levels in a " + what + " file");
  return value;
}

void write_json_file(const json& value, const std::string& path) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << value.dump(2) << "\n";
    out.close();
    if (!out) {
      std::remove(tmp.c_str());
      throw ConfigError("cannot write " + path);
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw ConfigError("cannot write " + path);
  }
  fault_point("json renamed");
}

}  // namespace transformers
