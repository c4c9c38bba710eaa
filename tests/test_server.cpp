// tfcpp serve (server.h) on an ephemeral loopback port with the embedded stories260K: OpenAI completions and chat,
// streamed and not, against generate(); concurrent clients against sequential runs; 401 / 400 / 413 / 429;
// a client that closes its stream early.
#define CPPHTTPLIB_OPENSSL_SUPPORT
#define CPPHTTPLIB_ZLIB_SUPPORT
#define CPPHTTPLIB_BROTLI_SUPPORT
#include <httplib.h>

#include "test_util.h"
#include "transformers/auto.h"
#include "transformers/generation.h"
#include "transformers/server.h"
#include "transformers/tokenizer.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <regex>
#include <thread>

using namespace transformers;
using tfcpp_test::source_dir;

namespace {

struct Stories {
  std::string dir = source_dir() + "/models/stories260K";
  std::shared_ptr<PreTrainedModel> model = AutoModelForCausalLM::from_pretrained(dir);
  std::shared_ptr<const Tokenizer> tokenizer = std::make_shared<const Tokenizer>(Tokenizer::from_pretrained(dir));
};

Stories& stories() {
  static Stories s;
  return s;
}

std::unique_ptr<Server> start_server(ServerOptions options = {}) {
  options.port = 0;
  auto server = std::make_unique<Server>(stories().model, stories().tokenizer, options, stories().dir);
  server->start();
  return server;
}

struct Reply {
  int status = 0;
  std::string body;
  json json_body() const { return json::parse(body); }
};

Reply post(int port, const std::string& path, const std::string& body, const httplib::Headers& headers = {}) {
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(60);
  auto res = client.Post(path.c_str(), headers, body, "application/json");
  if (!res) return Reply{-1, "transport error " + httplib::to_string(res.error())};
  return Reply{res->status, res->body};
}

Reply get(int port, const std::string& path, const httplib::Headers& headers = {}) {
  httplib::Client client("127.0.0.1", port);
  auto res = client.Get(path.c_str(), headers);
  if (!res) return Reply{-1, "transport error"};
  return Reply{res->status, res->body};
}

// The `data:` payloads of a server-sent event stream.
std::vector<std::string> sse_data(const std::string& body) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find("\n\n", pos);
    if (end == std::string::npos) end = body.size();
    std::string event = body.substr(pos, end - pos);
    if (event.compare(0, 6, "data: ") == 0) out.push_back(event.substr(6));
    pos = end + 2;
  }
  return out;
}

double metric(const std::string& text, const std::string& name) {
  std::smatch m;
  std::regex re("(^|\\n)" + std::regex_replace(name, std::regex(R"([{}"])"), R"(\$&)") + " ([0-9.e+-]+)");
  if (!std::regex_search(text, m, re)) return -1;
  return std::stod(m[2].str());
}

// generate() on the same model: the ids after the prompt.
std::vector<int64_t> reference(const std::vector<int64_t>& prompt, int64_t max_new_tokens,
                               const std::function<void(GenerationConfig&)>& edit = {},
                               const GenerateOptions& options = {}) {
  GenerationConfig config = stories().model->generation_config;
  config.max_new_tokens = max_new_tokens;
  if (edit) edit(config);
  at::Tensor ids = at::tensor(prompt, at::kLong).unsqueeze(0);
  GenerateOutput out = generate(*stories().model, ids, config, ModelInputs{}, options);
  at::Tensor row = out.sequences[0].contiguous();
  return std::vector<int64_t>(row.data_ptr<int64_t>() + prompt.size(), row.data_ptr<int64_t>() + row.numel());
}

// The completion text the server should return: what decoding prompt + new ids adds after the decoded prompt.
std::string completion_text(const std::vector<int64_t>& prompt, const std::vector<int64_t>& generated) {
  std::vector<int64_t> all = prompt;
  all.insert(all.end(), generated.begin(), generated.end());
  const Tokenizer& tok = *stories().tokenizer;
  return tok.decode(all, true).substr(tok.decode(prompt, true).size());
}

// One streamed request: concatenated text per choice, finish reasons, and the raw payloads.
struct Streamed {
  int status = 0;
  std::map<int, std::string> text, finish;
  std::vector<std::string> payloads;
  json usage;
};

Streamed post_stream(int port, const std::string& path, json body) {
  body["stream"] = true;
  Reply r = post(port, path, body.dump());
  Streamed s;
  s.status = r.status;
  s.payloads = sse_data(r.body);
  for (const auto& p : s.payloads) {
    if (p == "[DONE]") continue;
    json chunk = json::parse(p);
    if (chunk.contains("usage")) s.usage = chunk["usage"];
    for (const auto& c : chunk["choices"]) {
      int index = c["index"].get<int>();
      if (c.contains("text")) s.text[index] += c["text"].get<std::string>();
      if (c.contains("delta") && c["delta"].contains("content")) s.text[index] += c["delta"]["content"].get<std::string>();
      if (!c["finish_reason"].is_null()) s.finish[index] = c["finish_reason"].get<std::string>();
    }
  }
  return s;
}

void expect_openai_error(const Reply& r, int status, const std::string& param = "") {
  EXPECT_EQ(r.status, status) << r.body;
  json body;
  ASSERT_NO_THROW(body = r.json_body()) << r.body;
  ASSERT_TRUE(body.contains("error")) << r.body;
  const json& e = body["error"];
  EXPECT_TRUE(e["message"].is_string() && !e["message"].get<std::string>().empty()) << r.body;
  EXPECT_TRUE(e["type"].is_string()) << r.body;
  EXPECT_TRUE(e.contains("param") && e.contains("code")) << r.body;
  if (!param.empty()) {
    EXPECT_EQ(e["param"], param) << r.body;
  }
}

}  // namespace

TEST(ServerApi, CompletionGreedyEqualsGenerateAndTfcppGenerate) {
  auto server = start_server();
  const std::string prompt = "Once upon a time";
  Reply r = post(server->port(), "/v1/completions",
                 json({{"prompt", prompt}, {"max_tokens", 40}, {"temperature", 0}}).dump());
  ASSERT_EQ(r.status, 200) << r.body;
  json body = r.json_body();
  EXPECT_EQ(body["object"], "text_completion");
  EXPECT_EQ(body["model"], "stories260K");
  const std::string text = body["choices"][0]["text"].get<std::string>();

  std::vector<int64_t> ids = stories().tokenizer->encode(prompt);
  std::vector<int64_t> expected = reference(ids, 40);
  EXPECT_EQ(text, completion_text(ids, expected));
  EXPECT_EQ(body["usage"]["prompt_tokens"], ids.size());
  EXPECT_EQ(body["usage"]["completion_tokens"], expected.size());
  EXPECT_EQ(body["usage"]["total_tokens"], ids.size() + expected.size());
  EXPECT_EQ(body["choices"][0]["finish_reason"], expected.size() == 40 ? "length" : "stop");

  // `tfcpp generate` prints the prompt and the continuation.
  auto [code, out] = tfcpp_test::run_command(tfcpp_test::tfcpp_bin() + " generate --model " + stories().dir +
                                             " --prompt '" + prompt + "' --max-new-tokens 40 2>/dev/null");
  ASSERT_EQ(code, 0);
  while (!out.empty() && out.back() == '\n') out.pop_back();
  EXPECT_EQ(prompt + text, out);
}

TEST(ServerApi, StreamedCompletionEqualsNonStreamed) {
  auto server = start_server();
  json request = {{"prompt", json::array({"One day, Lily", "The cat"})}, {"max_tokens", 32}, {"temperature", 0}};
  Reply r = post(server->port(), "/v1/completions", request.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  json body = r.json_body();
  ASSERT_EQ(body["choices"].size(), 2u);

  request["stream_options"] = {{"include_usage", true}};
  Streamed s = post_stream(server->port(), "/v1/completions", request);
  ASSERT_EQ(s.status, 200);
  ASSERT_FALSE(s.payloads.empty());
  EXPECT_EQ(s.payloads.back(), "[DONE]");
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(s.text[i], body["choices"][i]["text"].get<std::string>()) << "choice " << i;
    EXPECT_EQ(s.finish[i], body["choices"][i]["finish_reason"].get<std::string>());
    std::vector<int64_t> ids = stories().tokenizer->encode(i == 0 ? "One day, Lily" : "The cat");
    EXPECT_EQ(s.text[i], completion_text(ids, reference(ids, 32)));
  }
  EXPECT_EQ(s.usage, body["usage"]);
}

TEST(ServerApi, ChatCompletionWithTemplateStreamedAndNot) {
  ServerOptions options;
  options.chat_template =
      "{% for m in messages %}{{ '<|' + m['role'] + '|> ' + m['content'] + '\n' }}{% endfor %}"
      "{% if add_generation_prompt %}{{ bos_token + 'Once upon a time' }}{% endif %}";
  auto server = start_server(options);
  json request = {{"messages", {{{"role", "system"}, {"content", "Tell a story."}},
                                {{"role", "user"}, {"content", json::array({{{"type", "text"}, {"text", "Hi"}}})}}}},
                  {"max_tokens", 24},
                  {"temperature", 0}};
  Reply r = post(server->port(), "/v1/chat/completions", request.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  json body = r.json_body();
  EXPECT_EQ(body["object"], "chat.completion");
  EXPECT_EQ(body["choices"][0]["message"]["role"], "assistant");
  const std::string content = body["choices"][0]["message"]["content"].get<std::string>();

  const std::string prompt = "<|system|> Tell a story.\n<|user|> Hi\n<s>Once upon a time";
  std::vector<int64_t> ids = stories().tokenizer->encode(prompt, /*add_special_tokens=*/false);
  EXPECT_EQ(content, completion_text(ids, reference(ids, 24)));
  EXPECT_EQ(body["usage"]["prompt_tokens"], ids.size());

  Streamed s = post_stream(server->port(), "/v1/chat/completions", request);
  ASSERT_EQ(s.status, 200);
  EXPECT_EQ(s.text[0], content);
  EXPECT_EQ(s.finish[0], body["choices"][0]["finish_reason"].get<std::string>());
  json first = json::parse(s.payloads.front());
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
}

TEST(ServerApi, ChatWithoutTemplateUsesTransformersLlamaDefault) {
  auto server = start_server();
  Reply r = post(server->port(), "/v1/chat/completions",
                 json({{"messages", {{{"role", "user"}, {"content", "Hello"}}}}, {"max_tokens", 12}}).dump());
  ASSERT_EQ(r.status, 200) << r.body;
  // LlamaTokenizer.default_chat_template (transformers 4.40) for one user message.
  std::vector<int64_t> ids = stories().tokenizer->encode("<s>[INST] Hello [/INST]", false);
  EXPECT_EQ(r.json_body()["choices"][0]["message"]["content"].get<std::string>(),
            completion_text(ids, reference(ids, 12)));
}

TEST(ServerApi, SeededSamplingEqualsGenerateAndRepeats) {
  auto server = start_server();
  const std::string prompt = "Once upon a time";
  json request = {{"prompt", prompt}, {"max_tokens", 30}, {"temperature", 0.9}, {"top_p", 0.95}, {"seed", 11}};
  Reply a = post(server->port(), "/v1/completions", request.dump());
  Reply b = post(server->port(), "/v1/completions", request.dump());
  ASSERT_EQ(a.status, 200) << a.body;
  const std::string text = a.json_body()["choices"][0]["text"].get<std::string>();
  EXPECT_EQ(text, b.json_body()["choices"][0]["text"].get<std::string>());
  std::vector<int64_t> ids = stories().tokenizer->encode(prompt);
  std::vector<int64_t> expected = reference(ids, 30, [](GenerationConfig& c) {
    c.do_sample = true;
    c.temperature = 0.9;
    c.top_p = 0.95;
    c.seed = 11;
  });
  EXPECT_EQ(text, completion_text(ids, expected));

  // n = 3: choice i samples with seed + i.
  request["n"] = 3;
  Reply n3 = post(server->port(), "/v1/completions", request.dump());
  ASSERT_EQ(n3.status, 200) << n3.body;
  json choices = n3.json_body()["choices"];
  ASSERT_EQ(choices.size(), 3u);
  EXPECT_EQ(choices[0]["text"].get<std::string>(), text);
  EXPECT_NE(choices[1]["text"].get<std::string>(), text);
}

TEST(ServerApi, PenaltiesLogitBiasStopAndLogprobs) {
  auto server = start_server();
  const std::string prompt = "Once upon a time";
  std::vector<int64_t> ids = stories().tokenizer->encode(prompt);

  // presence / frequency penalty: OpenAI's formula over the generated tokens, as a logits processor of generate().
  const double presence = 0.7, frequency = 0.9;
  GenerateOptions penalised;
  const int64_t prompt_len = static_cast<int64_t>(ids.size());
  penalised.logits_processor.push_back([=](const at::Tensor& input_ids, const at::Tensor& scores) {
    at::Tensor out = scores.clone();
    for (int64_t t = prompt_len; t < input_ids.size(1); ++t) {
      int64_t token = input_ids[0][t].item<int64_t>();
      out[0][token] -= frequency;
    }
    for (int64_t t = prompt_len; t < input_ids.size(1); ++t) {
      int64_t token = input_ids[0][t].item<int64_t>();
      bool first = true;
      for (int64_t u = prompt_len; u < t; ++u) first = first && input_ids[0][u].item<int64_t>() != token;
      if (first) out[0][token] -= presence;
    }
    return out;
  });
  Reply p = post(server->port(), "/v1/completions",
                 json({{"prompt", prompt}, {"max_tokens", 40}, {"temperature", 0}, {"presence_penalty", presence},
                       {"frequency_penalty", frequency}})
                     .dump());
  ASSERT_EQ(p.status, 200) << p.body;
  std::vector<int64_t> expected = reference(ids, 40, {}, penalised);
  EXPECT_EQ(p.json_body()["choices"][0]["text"].get<std::string>(), completion_text(ids, expected));
  EXPECT_NE(completion_text(ids, expected), completion_text(ids, reference(ids, 40)));

  // logit_bias -100 on the greedy first token: a different first token.
  std::vector<int64_t> greedy = reference(ids, 8);
  Reply biased = post(server->port(), "/v1/completions",
                      json({{"prompt", prompt}, {"max_tokens", 8}, {"temperature", 0},
                            {"logit_bias", {{std::to_string(greedy[0]), -100}}}})
                          .dump());
  ASSERT_EQ(biased.status, 200) << biased.body;
  GenerateOptions banned;
  banned.logits_processor.push_back([&](const at::Tensor&, const at::Tensor& scores) {
    at::Tensor out = scores.clone();
    out[0][greedy[0]] -= 100;
    return out;
  });
  EXPECT_EQ(biased.json_body()["choices"][0]["text"].get<std::string>(), completion_text(ids, reference(ids, 8, {}, banned)));
  EXPECT_NE(biased.json_body()["choices"][0]["text"].get<std::string>(), completion_text(ids, greedy));

  // stop: the text ends before the first occurrence; finish_reason "stop".
  const std::string full = completion_text(ids, reference(ids, 48));
  const std::string stop = full.substr(20, 4);
  Reply s = post(server->port(), "/v1/completions",
                 json({{"prompt", prompt}, {"max_tokens", 48}, {"temperature", 0}, {"stop", {stop, "zzzz"}}}).dump());
  ASSERT_EQ(s.status, 200) << s.body;
  EXPECT_EQ(s.json_body()["choices"][0]["text"].get<std::string>(), full.substr(0, full.find(stop)));
  EXPECT_EQ(s.json_body()["choices"][0]["finish_reason"], "stop");
  Streamed ss = post_stream(server->port(), "/v1/completions",
                            {{"prompt", prompt}, {"max_tokens", 48}, {"temperature", 0}, {"stop", stop}});
  EXPECT_EQ(ss.text[0], full.substr(0, full.find(stop)));
  EXPECT_EQ(ss.finish[0], "stop");

  // logprobs (completions): one entry per token, the greedy token is the most likely, tokens spell the text.
  Reply lp = post(server->port(), "/v1/completions",
                  json({{"prompt", prompt}, {"max_tokens", 10}, {"temperature", 0}, {"logprobs", 3}}).dump());
  ASSERT_EQ(lp.status, 200) << lp.body;
  json choice = lp.json_body()["choices"][0];
  json logprobs = choice["logprobs"];
  ASSERT_EQ(logprobs["tokens"].size(), 10u);
  std::string spelled;
  for (size_t i = 0; i < 10; ++i) {
    spelled += logprobs["tokens"][i].get<std::string>();
    double chosen = logprobs["token_logprobs"][i].get<double>();
    EXPECT_LE(chosen, 0.0);
    ASSERT_EQ(logprobs["top_logprobs"][i].size(), 3u);
    double best = -1e30;
    for (const auto& [token, value] : logprobs["top_logprobs"][i].items()) best = std::max(best, value.get<double>());
    EXPECT_NEAR(chosen, best, 1e-9);
  }
  EXPECT_EQ(spelled, choice["text"].get<std::string>());

  // logprobs (chat): content entries with bytes and top_logprobs.
  Reply chat = post(server->port(), "/v1/chat/completions",
                    json({{"messages", {{{"role", "user"}, {"content", "Hi"}}}}, {"max_tokens", 5}, {"temperature", 0},
                          {"logprobs", true}, {"top_logprobs", 2}})
                        .dump());
  ASSERT_EQ(chat.status, 200) << chat.body;
  json content = chat.json_body()["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), 5u);
  EXPECT_EQ(content[0]["top_logprobs"].size(), 2u);
  EXPECT_TRUE(content[0]["bytes"].is_array());
}

TEST(ServerApi, ModelsHealthMetricsAndUnknownUrl) {
  ServerOptions options;
  options.model_id = "tiny-stories";
  auto server = start_server(options);
  Reply models = get(server->port(), "/v1/models");
  ASSERT_EQ(models.status, 200);
  EXPECT_EQ(models.json_body()["data"][0]["id"], "tiny-stories");
  EXPECT_EQ(models.json_body()["object"], "list");
  EXPECT_EQ(get(server->port(), "/health").status, 200);
  Reply done = post(server->port(), "/v1/completions", json({{"prompt", "Hi"}, {"max_tokens", 4}}).dump());
  ASSERT_EQ(done.status, 200) << done.body;
  Reply m = get(server->port(), "/metrics");
  ASSERT_EQ(m.status, 200);
  // A request is counted once its answer is written, just after the client may have read it.
  for (int i = 0; i < 200 && metric(m.body, "tfcpp_requests_total{status=\"200\"}") < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    m = get(server->port(), "/metrics");
  }
  EXPECT_GE(metric(m.body, "tfcpp_requests_total{status=\"200\"}"), 3);
  EXPECT_EQ(metric(m.body, "tfcpp_generated_tokens_total"), done.json_body()["usage"]["completion_tokens"].get<double>());
  EXPECT_EQ(metric(m.body, "tfcpp_prompt_tokens_total"), done.json_body()["usage"]["prompt_tokens"].get<double>());
  EXPECT_EQ(metric(m.body, "tfcpp_queue_depth"), 0);
  EXPECT_EQ(metric(m.body, "tfcpp_active_requests"), 0);
  EXPECT_GE(metric(m.body, "tfcpp_tokens_per_second"), 0);
  expect_openai_error(get(server->port(), "/v1/nothing"), 404);
}

TEST(ServerSafety, PortInUseIsAnError) {
  auto first = start_server();
  ServerOptions options;
  options.port = first->port();
  Server second(stories().model, stories().tokenizer, options, stories().dir);
  EXPECT_THROW(second.start(), Error);
  EXPECT_EQ(get(first->port(), "/health").status, 200);
}

TEST(ServerSafety, ApiKey401) {
  ServerOptions options;
  options.api_key = "sk-test-123";
  auto server = start_server(options);
  const std::string body = json({{"prompt", "Hi"}, {"max_tokens", 2}}).dump();
  expect_openai_error(post(server->port(), "/v1/completions", body), 401);
  expect_openai_error(post(server->port(), "/v1/completions", body, {{"Authorization", "Bearer wrong"}}), 401);
  expect_openai_error(post(server->port(), "/v1/completions", body, {{"Authorization", "sk-test-123"}}), 401);
  expect_openai_error(get(server->port(), "/v1/models"), 401);
  expect_openai_error(get(server->port(), "/metrics"), 401);
  EXPECT_EQ(post(server->port(), "/v1/completions", body, {{"Authorization", "Bearer sk-test-123"}}).status, 200);
  EXPECT_EQ(get(server->port(), "/health").status, 200);
}

TEST(ServerSafety, MalformedRequests400) {
  ServerOptions options;
  options.max_tokens = 100;
  auto server = start_server(options);
  const int port = server->port();
  auto completion = [port](const std::string& body) { return post(port, "/v1/completions", body); };
  auto chat = [port](const std::string& body) { return post(port, "/v1/chat/completions", body); };
  expect_openai_error(completion("{\"prompt\": \"Hi\""), 400);
  expect_openai_error(completion("[1, 2]"), 400);
  expect_openai_error(completion("\"text\""), 400);
  expect_openai_error(completion(""), 400);
  expect_openai_error(completion(R"({"max_tokens": 5})"), 400, "prompt");
  expect_openai_error(completion(R"({"prompt": "Hi", "max_tokens": "ten"})"), 400, "max_tokens");
  expect_openai_error(completion(R"({"prompt": "Hi", "max_tokens": 101})"), 400, "max_tokens");
  expect_openai_error(completion(R"({"prompt": "Hi", "max_tokens": 0})"), 400, "max_tokens");
  expect_openai_error(completion(R"({"prompt": "Hi", "max_tokens": 1e400})"), 400);
  expect_openai_error(completion(R"({"prompt": "Hi", "max_tokens": 18446744073709551615})"), 400, "max_tokens");
  expect_openai_error(completion(R"({"prompt": "Hi", "temperature": 3})"), 400, "temperature");
  expect_openai_error(completion(R"({"prompt": "Hi", "top_p": 0})"), 400, "top_p");
  expect_openai_error(completion(R"({"prompt": "Hi", "n": 0})"), 400, "n");
  expect_openai_error(completion(R"({"prompt": "Hi", "n": 1000})"), 400, "n");
  expect_openai_error(completion(R"({"prompt": "Hi", "stream": "yes"})"), 400, "stream");
  expect_openai_error(completion(R"({"prompt": "Hi", "stop": ["a", "b", "c", "d", "e"]})"), 400, "stop");
  expect_openai_error(completion(R"({"prompt": "Hi", "stop": [""]})"), 400, "stop");
  expect_openai_error(completion(R"({"prompt": "Hi", "logprobs": 9})"), 400, "logprobs");
  expect_openai_error(completion(R"({"prompt": "Hi", "logit_bias": {"99999": 1}})"), 400, "logit_bias");
  expect_openai_error(completion(R"({"prompt": "Hi", "frobnicate": true})"), 400, "frobnicate");
  expect_openai_error(completion(R"({"prompt": [1, -5]})"), 400, "prompt");
  expect_openai_error(completion(R"({"prompt": [1, 100000]})"), 400, "prompt");
  expect_openai_error(completion(R"({"prompt": {"text": "Hi"}})"), 400, "prompt");
  expect_openai_error(completion(R"({"prompt": "Hi", "echo": true})"), 400, "echo");
  expect_openai_error(completion(std::string(100000, '[') + std::string(100000, ']')), 400);
  expect_openai_error(completion(R"({"prompt": ["a", "b", "c", "d", "e"], "n": 16})"), 400, "n");
  expect_openai_error(completion("{\"prompt\": \"\xff\xfe\"}"), 400);
  expect_openai_error(completion(R"({"prompt": "Hi", "stream_options": {"include_usage": true}})"), 400);
  expect_openai_error(chat(R"({"messages": []})"), 400, "messages");
  expect_openai_error(chat(R"({"messages": "Hi"})"), 400, "messages");
  expect_openai_error(chat(R"({"messages": [{"role": "robot", "content": "Hi"}]})"), 400);
  expect_openai_error(chat(R"({"messages": [{"role": "user", "content": 5}]})"), 400);
  expect_openai_error(chat(R"({"messages": [{"role": "user", "content": "Hi", "mood": "happy"}]})"), 400);
  expect_openai_error(chat(R"({"messages": [{"role": "user", "content": "Hi", "name": {"a": [1]}}]})"), 400);
  expect_openai_error(chat(R"({"prompt": "Hi"})"), 400, "prompt");
  expect_openai_error(chat(R"({"messages": [{"role": "user", "content": "Hi"}], "top_logprobs": 2})"), 400);
  // the Llama default template's own check
  expect_openai_error(chat(R"({"messages": [{"role": "assistant", "content": "Hi"}]})"), 400, "messages");
  // context: 2048 positions
  ServerOptions wide;
  wide.max_tokens = 4096;
  auto server2 = start_server(wide);
  Reply too_long = post(server2->port(), "/v1/completions", R"({"prompt": "Hi", "max_tokens": 4000})");
  expect_openai_error(too_long, 400, "max_tokens");
  EXPECT_EQ(too_long.json_body()["error"]["code"], "context_length_exceeded");
  // Still serving after all that.
  EXPECT_EQ(completion(R"({"prompt": "Hi", "max_tokens": 3})").status, 200);
}

TEST(ServerSafety, OversizedBody413) {
  ServerOptions options;
  options.max_body_bytes = 2048;
  auto server = start_server(options);
  const std::string big = json({{"prompt", std::string(4096, 'a')}, {"max_tokens", 2}}).dump();
  expect_openai_error(post(server->port(), "/v1/completions", big), 413);
  EXPECT_EQ(post(server->port(), "/v1/completions", json({{"prompt", "Hi"}, {"max_tokens", 2}}).dump()).status, 200);
}

TEST(ServerConcurrency, SixteenClientsGetTheSequentialTexts) {
  ServerOptions options;
  options.max_batch = 8;
  auto server = start_server(options);
  const std::vector<std::string> starts = {"Once upon a time", "Lily", "The little dog ran", "One day, a boy named Tim",
                                           "Sue had a red ball", "The sun", "Max and Mia went to the park to play",
                                           "There was a big tree"};
  std::vector<json> requests;
  for (int i = 0; i < 16; ++i) {
    json r = {{"max_tokens", 20 + 3 * i}, {"temperature", 0}};
    if (i % 2 == 0) r["prompt"] = starts[i / 2];
    else r["messages"] = {{{"role", "user"}, {"content", starts[i / 2]}}};
    if (i % 4 == 3) r["stream"] = true;
    requests.push_back(r);
  }
  auto run = [&](int i) {
    const bool is_chat = requests[i].contains("messages");
    const std::string path = is_chat ? "/v1/chat/completions" : "/v1/completions";
    if (requests[i].value("stream", false)) return post_stream(server->port(), path, requests[i]).text[0];
    Reply r = post(server->port(), path, requests[i].dump());
    if (r.status != 200) return "HTTP " + std::to_string(r.status) + " " + r.body;
    json c = r.json_body()["choices"][0];
    return is_chat ? c["message"]["content"].get<std::string>() : c["text"].get<std::string>();
  };
  std::vector<std::string> sequential(16), concurrent(16);
  for (int i = 0; i < 16; ++i) sequential[i] = run(i);
  double steps_before = metric(get(server->port(), "/metrics").body, "tfcpp_decode_steps_total");
  double rows_before = metric(get(server->port(), "/metrics").body, "tfcpp_decode_rows_total");
  std::vector<std::thread> clients;
  for (int i = 0; i < 16; ++i) clients.emplace_back([&, i] { concurrent[i] = run(i); });
  for (auto& t : clients) t.join();
  for (int i = 0; i < 16; ++i) EXPECT_EQ(concurrent[i], sequential[i]) << "client " << i;
  // The sequential runs equal generate() (completions; chat is covered above).
  for (int i = 0; i < 16; i += 2) {
    std::vector<int64_t> ids = stories().tokenizer->encode(starts[i / 2]);
    EXPECT_EQ(sequential[i], completion_text(ids, reference(ids, 20 + 3 * i))) << "client " << i;
  }
  // The concurrent run did batch: more rows than forwards.
  std::string m = get(server->port(), "/metrics").body;
  double steps = metric(m, "tfcpp_decode_steps_total") - steps_before;
  double rows = metric(m, "tfcpp_decode_rows_total") - rows_before;
  EXPECT_GT(rows, 1.5 * steps) << "rows " << rows << " steps " << steps;
  EXPECT_EQ(metric(m, "tfcpp_active_requests"), 0);
}

TEST(ServerConcurrency, UnbatchedModeGivesTheSameTexts) {
  ServerOptions options;
  options.batched_decode = false;
  auto server = start_server(options);
  std::vector<std::string> prompts = {"Once upon a time", "Tom had a", "The bird"}, texts(3);
  std::vector<std::thread> clients;
  for (int i = 0; i < 3; ++i)
    clients.emplace_back([&, i] {
      Reply r = post(server->port(), "/v1/completions",
                     json({{"prompt", prompts[i]}, {"max_tokens", 24}, {"temperature", 0}}).dump());
      texts[i] = r.status == 200 ? r.json_body()["choices"][0]["text"].get<std::string>() : r.body;
    });
  for (auto& t : clients) t.join();
  for (int i = 0; i < 3; ++i) {
    std::vector<int64_t> ids = stories().tokenizer->encode(prompts[i]);
    EXPECT_EQ(texts[i], completion_text(ids, reference(ids, 24)));
  }
}

TEST(ServerConcurrency, FullQueueAnswers429) {
  ServerOptions options;
  options.max_batch = 1;
  options.max_queue = 1;
  auto server = start_server(options);
  std::vector<Reply> replies(8);
  std::vector<std::thread> clients;
  for (int i = 0; i < 8; ++i)
    clients.emplace_back([&, i] {
      replies[i] = post(server->port(), "/v1/completions",
                        json({{"prompt", "Once upon a time"}, {"max_tokens", 1000}, {"temperature", 0},
                              {"logit_bias", {{"2", -100}}}})  // no </s>: each runs its 1000 tokens
                            .dump());
    });
  for (auto& t : clients) t.join();
  int ok = 0, busy = 0;
  for (const auto& r : replies) {
    if (r.status == 200) ++ok;
    if (r.status == 429) {
      ++busy;
      expect_openai_error(r, 429);
    }
  }
  EXPECT_EQ(ok + busy, 8);
  EXPECT_GE(ok, 1);
  EXPECT_GE(busy, 1);
  std::string m = get(server->port(), "/metrics").body;
  for (int i = 0; i < 200 && metric(m, "tfcpp_requests_total{status=\"429\"}") < busy; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    m = get(server->port(), "/metrics").body;
  }
  EXPECT_EQ(metric(m, "tfcpp_requests_total{status=\"429\"}"), busy);
}

TEST(ServerConcurrency, ClientClosingTheStreamCancelsTheRequest) {
  auto server = start_server();
  const int port = server->port();
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const std::string body =
      json({{"prompt", "Once upon a time"}, {"max_tokens", 2000}, {"temperature", 0}, {"stream", true},
            {"logit_bias", {{"2", -100}}}})  // no </s>: it runs until cancelled
          .dump();
  const std::string request = "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                              "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  ASSERT_EQ(send(fd, request.data(), request.size(), 0), static_cast<ssize_t>(request.size()));
  std::string received;
  char buffer[4096];
  while (received.find("\"text\"") == std::string::npos) {
    ssize_t n = recv(fd, buffer, sizeof buffer, 0);
    ASSERT_GT(n, 0);
    received.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  // The slot is freed long before 2000 tokens.
  std::string m;
  for (int i = 0; i < 500; ++i) {
    m = get(port, "/metrics").body;
    if (metric(m, "tfcpp_active_requests") == 0 && metric(m, "tfcpp_requests_cancelled_total") == 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(metric(m, "tfcpp_active_requests"), 0) << m;
  EXPECT_EQ(metric(m, "tfcpp_requests_cancelled_total"), 1) << m;
  EXPECT_LT(metric(m, "tfcpp_generated_tokens_total"), 2000) << m;
  // And the server still answers.
  EXPECT_EQ(post(port, "/v1/completions", json({{"prompt", "Hi"}, {"max_tokens", 3}}).dump()).status, 200);
}
