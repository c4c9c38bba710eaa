// Reading one pipeline component ({"type": ..., ...}) of tokenizer.json, and the per-stage registries.
#pragma once

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "transformers/errors.h"

namespace transformers::tokenizers {

using json = nlohmann::json;

// `stage` names the component in messages: "normalizer", "pre_tokenizer", "model", ...
std::string component_type(const json& config, const std::string& stage);
bool bool_or(const json& config, const char* key, bool fallback);  // absent or null -> fallback
std::string string_or(const json& config, const char* key, const std::string& fallback);
// A "char" field of tokenizers (Metaspace replacement, Strip content): exactly one character.
char32_t single_char(const json& config, const char* key, const std::string& stage);

// A non-negative integer field that fits T (ids, lengths): anything else (a float, a negative or huge number, a
// string) is a TokenizerError naming `what`, never a silent cast.
template <typename T>
T json_uint(const json& value, const std::string& what) {
  const bool fits = (value.is_number_unsigned() && value.get<uint64_t>() <= static_cast<uint64_t>(~T(0))) ||
                    (value.is_number_integer() && !value.is_number_unsigned() && value.get<int64_t>() >= 0 &&
                     static_cast<uint64_t>(value.get<int64_t>()) <= static_cast<uint64_t>(~T(0)));
  if (!fits) throw TokenizerError(what + " must be a non-negative integer, got " + value.dump());
  return static_cast<T>(value.get<uint64_t>());
}

template <typename Base>
using ComponentBuilder = std::unique_ptr<Base> (*)(const json& config);

template <typename Base>
using ComponentRegistry = std::map<std::string, ComponentBuilder<Base>>;

// Looks the component's "type" up in `registry`; unknown types are an error, never skipped.
template <typename Base>
std::unique_ptr<Base> build_component(const ComponentRegistry<Base>& registry, const json& config,
                                      const std::string& stage) {
  const std::string type = component_type(config, stage);
  const auto it = registry.find(type);
  if (it == registry.end()) {
    std::string supported;
    for (const auto& entry : registry) supported += (supported.empty() ? "" : ", ") + entry.first;
    throw TokenizerError("unsupported " + stage + " type '" + type + "' (supported: " + supported + ")");
  }
  try {
    return it->second(config);
  } catch (const json::exception& e) {
    throw TokenizerError(stage + " " + type + ": " + e.what());
  }
}

}  // namespace transformers::tokenizers
