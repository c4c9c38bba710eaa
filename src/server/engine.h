// The scheduler behind `tfcpp serve`: one thread owns the model and runs, step after step, one batched decode
// forward over every running sequence (continuous batching). New requests are prefilled alone between steps and then
// join the batch; finished or cancelled ones leave it. Each sequence keeps its own KV cache; while the membership of
// the batch stays the same the caches live left-padded in one batch cache, split back when it changes.
#pragma once

#include "transformers/generation.h"
#include "transformers/tokenizer.h"

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace transformers::server {

// What a request asks of generation, beyond the model's generation_config.
struct SamplingParams {
  GenerationConfig config;  // max_new_tokens, do_sample, temperature, top_p, top_k, repetition_penalty
  double presence_penalty = 0.0, frequency_penalty = 0.0;   // OpenAI semantics, over the generated tokens
  std::vector<std::pair<int64_t, double>> logit_bias;        // added to the logits
  std::vector<std::string> stop;                             // stop sequences (not part of the returned text)
  int top_logprobs = -1;                                     // -1: no logprobs; else the chosen token + this many
  std::optional<uint64_t> seed;                              // choice i samples with seed + i
};

struct TokenLogprob {
  int64_t id = 0;
  std::string token;  // the text the token adds
  double logprob = 0.0;
  std::vector<std::pair<std::string, double>> top;  // the most likely tokens at this step
};

// One choice of a request as it stands.
struct ChoiceState {
  std::string text;                   // completion text so far (final once done)
  std::vector<TokenLogprob> logprobs;  // when requested
  int64_t completion_tokens = 0;
  std::string finish_reason;          // "stop", "length" (empty while running)
  bool done = false;
};

// What a streaming client receives: new text of a choice, its new tokens' logprobs, and the finish reason once.
struct Event {
  int index = 0;
  std::string text;
  std::vector<TokenLogprob> logprobs;
  std::string finish_reason;
};

// A request: its prompts (one per choice) and the shared state the HTTP handler waits on.
struct Job {
  std::vector<std::vector<int64_t>> prompts;  // per choice
  SamplingParams params;

  std::mutex mu;
  std::condition_variable cv;
  std::vector<ChoiceState> choices;
  std::deque<Event> events;       // only filled when `stream`
  bool stream = false;
  int remaining = 0;              // choices not done
  std::string error;              // set when generation failed (the handler answers 500 / an error event)
  std::atomic<bool> cancelled{false};
};

struct EngineOptions {
  int64_t max_batch = 8;
  int64_t max_queue = 64;
  bool batched_decode = true;
};

struct EngineStats {
  int64_t queue_depth = 0, active_requests = 0, active_sequences = 0;
  int64_t generated_tokens_total = 0, prompt_tokens_total = 0, decode_steps_total = 0, batched_rows_total = 0;
  double tokens_per_second = 0.0;  // generated tokens over the last 10 s of activity
};

class Engine {
 public:
  Engine(std::shared_ptr<PreTrainedModel> model, std::shared_ptr<const Tokenizer> tokenizer, EngineOptions options);
  ~Engine();
  // Queues a job (its choices are filled in). False when the queue is full.
  bool submit(const std::shared_ptr<Job>& job);
  // Fails every queued and running job with `reason` and joins the scheduler thread.
  void stop(const std::string& reason = "server shutting down");
  EngineStats stats() const;

 private:
  struct Sequence;
  struct Batch;
  void loop();
  void admit(std::vector<std::shared_ptr<Job>>& jobs);
  void prefill(const std::shared_ptr<Job>& job);
  void step();
  void choose_and_emit(Sequence& s, const at::Tensor& logits);
  void emit_token(Sequence& s, int64_t token, const at::Tensor& logits);
  void finish(Sequence& s, const std::string& reason);
  void dissolve_batch();
  void build_batch();
  void drop_finished();
  void fail_all(const std::string& message);
  void update_active_counts();  // under mu_: running (unfinished) sequences and their requests

  std::shared_ptr<PreTrainedModel> model_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  EngineOptions options_;
  int64_t max_positions_ = 0;  // config.max_position_embeddings (0: unknown)

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  bool stopping_ = false;
  std::thread thread_;

  // Scheduler thread only.
  std::vector<std::unique_ptr<Sequence>> active_;
  std::unique_ptr<Batch> batch_;

  // Stats (under mu_).
  int64_t active_requests_ = 0, active_sequences_ = 0;
  int64_t generated_tokens_total_ = 0, prompt_tokens_total_ = 0, decode_steps_total_ = 0, batched_rows_total_ = 0;
  std::deque<std::pair<double, int64_t>> recent_;  // (seconds since start, tokens) per step
};

}  // namespace transformers::server
