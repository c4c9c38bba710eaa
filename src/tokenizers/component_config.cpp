#include "tokenizers/component_config.h"

#include "tokenizers/unicode.h"

namespace transformers::tokenizers {

std::string component_type(const json& config, const std::string& stage) {
  if (!config.is_object()) throw TokenizerError(stage + " must be a JSON object, got " + config.dump());
  const auto it = config.find("type");
  if (it == config.end() || !it->is_string()) throw TokenizerError(stage + " has no \"type\": " + config.dump());
  return it->get<std::string>();
}

bool bool_or(const json& config, const char* key, bool fallback) {
  const auto it = config.find(key);
  return it == config.end() || it->is_null() ? fallback : it->get<bool>();
}

std::string string_or(const json& config, const char* key, const std::string& fallback) {
  const auto it = config.find(key);
  return it == config.end() || it->is_null() ? fallback : it->get<std::string>();
}

char32_t single_char(const json& config, const char* key, const std::string& stage) {
  const std::string text = config.at(key).get<std::string>();
  const auto chars = decode_utf8(text);
  if (chars.size() != 1) {
    throw TokenizerError(stage + " field \"" + key + "\" must be one character, got \"" + text + "\"");
  }
  return chars[0];
}

}  // namespace transformers::tokenizers
