// `tfcpp serve`: the OpenAI-compatible HTTP layer (cpp-httplib) over the continuous-batching engine (engine.h).
// Request fields follow the OpenAI API reference (completions and chat completions) and map onto generate()'s
// GenerationConfig and logits processors; every malformed request gets an OpenAI error object, never a crash.
#include "pch.h"

// Debian's libcpp-httplib is built with these: the header must see the same ones.
#define CPPHTTPLIB_OPENSSL_SUPPORT
#define CPPHTTPLIB_ZLIB_SUPPORT
#define CPPHTTPLIB_BROTLI_SUPPORT
#include <httplib.h>

#include "server/engine.h"
#include "transformers/chat_template.h"
#include "transformers/errors.h"
#include "transformers/server.h"

#include <csignal>
#include <ctime>
#include <filesystem>
#include <random>

namespace transformers {

using server::ChoiceState;
using server::Engine;
using server::Event;
using server::Job;
using server::SamplingParams;
using server::TokenLogprob;

namespace {

// An answer other than 200, as OpenAI's error object.
struct ApiError {
  int status = 400;
  std::string message, type = "invalid_request_error", param, code;
};

// Model output may hold invalid UTF-8 (a byte-level token cut mid-character): replaced, never an exception.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

json error_body(const ApiError& e) {
  return {{"error",
           {{"message", e.message},
            {"type", e.type},
            {"param", e.param.empty() ? json(nullptr) : json(e.param)},
            {"code", e.code.empty() ? json(nullptr) : json(e.code)}}}};
}

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  res.set_content(dump(error_body(e)), "application/json");
}

ApiError bad_request(const std::string& message, const std::string& param = "", const std::string& code = "") {
  return ApiError{400, message, "invalid_request_error", param, code};
}

// transformers 4.40's default_chat_template for tokenizers without one: LlamaTokenizer's (use_default_system_prompt
// off), else PreTrainedTokenizerBase's ChatML.
const char* kLlamaDefaultTemplate =
    R"TPL({% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\n' + system_message + '\n<</SYS>>\n\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'system' %}{{ '<<SYS>>\n' + content.strip() + '\n<</SYS>>\n\n' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %})TPL";
const char* kChatMLTemplate =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + "
    "'\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

std::string random_id(const std::string& prefix) {
  static std::mutex mu;
  static std::mt19937_64 rng{std::random_device{}()};
  std::lock_guard<std::mutex> lock(mu);
  static const char* digits = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::string id = prefix;
  for (int i = 0; i < 24; ++i) id += digits[rng() % 36];
  return id;
}

bool constant_time_equal(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

size_t utf8_length(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// Typed accessors over a request body: a present value of the wrong type or out of range is a 400 naming the field.
class Body {
 public:
  explicit Body(const json& body) : body_(body) {}
  bool has(const char* key) const { return body_.contains(key) && !body_.at(key).is_null(); }
  const json& at(const char* key) const { return body_.at(key); }
  std::optional<double> number(const char* key, double lo, double hi) const {
    if (!has(key)) return std::nullopt;
    const json& v = body_.at(key);
    if (!v.is_number()) throw bad_request("'" + std::string(key) + "' must be a number", key);
    double x = v.get<double>();
    if (!(x >= lo && x <= hi))
      throw bad_request("'" + std::string(key) + "' must be between " + fmt(lo) + " and " + fmt(hi) + ", got " +
                            v.dump(),
                        key);
    return x;
  }
  std::optional<int64_t> integer(const char* key, int64_t lo, int64_t hi) const {
    if (!has(key)) return std::nullopt;
    const json& v = body_.at(key);
    if (!v.is_number_integer()) throw bad_request("'" + std::string(key) + "' must be an integer", key);
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
      throw bad_request("'" + std::string(key) + "' is too large", key);
    int64_t x = v.get<int64_t>();
    if (x < lo || x > hi)
      throw bad_request("'" + std::string(key) + "' must be between " + std::to_string(lo) + " and " +
                            std::to_string(hi) + ", got " + v.dump(),
                        key);
    return x;
  }
  std::optional<bool> boolean(const char* key) const {
    if (!has(key)) return std::nullopt;
    if (!body_.at(key).is_boolean()) throw bad_request("'" + std::string(key) + "' must be a boolean", key);
    return body_.at(key).get<bool>();
  }
  std::optional<std::string> string(const char* key) const {
    if (!has(key)) return std::nullopt;
    if (!body_.at(key).is_string()) throw bad_request("'" + std::string(key) + "' must be a string", key);
    return body_.at(key).get<std::string>();
  }

 private:
  static std::string fmt(double x) {
    std::ostringstream o;
    o << x;
    return o.str();
  }
  const json& body_;
};

enum class Endpoint { kCompletions, kChat };

json usage_json(int64_t prompt_tokens, int64_t completion_tokens) {
  return {{"prompt_tokens", prompt_tokens},
          {"completion_tokens", completion_tokens},
          {"total_tokens", prompt_tokens + completion_tokens}};
}

json bytes_of(const std::string& s) {
  json b = json::array();
  for (unsigned char c : s) b.push_back(static_cast<int>(c));
  return b;
}

// Logprobs in the endpoint's shape. `offset`: characters of the completion before these tokens (completions'
// text_offset).
json logprobs_json(Endpoint endpoint, const std::vector<TokenLogprob>& lps, size_t offset) {
  if (endpoint == Endpoint::kChat) {
    json content = json::array();
    for (const auto& t : lps) {
      json top = json::array();
      for (const auto& [token, lp] : t.top) top.push_back({{"token", token}, {"logprob", lp}, {"bytes", bytes_of(token)}});
      content.push_back({{"token", t.token}, {"logprob", t.logprob}, {"bytes", bytes_of(t.token)}, {"top_logprobs", top}});
    }
    return {{"content", content}};
  }
  json tokens = json::array(), token_logprobs = json::array(), top_logprobs = json::array(), text_offset = json::array();
  for (const auto& t : lps) {
    tokens.push_back(t.token);
    token_logprobs.push_back(t.logprob);
    json top = json::object();
    for (const auto& [token, lp] : t.top)
      if (!top.contains(token)) top[token] = lp;
    top_logprobs.push_back(top);
    text_offset.push_back(offset);
    offset += utf8_length(t.token);
  }
  return {{"tokens", tokens}, {"token_logprobs", token_logprobs}, {"top_logprobs", top_logprobs},
          {"text_offset", text_offset}};
}

}  // namespace

struct Server::Impl {
  std::shared_ptr<PreTrainedModel> model;
  std::shared_ptr<const Tokenizer> tokenizer;
  ServerOptions options;
  std::string chat_template;  // used when the tokenizer has none
  int64_t max_positions = 0, vocab_size = 0;
  std::time_t created = std::time(nullptr);

  std::unique_ptr<Engine> engine;
  httplib::Server http;
  std::thread listener;
  int bound_port = -1;

  std::mutex mu;
  std::condition_variable stopped_cv;
  bool started = false, stopped = false;
  std::map<int, int64_t> requests_by_status;
  int64_t cancelled_total = 0;

  void routes();
  void completions(const httplib::Request& req, httplib::Response& res, Endpoint endpoint);
  std::shared_ptr<Job> parse(const json& body, Endpoint endpoint, int64_t& prompt_tokens, bool& stream,
                             bool& include_usage);
  std::vector<int64_t> chat_prompt(const json& messages);
  std::string metrics();
};

Server::Server(std::shared_ptr<PreTrainedModel> model, std::shared_ptr<const Tokenizer> tokenizer,
               ServerOptions options, const std::string& model_dir)
    : impl_(std::make_unique<Impl>()) {
  if (!model) throw ValueError("Server: no model");
  if (!tokenizer) throw ValueError("Server: no tokenizer");
  if (model->config && model->config->is_encoder_decoder)
    throw ValueError(model->class_name + " is an encoder-decoder model: `tfcpp serve` serves decoder-only causal LMs");
  if (!model->can_generate()) throw ValueError(model->class_name + " cannot generate: serve a *ForCausalLM model");
  if (options.max_batch < 1) throw ValueError("--max-batch must be at least 1");
  if (options.max_queue < 0) throw ValueError("--max-queue must be at least 0");
  if (options.max_tokens < 1) throw ValueError("--max-tokens must be at least 1");
  Impl& d = *impl_;
  d.model = std::move(model);
  d.tokenizer = std::move(tokenizer);
  if (options.model_id.empty()) {
    std::string name = std::filesystem::path(model_dir).filename().string();
    if (name.empty()) name = std::filesystem::path(model_dir).parent_path().filename().string();
    options.model_id = name.empty() ? d.model->class_name : name;
  }
  d.options = std::move(options);
  if (d.model->config) {
    json value = d.model->config->get("max_position_embeddings");
    if (value.is_number_integer()) d.max_positions = value.get<int64_t>();
    value = d.model->config->get("vocab_size");
    if (value.is_number_integer()) d.vocab_size = value.get<int64_t>();
  }
  const json& tc = d.tokenizer->tokenizer_config();
  if (!tc.contains("chat_template") || tc["chat_template"].is_null()) {
    if (!d.options.chat_template.empty()) d.chat_template = d.options.chat_template;
    else if (tc.value("tokenizer_class", "").find("Llama") != std::string::npos) d.chat_template = kLlamaDefaultTemplate;
    else d.chat_template = kChatMLTemplate;
  }
}

Server::~Server() { stop(); }

const ServerOptions& Server::options() const { return impl_->options; }
int Server::port() const { return impl_->bound_port; }

void Server::start() {
  Impl& d = *impl_;
  {
    std::lock_guard<std::mutex> lock(d.mu);
    if (d.started) throw ValueError("Server::start: already started");
    d.started = true;
  }
  // A client that goes away mid-stream must not kill the process with SIGPIPE.
  struct sigaction current {};
  if (sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) std::signal(SIGPIPE, SIG_IGN);

  server::EngineOptions eo;
  eo.max_batch = d.options.max_batch;
  eo.max_queue = d.options.max_queue;
  eo.batched_decode = d.options.batched_decode;
  d.engine = std::make_unique<Engine>(d.model, d.tokenizer, eo);

  size_t threads = d.options.http_threads > 0
                       ? static_cast<size_t>(d.options.http_threads)
                       : static_cast<size_t>(d.options.max_batch + d.options.max_queue + 4);
  d.http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  d.http.set_payload_max_length(d.options.max_body_bytes);
  // httplib's default adds SO_REUSEPORT, which lets a second server share (and steal from) a port in use.
  d.http.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  d.routes();
  if (d.options.port == 0) {
    d.bound_port = d.http.bind_to_any_port(d.options.host);
  } else if (d.http.bind_to_port(d.options.host, d.options.port)) {
    d.bound_port = d.options.port;
  }
  if (d.bound_port <= 0) {
    d.engine->stop();
    throw Error("cannot listen on " + d.options.host + ":" + std::to_string(d.options.port) +
                " (address in use, or not an address of this machine)");
  }
  d.listener = std::thread([&d] { d.http.listen_after_bind(); });
  while (!d.http.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

void Server::stop() {
  Impl& d = *impl_;
  {
    std::lock_guard<std::mutex> lock(d.mu);
    if (!d.started || d.stopped) return;
    d.stopped = true;
  }
  // Fail what is running first so that waiting handlers return, then stop the HTTP threads.
  d.engine->stop("server shutting down");
  d.http.stop();
  if (d.listener.joinable()) d.listener.join();
  d.stopped_cv.notify_all();
}

void Server::wait() {
  Impl& d = *impl_;
  std::unique_lock<std::mutex> lock(d.mu);
  d.stopped_cv.wait(lock, [&d] { return d.stopped; });
}

void Server::Impl::routes() {
  http.set_logger([this](const httplib::Request&, const httplib::Response& res) {
    std::lock_guard<std::mutex> lock(mu);
    ++requests_by_status[res.status];
  });
  http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (options.api_key.empty() || req.path == "/health") return httplib::Server::HandlerResponse::Unhandled;
    const std::string auth = req.get_header_value("Authorization");
    const std::string prefix = "Bearer ";
    if (auth.compare(0, prefix.size(), prefix) == 0 && constant_time_equal(auth.substr(prefix.size()), options.api_key))
      return httplib::Server::HandlerResponse::Unhandled;
    send_error(res, ApiError{401, "Incorrect API key provided: pass it as 'Authorization: Bearer <key>'",
                             "invalid_request_error", "", "invalid_api_key"});
    return httplib::Server::HandlerResponse::Handled;
  });
  // Errors httplib answers itself (unknown route, body too large, bad request line) get an OpenAI error body too.
  http.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    ApiError e;
    e.status = res.status;
    if (res.status == 404) {
      e.message = "Unknown request URL: " + req.method + " " + req.path;
      e.code = "unknown_url";
    } else if (res.status == 413) {
      e.message = "Request body too large";
      e.code = "request_too_large";
    } else {
      e.message = "HTTP " + std::to_string(res.status) + ": the request could not be processed";
    }
    send_error(res, e);
    return httplib::Server::HandlerResponse::Handled;
  }));
  http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "internal error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_error(res, ApiError{500, what, "server_error", "", ""});
  });

  http.Get("/health", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"status":"ok"})", "application/json");
  });
  http.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    json model_entry = {{"id", options.model_id}, {"object", "model"}, {"created", created}, {"owned_by", "tfcpp"}};
    res.set_content(dump(json({{"object", "list"}, {"data", json::array({model_entry})}})), "application/json");
  });
  http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics(), "text/plain; version=0.0.4");
  });
  http.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
    completions(req, res, Endpoint::kCompletions);
  });
  http.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
    completions(req, res, Endpoint::kChat);
  });
}

std::string Server::Impl::metrics() {
  server::EngineStats s = engine->stats();
  std::ostringstream o;
  o << "# HELP tfcpp_requests_total HTTP requests answered, by status code.\n# TYPE tfcpp_requests_total counter\n";
  {
    std::lock_guard<std::mutex> lock(mu);
    for (const auto& [status, n] : requests_by_status) o << "tfcpp_requests_total{status=\"" << status << "\"} " << n << "\n";
    o << "# HELP tfcpp_requests_cancelled_total Streamed requests whose client went away before the end.\n"
         "# TYPE tfcpp_requests_cancelled_total counter\ntfcpp_requests_cancelled_total "
      << cancelled_total << "\n";
  }
  o << "# HELP tfcpp_generated_tokens_total Tokens generated.\n# TYPE tfcpp_generated_tokens_total counter\n"
    << "tfcpp_generated_tokens_total " << s.generated_tokens_total << "\n"
    << "# HELP tfcpp_prompt_tokens_total Prompt tokens prefilled.\n# TYPE tfcpp_prompt_tokens_total counter\n"
    << "tfcpp_prompt_tokens_total " << s.prompt_tokens_total << "\n"
    << "# HELP tfcpp_tokens_per_second Generated tokens per second over the last 10 s.\n"
    << "# TYPE tfcpp_tokens_per_second gauge\ntfcpp_tokens_per_second " << s.tokens_per_second << "\n"
    << "# HELP tfcpp_queue_depth Requests waiting for a batch slot.\n# TYPE tfcpp_queue_depth gauge\n"
    << "tfcpp_queue_depth " << s.queue_depth << "\n"
    << "# HELP tfcpp_active_requests Requests being generated.\n# TYPE tfcpp_active_requests gauge\n"
    << "tfcpp_active_requests " << s.active_requests << "\n"
    << "# HELP tfcpp_active_sequences Sequences (choices) in the decode batch.\n# TYPE tfcpp_active_sequences gauge\n"
    << "tfcpp_active_sequences " << s.active_sequences << "\n"
    << "# HELP tfcpp_decode_steps_total Decode forwards run.\n# TYPE tfcpp_decode_steps_total counter\n"
    << "tfcpp_decode_steps_total " << s.decode_steps_total << "\n"
    << "# HELP tfcpp_decode_rows_total Sequences stepped by those forwards (rows / steps = mean batch size).\n"
    << "# TYPE tfcpp_decode_rows_total counter\ntfcpp_decode_rows_total " << s.batched_rows_total << "\n";
  return o.str();
}

std::vector<int64_t> Server::Impl::chat_prompt(const json& messages) {
  if (!messages.is_array() || messages.empty()) throw bad_request("'messages' must be a non-empty array", "messages");
  json conversation = json::array();
  for (size_t i = 0; i < messages.size(); ++i) {
    const json& m = messages[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) throw bad_request(where + " must be an object", where);
    for (const auto& [key, value] : m.items())
      if (key != "role" && key != "content" && key != "name" && key != "tool_call_id")
        throw bad_request(where + ": unknown field '" + key + "'", where + "." + key);
    if (!m.contains("role") || !m["role"].is_string())
      throw bad_request(where + ".role must be a string", where + ".role");
    const std::string role = m["role"].get<std::string>();
    if (role != "system" && role != "user" && role != "assistant" && role != "tool" && role != "developer")
      throw bad_request(where + ".role must be system, user, assistant, tool or developer, got '" + role + "'",
                        where + ".role");
    std::string content;
    const json& c = m.contains("content") ? m["content"] : json(nullptr);
    if (c.is_string()) {
      content = c.get<std::string>();
    } else if (c.is_array()) {
      for (const auto& part : c) {
        if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part["text"].is_string())
          throw bad_request(where + ".content: only parts {\"type\": \"text\", \"text\": ...} are supported",
                            where + ".content");
        content += part["text"].get<std::string>();
      }
    } else if (!(c.is_null() && role == "assistant")) {
      throw bad_request(where + ".content must be a string or an array of text parts", where + ".content");
    }
    json entry = {{"role", role}, {"content", content}};
    if (m.contains("name")) {
      if (!m["name"].is_string()) throw bad_request(where + ".name must be a string", where + ".name");
      entry["name"] = m["name"];
    }
    conversation.push_back(entry);
  }
  std::string prompt;
  try {
    if (chat_template.empty()) {
      prompt = tokenizer->apply_chat_template(conversation, /*add_generation_prompt=*/true);
    } else {
      // As Tokenizer::apply_chat_template, with the fallback template.
      json context = {{"messages", conversation}, {"add_generation_prompt", true}};
      const SpecialTokensMap& sp = tokenizer->special_tokens();
      const std::pair<const char*, const std::optional<std::string>*> specials[] = {
          {"bos_token", &sp.bos_token}, {"eos_token", &sp.eos_token}, {"unk_token", &sp.unk_token},
          {"pad_token", &sp.pad_token}, {"sep_token", &sp.sep_token}, {"cls_token", &sp.cls_token},
          {"mask_token", &sp.mask_token}};
      for (const auto& [name, value] : specials)
        if (*value) context[name] = **value;
      prompt = render_chat_template(chat_template, context);
    }
  } catch (const ChatTemplateError& e) {
    throw bad_request(std::string("chat template: ") + e.what(), "messages");
  }
  return tokenizer->encode(prompt, /*add_special_tokens=*/false);
}

std::shared_ptr<Job> Server::Impl::parse(const json& body, Endpoint endpoint, int64_t& prompt_tokens, bool& stream,
                                         bool& include_usage) {
  if (!body.is_object()) throw bad_request("the request body must be a JSON object");
  static const std::vector<std::string> common = {
      "model", "max_tokens", "temperature", "top_p", "n", "stream", "stream_options", "stop", "presence_penalty",
      "frequency_penalty", "logit_bias", "logprobs", "user", "seed", "top_k", "repetition_penalty"};
  static const std::vector<std::string> completion_only = {"prompt", "echo", "best_of", "suffix"};
  static const std::vector<std::string> chat_only = {"messages", "top_logprobs", "max_completion_tokens"};
  const auto& own = endpoint == Endpoint::kChat ? chat_only : completion_only;
  for (const auto& [key, value] : body.items())
    if (std::find(common.begin(), common.end(), key) == common.end() &&
        std::find(own.begin(), own.end(), key) == own.end())
      throw bad_request("Unrecognized request argument supplied: " + key, key);
  Body b(body);
  b.string("model");  // one model per server: any name is accepted
  b.string("user");

  // Prompts.
  std::vector<std::vector<int64_t>> prompts;
  auto check_ids = [this](const json& ids, const std::string& param) {
    std::vector<int64_t> out;
    for (const auto& id : ids) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || (vocab_size > 0 && id.get<int64_t>() >= vocab_size))
        throw bad_request(param + ": token ids must be integers in [0, " + std::to_string(vocab_size) + ")", param);
      out.push_back(id.get<int64_t>());
    }
    if (out.empty()) throw bad_request(param + " is empty", param);
    return out;
  };
  if (endpoint == Endpoint::kChat) {
    if (!body.contains("messages")) throw bad_request("'messages' is a required property", "messages");
    prompts.push_back(chat_prompt(body["messages"]));
  } else {
    if (!body.contains("prompt")) throw bad_request("'prompt' is a required property", "prompt");
    const json& p = body["prompt"];
    if (p.is_string()) {
      prompts.push_back(tokenizer->encode(p.get<std::string>()));
    } else if (p.is_array() && !p.empty() && p[0].is_number_integer()) {
      prompts.push_back(check_ids(p, "prompt"));
    } else if (p.is_array() && !p.empty()) {
      if (p.size() > 64) throw bad_request("at most 64 prompts per request", "prompt");
      for (const auto& item : p) {
        if (item.is_string()) prompts.push_back(tokenizer->encode(item.get<std::string>()));
        else if (item.is_array()) prompts.push_back(check_ids(item, "prompt"));
        else throw bad_request("'prompt' must be a string, an array of strings or of token id arrays", "prompt");
      }
    } else {
      throw bad_request("'prompt' must be a string, an array of strings, a token id array or an array of them",
                        "prompt");
    }
    if (b.boolean("echo").value_or(false)) throw bad_request("'echo' is not supported", "echo");
    if (auto best_of = b.integer("best_of", 1, 1); best_of && *best_of != 1)
      throw bad_request("'best_of' other than 1 is not supported", "best_of");
    if (auto suffix = b.string("suffix"); suffix && !suffix->empty())
      throw bad_request("'suffix' is not supported", "suffix");
  }
  for (const auto& p : prompts)
    if (p.empty()) throw bad_request("the prompt encodes to no tokens", "prompt");

  auto job = std::make_shared<Job>();
  SamplingParams& sp = job->params;
  GenerationConfig& config = sp.config;
  config = model->generation_config;
  config.num_beams = 1;
  config.num_beam_groups = 1;
  config.penalty_alpha.reset();
  config.num_return_sequences = 1;
  config.stop_strings = nullptr;
  config.max_time.reset();

  // max_tokens: bounded by the server and by the context.
  std::optional<int64_t> max_tokens = b.integer("max_tokens", 1, INT64_MAX);
  if (endpoint == Endpoint::kChat && !max_tokens) max_tokens = b.integer("max_completion_tokens", 1, INT64_MAX);
  if (max_tokens && *max_tokens > options.max_tokens)
    throw bad_request("max_tokens is " + std::to_string(*max_tokens) + ", above this server's limit of " +
                          std::to_string(options.max_tokens),
                      "max_tokens");
  int64_t longest = 0;
  prompt_tokens = 0;
  for (const auto& p : prompts) {
    longest = std::max<int64_t>(longest, static_cast<int64_t>(p.size()));
    prompt_tokens += static_cast<int64_t>(p.size());
  }
  int64_t room = max_positions > 0 ? max_positions - longest : options.max_tokens;
  if (room < 1)
    throw bad_request("This model's maximum context length is " + std::to_string(max_positions) +
                          " tokens; the prompt has " + std::to_string(longest),
                      "messages", "context_length_exceeded");
  int64_t wanted = max_tokens.value_or(endpoint == Endpoint::kChat ? std::min(options.max_tokens, room)
                                                                   : std::min(options.default_max_tokens, room));
  if (wanted > room)
    throw bad_request("This model's maximum context length is " + std::to_string(max_positions) + " tokens. However, " +
                          "you requested " + std::to_string(longest + wanted) + " tokens (" + std::to_string(longest) +
                          " in the prompt, " + std::to_string(wanted) + " in the completion)",
                      "max_tokens", "context_length_exceeded");
  config.max_new_tokens = wanted;

  // Sampling: temperature 0 is greedy; a temperature or top_p < 1 samples; neither keeps generation_config.json's.
  std::optional<double> temperature = b.number("temperature", 0.0, 2.0);
  std::optional<double> top_p = b.number("top_p", 0.0, 1.0);
  if (top_p && *top_p <= 0.0) throw bad_request("'top_p' must be greater than 0", "top_p");
  if (temperature) {
    if (*temperature == 0.0) {
      config.do_sample = false;
    } else {
      config.do_sample = true;
      config.temperature = *temperature;
    }
  } else if (top_p && *top_p < 1.0) {
    config.do_sample = true;
  }
  if (top_p) config.top_p = *top_p;
  if (auto top_k = b.integer("top_k", 0, INT32_MAX)) config.top_k = *top_k;
  if (auto rp = b.number("repetition_penalty", 1e-6, 100.0)) config.repetition_penalty = *rp;
  if (auto seed = b.integer("seed", 0, INT64_MAX)) sp.seed = static_cast<uint64_t>(*seed);
  sp.presence_penalty = b.number("presence_penalty", -2.0, 2.0).value_or(0.0);
  sp.frequency_penalty = b.number("frequency_penalty", -2.0, 2.0).value_or(0.0);
  if (b.has("logit_bias")) {
    const json& bias = body["logit_bias"];
    if (!bias.is_object()) throw bad_request("'logit_bias' must be an object {token id: bias}", "logit_bias");
    for (const auto& [key, value] : bias.items()) {
      size_t used = 0;
      long long id = -1;
      try {
        id = std::stoll(key, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != key.size() || id < 0 || (vocab_size > 0 && id >= vocab_size))
        throw bad_request("logit_bias: '" + key + "' is not a token id of this model", "logit_bias");
      if (!value.is_number() || value.get<double>() < -100.0 || value.get<double>() > 100.0)
        throw bad_request("logit_bias: values must be numbers between -100 and 100", "logit_bias");
      sp.logit_bias.emplace_back(static_cast<int64_t>(id), value.get<double>());
    }
  }
  if (b.has("stop")) {
    const json& stop = body["stop"];
    if (stop.is_string()) {
      sp.stop.push_back(stop.get<std::string>());
    } else if (stop.is_array() && stop.size() <= 4) {
      for (const auto& s : stop) {
        if (!s.is_string()) throw bad_request("'stop' must be a string or an array of up to 4 strings", "stop");
        sp.stop.push_back(s.get<std::string>());
      }
    } else {
      throw bad_request("'stop' must be a string or an array of up to 4 strings", "stop");
    }
    for (const auto& s : sp.stop)
      if (s.empty()) throw bad_request("'stop' strings must not be empty", "stop");
  }
  if (endpoint == Endpoint::kChat) {
    bool logprobs = b.boolean("logprobs").value_or(false);
    std::optional<int64_t> top = b.integer("top_logprobs", 0, 20);
    if (top && !logprobs) throw bad_request("'top_logprobs' needs 'logprobs': true", "top_logprobs");
    if (logprobs) sp.top_logprobs = static_cast<int>(top.value_or(0));
  } else if (auto lp = b.integer("logprobs", 0, 5)) {
    sp.top_logprobs = static_cast<int>(*lp);
  }
  int64_t n = b.integer("n", 1, options.max_n).value_or(1);
  stream = b.boolean("stream").value_or(false);
  include_usage = false;
  if (b.has("stream_options")) {
    const json& so = body["stream_options"];
    if (!stream) throw bad_request("'stream_options' is only allowed with 'stream': true", "stream_options");
    if (!so.is_object()) throw bad_request("'stream_options' must be an object", "stream_options");
    for (const auto& [key, value] : so.items()) {
      if (key != "include_usage") throw bad_request("stream_options: unknown field '" + key + "'", "stream_options");
      if (!value.is_boolean()) throw bad_request("stream_options.include_usage must be a boolean", "stream_options");
      include_usage = value.get<bool>();
    }
  }
  try {
    config.validate();
  } catch (const GenerationError& e) {
    throw bad_request(e.what());
  }
  if (static_cast<int64_t>(prompts.size()) * n > 64)
    throw bad_request("at most 64 sequences (prompts × n) per request", "n");
  for (const auto& p : prompts)
    for (int64_t i = 0; i < n; ++i) job->prompts.push_back(p);
  job->stream = stream;
  return job;
}

void Server::Impl::completions(const httplib::Request& req, httplib::Response& res, Endpoint endpoint) {
  std::shared_ptr<Job> job;
  int64_t prompt_tokens = 0;
  bool stream = false, include_usage = false;
  try {
    json body;
    bool too_deep = false;
    const json::parser_callback_t limit_depth = [&too_deep](int depth, json::parse_event_t event, json&) {
      if (depth > 32 && (event == json::parse_event_t::object_start || event == json::parse_event_t::array_start))
        too_deep = true;
      return !too_deep;
    };
    try {
      body = json::parse(req.body, limit_depth);
    } catch (const json::exception& e) {  // parse_error, and out_of_range for numbers like 1e999
      throw bad_request(std::string("We could not parse the JSON body of your request: ") + e.what());
    }
    if (too_deep) throw bad_request("the JSON body is nested deeper than 32 levels");
    job = parse(body, endpoint, prompt_tokens, stream, include_usage);
  } catch (const ApiError& e) {
    return send_error(res, e);
  } catch (const Error& e) {  // e.g. a TokenizerError from an odd prompt
    return send_error(res, bad_request(e.what()));
  }
  if (!engine->submit(job))
    return send_error(res, ApiError{429, "The server is busy: the request queue is full, retry later",
                                    "rate_limit_error", "", "queue_full"});

  const bool chat = endpoint == Endpoint::kChat;
  const std::string id = random_id(chat ? "chatcmpl-" : "cmpl-");
  const std::string object = chat ? "chat.completion" : "text_completion";
  const std::time_t now = std::time(nullptr);
  const std::string model_id = options.model_id;

  if (!stream) {
    std::unique_lock<std::mutex> lock(job->mu);
    job->cv.wait(lock, [&] { return job->remaining == 0 || !job->error.empty(); });
    if (!job->error.empty()) {
      const bool shutting_down = job->error == "server shutting down";
      return send_error(res, ApiError{shutting_down ? 503 : 500, job->error, "server_error", "", ""});
    }
    json choices = json::array();
    int64_t completion_tokens = 0;
    for (size_t i = 0; i < job->choices.size(); ++i) {
      const ChoiceState& c = job->choices[i];
      completion_tokens += c.completion_tokens;
      json lp = job->params.top_logprobs >= 0 ? logprobs_json(endpoint, c.logprobs, 0) : json(nullptr);
      if (chat)
        choices.push_back({{"index", i},
                           {"message", {{"role", "assistant"}, {"content", c.text}}},
                           {"logprobs", lp},
                           {"finish_reason", c.finish_reason}});
      else
        choices.push_back({{"index", i}, {"text", c.text}, {"logprobs", lp}, {"finish_reason", c.finish_reason}});
    }
    json out = {{"id", id},          {"object", object},   {"created", now},
                {"model", model_id}, {"choices", choices}, {"usage", usage_json(prompt_tokens, completion_tokens)}};
    res.set_content(dump(out), "application/json");
    return;
  }

  // Server-sent events: one `data: {chunk}` per piece of text, then `data: [DONE]`.
  struct StreamState {
    bool started = false;
    std::vector<size_t> offsets;  // characters sent per choice (completions' text_offset)
    std::chrono::steady_clock::time_point last_write = std::chrono::steady_clock::now();
  };
  auto state = std::make_shared<StreamState>();
  state->offsets.assign(job->prompts.size(), 0);
  const std::string chunk_object = chat ? "chat.completion.chunk" : "text_completion";
  auto chunk = [=](json choice) {
    return "data: " +
           dump(json({{"id", id}, {"object", chunk_object}, {"created", now}, {"model", model_id},
                      {"choices", json::array({std::move(choice)})}})) +
           "\n\n";
  };
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  res.set_chunked_content_provider(
      "text/event-stream",
      [=](size_t, httplib::DataSink& sink) -> bool {
        auto write = [&sink, &state](const std::string& s) {
          state->last_write = std::chrono::steady_clock::now();
          return sink.write(s.data(), s.size());
        };
        if (!state->started) {
          state->started = true;
          if (chat)
            for (size_t i = 0; i < job->prompts.size(); ++i)
              if (!write(chunk({{"index", i}, {"delta", {{"role", "assistant"}, {"content", ""}}}, {"logprobs", nullptr},
                                {"finish_reason", nullptr}})))
                return false;
        }
        std::deque<Event> events;
        bool finished = false;
        std::string error;
        int64_t completion_tokens = 0;
        {
          std::unique_lock<std::mutex> lock(job->mu);
          job->cv.wait_for(lock, std::chrono::milliseconds(200),
                           [&] { return !job->events.empty() || job->remaining == 0 || !job->error.empty(); });
          events.swap(job->events);
          finished = job->remaining == 0;
          error = job->error;
          for (const auto& c : job->choices) completion_tokens += c.completion_tokens;
        }
        for (const Event& e : events) {
          json lp = job->params.top_logprobs >= 0 && !e.logprobs.empty()
                        ? logprobs_json(endpoint, e.logprobs, state->offsets[e.index])
                        : json(nullptr);
          for (const auto& t : e.logprobs) state->offsets[e.index] += utf8_length(t.token);
          if (!e.text.empty() || !lp.is_null()) {
            json choice = chat ? json{{"index", e.index}, {"delta", {{"content", e.text}}}}
                               : json{{"index", e.index}, {"text", e.text}};
            choice["logprobs"] = lp;
            choice["finish_reason"] = nullptr;
            if (!write(chunk(choice))) return false;
          }
          if (!e.finish_reason.empty()) {
            json choice = chat ? json{{"index", e.index}, {"delta", json::object()}}
                               : json{{"index", e.index}, {"text", ""}};
            choice["logprobs"] = nullptr;
            choice["finish_reason"] = e.finish_reason;
            if (!write(chunk(choice))) return false;
          }
        }
        if (!error.empty()) {
          ApiError e{500, error, "server_error", "", ""};
          if (!write("data: " + dump(error_body(e)) + "\n\n") || !write("data: [DONE]\n\n")) return false;
          sink.done();
          return true;
        }
        if (finished) {
          if (include_usage &&
              !write("data: " +
                     dump(json({{"id", id}, {"object", chunk_object}, {"created", now}, {"model", model_id},
                                {"choices", json::array()}, {"usage", usage_json(prompt_tokens, completion_tokens)}})) +
                     "\n\n"))
            return false;
          if (!write("data: [DONE]\n\n")) return false;
          sink.done();
          return true;
        }
        // Nothing new for a while (queued): an SSE comment finds out whether the client is still there.
        if (events.empty() && std::chrono::steady_clock::now() - state->last_write > std::chrono::seconds(1))
          return write(": keep-alive\n\n");
        return true;
      },
      [this, job](bool success) {
        bool unfinished;
        {
          std::lock_guard<std::mutex> lock(job->mu);
          unfinished = job->remaining > 0 && job->error.empty();
        }
        if (!success && unfinished) {
          job->cancelled = true;
          std::lock_guard<std::mutex> lock(mu);
          ++cancelled_total;
        }
      });
}

}  // namespace transformers
