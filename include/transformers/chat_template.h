// Chat templates: a Jinja2 subset interpreter with the semantics of transformers' _compile_jinja_template
// (tokenization_utils_base.py, v4.40): ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True) with the
// raise_exception(message) global; {% break %} / {% continue %} also work (later versions add jinja2's loopcontrols).
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace transformers {

// Renders a chat template with the given context (messages, add_generation_prompt, bos_token, eos_token, tools...).
// Throws ChatTemplateError (errors.h) for a syntax error, a runtime error or raise_exception(), naming the line.
std::string render_chat_template(const std::string& source, const nlohmann::json& context);
// Same, keeping the context's key order (Python dicts iterate in insertion order; nlohmann::json sorts keys).
std::string render_chat_template(const std::string& source, const nlohmann::ordered_json& context);

}  // namespace transformers
