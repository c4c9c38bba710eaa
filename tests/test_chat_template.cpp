// Chat templates: render_chat_template against real jinja2 (through transformers 4.40.2's _compile_jinja_template),
// byte for byte. Expected strings come from tests/fixtures/make_chat_template_cases.py.
#include "test_util.h"

#include "transformers/chat_template.h"
#include "transformers/errors.h"

#include <fstream>
#include <iterator>
#include <set>

namespace {

using nlohmann::ordered_json;
using transformers::ChatTemplateError;
using transformers::render_chat_template;

std::string templates_dir() { return tfcpp_test::source_dir() + "/tests/fixtures/chat_templates/"; }

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  return std::string(std::istreambuf_iterator<char>(in), {});
}

const ordered_json& all_cases() {
  static const ordered_json cases = [] {
    std::ifstream in(templates_dir() + "cases.json");
    return ordered_json::parse(in)["cases"];
  }();
  return cases;
}

// Renders one case and checks it against jinja2's output, or its error message.
void check_case(const ordered_json& c, const std::string& source) {
  const std::string name = c["name"].get<std::string>();
  if (c["expected"].is_string()) {
    std::string got;
    try {
      got = render_chat_template(source, c["context"]);
    } catch (const ChatTemplateError& e) {
      ADD_FAILURE() << name << ": unexpected error: " << e.what();
      return;
    }
    EXPECT_EQ(got, c["expected"].get<std::string>()) << name;
    return;
  }
  const std::string expected_error = c["error"].get<std::string>();
  try {
    std::string got = render_chat_template(source, c["context"]);
    ADD_FAILURE() << name << ": expected the error \"" << expected_error << "\", rendered " << ordered_json(got).dump();
  } catch (const ChatTemplateError& e) {
    EXPECT_NE(std::string(e.what()).find(expected_error), std::string::npos)
        << name << ": error \"" << e.what() << "\" does not contain jinja2's \"" << expected_error << "\"";
    EXPECT_NE(std::string(e.what()).find("chat template line "), std::string::npos) << e.what();
  }
}

TEST(ChatTemplate, RealTemplatesMatchJinja2) {
  std::set<std::string> templates;
  size_t checked = 0;
  for (const auto& c : all_cases()) {
    if (!c.contains("template")) continue;
    const std::string file = c["template"].get<std::string>();
    templates.insert(file);
    check_case(c, read_file(templates_dir() + file));
    ++checked;
  }
  // Every model family named in the README has a template here (hub templates and transformers' defaults).
  for (const char* file : {"llama2_chat.jinja", "llama3_instruct.jinja", "mistral_instruct_v01.jinja",
                           "mistral_instruct_v03.jinja", "mixtral_instruct.jinja", "zephyr.jinja",
                           "qwen2_instruct.jinja", "qwen15_chat.jinja", "gemma_it.jinja", "phi3_mini_instruct.jinja",
                           "falcon_chat.jinja", "default_chatml.jinja", "default_blenderbot.jinja",
                           "default_llama_system_prompt.jinja", "default_cohere_tool_use.jinja",
                           "default_cohere_rag.jinja", "tools_json_style.jinja"})
    EXPECT_TRUE(templates.count(file)) << file << " has no cases in cases.json";
  EXPECT_GE(checked, 250u);
}

TEST(ChatTemplate, ConstructsMatchJinja2) {
  size_t checked = 0;
  for (const auto& c : all_cases()) {
    if (!c.contains("source")) continue;
    check_case(c, c["source"].get<std::string>());
    ++checked;
  }
  EXPECT_GE(checked, 60u);
}

std::string render_error(const std::string& source, const nlohmann::json& context = nlohmann::json::object()) {
  try {
    render_chat_template(source, context);
  } catch (const ChatTemplateError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(ChatTemplate, ErrorsNameTheTemplateLine) {
  // raise_exception: the template's message, with the line it was raised on
  std::string raised = render_error("a\n{% if true %}\n  {{ raise_exception('roles must alternate') }}\n{% endif %}");
  EXPECT_NE(raised.find("line 3"), std::string::npos) << raised;
  EXPECT_NE(raised.find("roles must alternate"), std::string::npos) << raised;
  // syntax errors
  std::string unclosed = render_error("x\n{% for m in messages %}\n{{ m }}");
  EXPECT_NE(unclosed.find("endfor"), std::string::npos) << unclosed;
  std::string bad_token = render_error("ok\n\n{{ 1 + }}");
  EXPECT_NE(bad_token.find("line 3"), std::string::npos) << bad_token;
  EXPECT_NE(render_error("{{ 'unterminated }}").find("line 1"), std::string::npos);
  EXPECT_NE(render_error("{# never closed").find("Missing end of comment tag"), std::string::npos);
  EXPECT_NE(render_error("{% endif %}").find("endif"), std::string::npos);
  EXPECT_NE(render_error("{{ (1 }}").find("line 1"), std::string::npos);
  EXPECT_NE(render_error("{% break %}").find("outside of a loop"), std::string::npos);
  EXPECT_NE(render_error("{% include 'x' %}").find("not supported"), std::string::npos);
  // runtime errors
  std::string filter = render_error("\n{{ messages|frobnicate }}", {{"messages", nlohmann::json::array()}});
  EXPECT_NE(filter.find("line 2"), std::string::npos) << filter;
  EXPECT_NE(filter.find("No filter named 'frobnicate'"), std::string::npos) << filter;
  EXPECT_NE(render_error("{{ m.content.x }}", {{"m", nlohmann::json::object()}}).find("has no attribute 'content'"),
            std::string::npos);
  EXPECT_NE(render_error("{{ 'a' < 1 }}").find("not supported between instances of 'str' and 'int'"), std::string::npos);
  EXPECT_NE(render_error("{{ 1 / 0 }}").find("division by zero"), std::string::npos);
  EXPECT_NE(render_error("{{ range(1000000)|length }}").find("Range too big"), std::string::npos);
  EXPECT_NE(render_error("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}").find("recursion"), std::string::npos);
  EXPECT_NE(render_error("{% set x = 1 %}{% set x.a = 2 %}").find("non-namespace"), std::string::npos);
  // the context must be an object of variables
  EXPECT_THROW(render_chat_template("x", nlohmann::json::array()), ChatTemplateError);
  EXPECT_THROW(render_chat_template("x", nlohmann::json("messages")), ChatTemplateError);
}

TEST(ChatTemplate, ContextKeyOrder) {
  const std::string source = "{% for k, v in d.items() %}{{ k }}{{ v }}{% endfor %}";
  // ordered_json keeps insertion order, as Python dicts do; nlohmann::json iterates sorted keys.
  ordered_json ordered = {{"d", ordered_json::object()}};
  ordered["d"]["b"] = 1;
  ordered["d"]["a"] = 2;
  EXPECT_EQ(render_chat_template(source, ordered), "b1a2");
  nlohmann::json sorted = {{"d", {{"b", 1}, {"a", 2}}}};
  EXPECT_EQ(render_chat_template(source, sorted), "a2b1");
  // tojson sorts keys in both cases (jinja2's sort_keys=True)
  EXPECT_EQ(render_chat_template("{{ d|tojson }}", ordered), "{\"a\": 2, \"b\": 1}");
}

TEST(ChatTemplate, TransformersDefaultChatML) {
  // transformers' PreTrainedTokenizerBase.default_chat_template, the template apply_chat_template falls back to
  const std::string chatml = read_file(templates_dir() + "default_chatml.jinja");
  nlohmann::json context = {{"messages", {{{"role", "user"}, {"content", "Hi"}}}}, {"add_generation_prompt", true}};
  EXPECT_EQ(render_chat_template(chatml, context), "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  context["add_generation_prompt"] = false;
  EXPECT_EQ(render_chat_template(chatml, context), "<|im_start|>user\nHi<|im_end|>\n");
}

}  // namespace
