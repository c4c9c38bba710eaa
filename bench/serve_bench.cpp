// tfcpp bench-serve: a load client for `tfcpp serve` (or for a server it starts in-process with --model): a fixed
// number of /v1/completions requests at a fixed concurrency, reporting generated tokens/s, requests/s and p50/p99
// latency (and time to first token when streaming), beside the same requests sent one at a time.
#include "cli/commands.h"

// Debian's libcpp-httplib is built with these: the header must see the same ones.
#define CPPHTTPLIB_OPENSSL_SUPPORT
#define CPPHTTPLIB_ZLIB_SUPPORT
#define CPPHTTPLIB_BROTLI_SUPPORT
#include <httplib.h>

#include "transformers/errors.h"
#include "transformers/server.h"
#include "transformers/tokenizer.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

namespace tfcpp {

using namespace transformers;

namespace {

using Clock = std::chrono::steady_clock;

struct ServeBenchFlags {
  std::string host = "127.0.0.1", api_key, prompt = "Once upon a time";
  int port = 8080, requests = 64, concurrency = 8, max_tokens = 64;
  bool stream = false, no_baseline = false, no_batch = false;
  int64_t max_batch = 8;
};

struct Sample {
  double latency_s = 0, ttft_s = 0;
  int64_t tokens = 0;
  bool ok = false;
};

Sample one_request(const ServeBenchFlags& f, int port, int index) {
  httplib::Client client(f.host, port);
  client.set_read_timeout(600);
  if (!f.api_key.empty()) client.set_bearer_token_auth(f.api_key);
  // Distinct prompts (a suffix per request) so no two requests are the same sequence.
  static const char* endings[] = {"", " there was", " a little", " in a big", " the sun", " Tom", " Lily", " one day"};
  json body = {{"prompt", f.prompt + endings[index % 8]}, {"max_tokens", f.max_tokens}, {"temperature", 0},
               {"logit_bias", {{"2", -100}}}};  // no early </s> in stories260K: every request makes max_tokens
  Sample s;
  auto start = Clock::now();
  if (!f.stream) {
    auto res = client.Post("/v1/completions", body.dump(), "application/json");
    s.latency_s = std::chrono::duration<double>(Clock::now() - start).count();
    if (!res || res->status != 200) return s;
    json out = json::parse(res->body, nullptr, false);
    if (out.is_discarded()) return s;
    s.tokens = out["usage"]["completion_tokens"].get<int64_t>();
    s.ttft_s = s.latency_s;
    s.ok = true;
    return s;
  }
  body["stream"] = true;
  body["stream_options"] = {{"include_usage", true}};
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  if (!f.api_key.empty()) req.set_header("Authorization", "Bearer " + f.api_key);
  std::string received;
  bool first = true;
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    if (first && std::string(data, n).find("\"text\"") != std::string::npos) {
      s.ttft_s = std::chrono::duration<double>(Clock::now() - start).count();
      first = false;
    }
    received.append(data, n);
    return true;
  };
  httplib::Response res;
  httplib::Error error;
  bool sent = client.send(req, res, error);
  s.latency_s = std::chrono::duration<double>(Clock::now() - start).count();
  if (!sent || res.status != 200) return s;
  size_t usage = received.rfind("\"usage\"");
  if (usage == std::string::npos) return s;
  size_t line = received.rfind("data: ", usage);
  json chunk = json::parse(received.substr(line + 6, received.find("\n\n", usage) - line - 6), nullptr, false);
  if (chunk.is_discarded()) return s;
  s.tokens = chunk["usage"]["completion_tokens"].get<int64_t>();
  s.ok = true;
  return s;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(std::min<double>(v.size() - 1, std::ceil(p / 100.0 * v.size()) - 1));
  return v[i];
}

void run_load(const ServeBenchFlags& f, int port, int requests, int concurrency, const char* label) {
  std::vector<Sample> samples(static_cast<size_t>(requests));
  std::atomic<int> next{0};
  auto start = Clock::now();
  std::vector<std::thread> workers;
  for (int w = 0; w < concurrency; ++w)
    workers.emplace_back([&] {
      for (int i = next++; i < requests; i = next++) samples[static_cast<size_t>(i)] = one_request(f, port, i);
    });
  for (auto& t : workers) t.join();
  double wall = std::chrono::duration<double>(Clock::now() - start).count();
  std::vector<double> latency, ttft;
  int64_t tokens = 0, failed = 0;
  for (const auto& s : samples) {
    if (!s.ok) {
      ++failed;
      continue;
    }
    latency.push_back(s.latency_s * 1e3);
    ttft.push_back(s.ttft_s * 1e3);
    tokens += s.tokens;
  }
  std::printf("| %-9s | %8d | %4d | %7lld | %6.2f | %8.1f | %6.2f | %8.1f | %8.1f |", label, requests, concurrency,
              static_cast<long long>(tokens), wall, tokens / wall, (requests - failed) / wall,
              percentile(latency, 50), percentile(latency, 99));
  if (f.stream) std::printf(" %8.1f | %8.1f |", percentile(ttft, 50), percentile(ttft, 99));
  std::printf(failed ? " %lld failed\n" : "\n", static_cast<long long>(failed));
  std::fflush(stdout);
}

int cmd_bench_serve(const LoadFlags& flags, const ServeBenchFlags& f) {
  std::unique_ptr<Server> server;
  int port = f.port;
  if (!flags.model.empty()) {
    setup_threads(flags.threads);
    auto model = flags.load("causal-lm");
    auto tokenizer = std::make_shared<const Tokenizer>(Tokenizer::from_pretrained(flags.model));
    ServerOptions options;
    options.port = 0;
    options.max_batch = f.max_batch;
    options.max_queue = std::max(f.requests, 64);
    options.max_tokens = std::max(f.max_tokens, 16);
    options.api_key = f.api_key;
    options.batched_decode = !f.no_batch;
    server = std::make_unique<Server>(model, tokenizer, options, flags.model);
    server->start();
    port = server->port();
    std::fprintf(stderr, "bench-serve: in-process server for %s on port %d, max batch %lld%s\n", flags.model.c_str(),
                 port, static_cast<long long>(f.max_batch), f.no_batch ? ", unbatched" : "");
  }
  std::printf("| run       | requests | conc |  tokens | wall s | tokens/s |  req/s |  p50 ms |  p99 ms |%s\n",
              f.stream ? " ttft p50 | ttft p99 |" : "");
  std::printf("|---|---|---|---|---|---|---|---|---|%s\n", f.stream ? "---|---|" : "");
  // Warm-up, then requests one at a time (the single-request decode rate), then the load.
  one_request(f, port, 0);
  if (!f.no_baseline) run_load(f, port, std::min(f.requests, 8), 1, "single");
  run_load(f, port, f.requests, f.concurrency, "load");
  if (server) server->stop();
  return 0;
}

std::function<int()> setup_bench_serve(CLI::App* cmd) {
  auto flags = std::make_shared<LoadFlags>();
  auto f = std::make_shared<ServeBenchFlags>();
  cmd->add_option("--model,-m", flags->model, "Start an in-process server for this model (else use --host/--port)");
  cmd->add_option("--threads,-t", flags->threads, "Threads of the in-process server");
  cmd->add_option("--host", f->host, "Server host (default 127.0.0.1)");
  cmd->add_option("--port", f->port, "Server port (default 8080)");
  cmd->add_option("--api-key", f->api_key, "Bearer token");
  cmd->add_option("-n,--requests", f->requests, "Requests in the load run (default 64)");
  cmd->add_option("-c,--concurrency", f->concurrency, "Concurrent clients (default 8)");
  cmd->add_option("--max-tokens", f->max_tokens, "max_tokens of each request (default 64)");
  cmd->add_option("--prompt", f->prompt, "Prompt (a different ending per request is appended)");
  cmd->add_option("--max-batch", f->max_batch, "--max-batch of the in-process server (default 8)");
  cmd->add_flag("--stream", f->stream, "Stream (SSE) and also report time to first token");
  cmd->add_flag("--no-baseline", f->no_baseline, "Skip the one-at-a-time run");
  cmd->add_flag("--no-batch", f->no_batch, "In-process server steps each request alone (serve --no-batch)");
  cmd->final_callback([flags] {
    if (!flags->model.empty()) flags->model = resolve_model_arg(flags->model, "");
  });
  return [flags, f] {
    if (f->requests < 1 || f->concurrency < 1 || f->max_tokens < 1)
      throw ValueError("bench-serve: --requests, --concurrency and --max-tokens must be at least 1");
    return cmd_bench_serve(*flags, *f);
  };
}

}  // namespace

TFCPP_CLI_COMMAND("bench-serve", "Load test an OpenAI-compatible server: tokens/s, p50/p99 latency", setup_bench_serve);

}  // namespace tfcpp
