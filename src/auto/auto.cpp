// Registries behind the auto classes (transformers/models/auto/*).
#include "transformers/auto.h"

#include "transformers/errors.h"

#include <filesystem>

namespace fs = std::filesystem;

namespace transformers {

namespace {

struct ModelEntry {
  std::string model_type, task, class_name;
  ModelFactory factory;
};

std::map<std::string, ConfigFactory>& configs() {
  static std::map<std::string, ConfigFactory> table;
  return table;
}

std::map<std::string, ModelEntry>& models() {  // by class name
  static std::map<std::string, ModelEntry> table;
  return table;
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

}  // namespace

void register_config(const std::string& model_type, ConfigFactory factory) { configs()[model_type] = std::move(factory); }

void register_model(const std::string& model_type, const std::string& task, const std::string& class_name,
                    ModelFactory factory) {
  models()[class_name] = ModelEntry{model_type, task, class_name, std::move(factory)};
}

std::vector<std::string> supported_model_types() {
  std::vector<std::string> out;
  for (const auto& [k, v] : configs()) out.push_back(k);
  return out;
}

std::vector<std::string> registered_classes() {
  std::vector<std::string> out;
  for (const auto& [k, v] : models()) out.push_back(k);
  return out;
}

std::shared_ptr<PretrainedConfig> AutoConfig::for_model(const std::string& model_type) {
  auto it = configs().find(model_type);
  if (it == configs().end())
    throw ConfigError("unknown model_type '" + model_type + "'; supported model types: " + join(supported_model_types()));
  return it->second();
}

std::shared_ptr<PretrainedConfig> AutoConfig::from_pretrained(const std::string& path_or_repo_id) {
  std::error_code ec;  // a hub id: config.json from the cache / the Hub (hub.h)
  const std::string path = fs::exists(path_or_repo_id, ec) ? path_or_repo_id : hub::cached_file(path_or_repo_id, "config.json");
  std::string file = fs::is_directory(path) ? (fs::path(path) / "config.json").string() : path;
  json dict = read_json_file(file);
  if (!dict.is_object() || !dict.contains("model_type") || !dict["model_type"].is_string())
    throw ConfigError(file + ": no 'model_type' key; supported model types: " + join(supported_model_types()));
  std::string model_type = dict["model_type"].get<std::string>();
  std::shared_ptr<PretrainedConfig> config;
  try {
    config = for_model(model_type);
  } catch (const ConfigError& e) {
    throw ConfigError(file + ": " + e.what());
  }
  config->from_dict(dict, file);
  config->name_or_path = fs::is_directory(path) ? path : fs::path(path).parent_path().string();
  return config;
}

std::string class_for_task(const std::string& model_type, const std::string& task) {
  std::vector<std::string> candidates;
  for (const auto& [name, entry] : models()) {
    if (entry.model_type == model_type && entry.task == task) return name;
    if (entry.task == task) candidates.push_back(entry.model_type);
  }
  throw ValueError("unrecognized configuration class for model_type '" + model_type + "' and task '" + task +
                   "'; model types with this task: " + join(candidates));
}

static const ModelEntry& entry_for(const std::string& class_name) {
  auto it = models().find(class_name);
  if (it == models().end())
    throw ValueError("unknown model class '" + class_name + "'; available: " + join(registered_classes()));
  return it->second;
}

std::shared_ptr<PreTrainedModel> model_from_pretrained(const std::string& path_or_repo_id, const std::string& class_name,
                                                       const FromPretrainedOptions& options) {
  const std::string path = hub::resolve_pretrained_model(path_or_repo_id, options.variant, options.hub);  // hub.h
  const ModelEntry& entry = entry_for(class_name);
  std::string file = (fs::path(path) / "config.json").string();
  json dict = read_json_file(file);
  if (dict.is_object() && dict.contains("model_type") && dict["model_type"] != entry.model_type)
    throw ConfigError(file + ": model_type '" + dict["model_type"].dump() + "' does not match class " + class_name +
                      " (model_type '" + entry.model_type + "')");
  return from_pretrained_with(path, class_name, entry.factory, AutoConfig::for_model(entry.model_type), options);
}

std::shared_ptr<PreTrainedModel> model_from_config(std::shared_ptr<PretrainedConfig> config,
                                                   const std::string& class_name) {
  std::string requested = config->attn_implementation_internal;
  auto model = entry_for(class_name).factory(std::move(config));
  model->set_attn_implementation(requested);
  return model;
}

}  // namespace transformers
