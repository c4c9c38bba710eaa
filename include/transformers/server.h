// An OpenAI-compatible HTTP server over a causal LM (`tfcpp serve`): /v1/completions, /v1/chat/completions,
// /v1/models, /health, /metrics. Requests share the model through one scheduler thread that batches the decode steps
// of every running request (continuous batching; each request keeps its own KV cache between steps).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace transformers {

class PreTrainedModel;
class Tokenizer;

struct ServerOptions {
  std::string host = "127.0.0.1";  // loopback unless asked otherwise
  int port = 8080;                 // 0: an ephemeral port (read it back with Server::port())
  std::string model_id;            // the name /v1/models reports and responses carry; default: the folder's name
  std::string api_key;             // non-empty: every endpoint but /health needs "Authorization: Bearer <key>" (401)
  int64_t max_batch = 8;           // sequences decoded together in one forward
  int64_t max_queue = 64;          // requests waiting for a batch slot; one more gets 429
  int64_t max_tokens = 2048;       // the largest max_tokens a request may ask for (400 above)
  int64_t default_max_tokens = 16;  // /v1/completions without max_tokens (OpenAI's default); chat: max_tokens
  int64_t max_n = 16;               // the largest `n` (choices per prompt)
  size_t max_body_bytes = 1 << 20;  // larger request bodies get 413
  int http_threads = 0;             // 0: max_batch + max_queue + 4 (a waiting request holds one)
  // Batched decode steps across requests (off: every running request steps alone, in turn).
  bool batched_decode = true;
  // A Jinja chat template to use when the tokenizer has none (else transformers 4.40's default for the class).
  std::string chat_template;
};

class Server {
 public:
  // The model must be a decoder-only causal LM (ValueError otherwise); `model_dir` names it in /v1/models.
  Server(std::shared_ptr<PreTrainedModel> model, std::shared_ptr<const Tokenizer> tokenizer, ServerOptions options,
         const std::string& model_dir = "");
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds host:port and starts serving on background threads; Error if the address cannot be bound.
  void start();
  // Stops accepting, fails the requests still running with 503, joins the threads. Idempotent.
  void stop();
  // Blocks until stop() (from another thread or a signal handler's flag; see tfcpp serve).
  void wait();
  int port() const;
  const ServerOptions& options() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace transformers
