// The continuous-batching scheduler of `tfcpp serve` (engine.h). The model inputs of every step are built the way
// generate() builds them (prepare_inputs_for_generation over the ids, an attention mask and cache_position), so a
// request alone in the server decodes exactly as generate() does, and a batched step is generate()'s left-padded
// batch decoding.
#include "pch.h"

#include "server/engine.h"

#include "transformers/errors.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <random>

namespace transformers::server {

namespace {

constexpr char kReplacementChar[] = "\xEF\xBF\xBD";

double now_seconds() {
  using Clock = std::chrono::steady_clock;
  static const Clock::time_point start = Clock::now();
  return std::chrono::duration<double>(Clock::now() - start).count();
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

// OpenAI's presence and frequency penalties over the tokens generated so far (after the prompt):
// logits[t] -= frequency_penalty * count(t) + presence_penalty * (count(t) > 0).
LogitsProcessor presence_frequency_penalty(int64_t prompt_length, double presence, double frequency) {
  return [=](const at::Tensor& input_ids, const at::Tensor& scores) {
    int64_t generated = input_ids.size(1) - prompt_length;
    if (generated <= 0) return scores;
    at::Tensor tokens = input_ids.narrow(1, prompt_length, generated);
    at::Tensor counts = at::zeros_like(scores).scatter_add_(1, tokens, at::ones(tokens.sizes(), scores.options()));
    return scores - counts * frequency - counts.gt(0).to(scores.scalar_type()) * presence;
  };
}

LogitsProcessor logit_bias_processor(std::vector<std::pair<int64_t, double>> bias) {
  return [bias = std::move(bias)](const at::Tensor& input_ids, const at::Tensor& scores) {
    at::Tensor out = scores.clone();
    for (const auto& [id, value] : bias) out.select(1, id).add_(value);
    return out;
  };
}

std::shared_ptr<DynamicCache> copy_cache(const std::vector<std::vector<at::Tensor>>& layers, int64_t reserve,
                                         const std::function<at::Tensor(const at::Tensor&)>& slice) {
  auto cache = std::make_shared<DynamicCache>();
  cache->reserve(reserve);
  for (size_t l = 0; l < layers.size(); ++l)
    cache->update(slice(layers[l][0]), slice(layers[l][1]), static_cast<int64_t>(l));
  return cache;
}

}  // namespace

struct Engine::Sequence {
  std::shared_ptr<Job> job;
  int index = 0;
  std::vector<int64_t> ids;  // prompt + generated
  int64_t prompt_len = 0, generated = 0, max_new_tokens = 0;
  std::vector<LogitsProcessor> processors, warpers;
  bool do_sample = false;
  c10::optional<at::Generator> generator;
  std::vector<int64_t> eos;
  std::shared_ptr<DynamicCache> cache;  // null while the sequence lives in the batch cache
  std::string prompt_text;              // decode(prompt): the completion is what follows it
  size_t emitted = 0;                   // bytes of the completion already sent as events
  size_t stop_scanned = 0;              // bytes of the completion already searched for stop sequences
  bool finished = false;
};

struct Engine::Batch {
  std::vector<Sequence*> seqs;
  std::vector<int64_t> pads;  // left padding of each row
  std::shared_ptr<DynamicCache> cache;
  int64_t length = 0;  // positions in the cache, padding included
};

Engine::Engine(std::shared_ptr<PreTrainedModel> model, std::shared_ptr<const Tokenizer> tokenizer,
               EngineOptions options)
    : model_(std::move(model)), tokenizer_(std::move(tokenizer)), options_(options) {
  if (model_->config) {
    json value = model_->config->get("max_position_embeddings");
    if (value.is_number_integer()) max_positions_ = value.get<int64_t>();
  }
  thread_ = std::thread([this] { loop(); });
}

Engine::~Engine() { stop(); }

bool Engine::submit(const std::shared_ptr<Job>& job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ || static_cast<int64_t>(queue_.size()) >= options_.max_queue) return false;
    std::lock_guard<std::mutex> job_lock(job->mu);
    job->choices.assign(job->prompts.size(), ChoiceState{});
    job->remaining = static_cast<int>(job->prompts.size());
    queue_.push_back(job);
  }
  cv_.notify_all();
  return true;
}

void Engine::stop(const std::string& reason) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
    for (auto& job : queue_) {
      std::lock_guard<std::mutex> job_lock(job->mu);
      job->error = reason;
      job->cv.notify_all();
    }
    queue_.clear();
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

EngineStats Engine::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  EngineStats s;
  s.queue_depth = static_cast<int64_t>(queue_.size());
  s.active_requests = active_requests_;
  s.active_sequences = active_sequences_;
  s.generated_tokens_total = generated_tokens_total_;
  s.prompt_tokens_total = prompt_tokens_total_;
  s.decode_steps_total = decode_steps_total_;
  s.batched_rows_total = batched_rows_total_;
  double now = now_seconds(), tokens = 0;
  for (const auto& [t, n] : recent_)
    if (now - t <= 10.0) tokens += static_cast<double>(n);
  if (!recent_.empty() && now - recent_.back().first <= 10.0) {
    double span = std::max(now - std::max(recent_.front().first, now - 10.0), 1e-3);
    s.tokens_per_second = tokens / span;
  }
  return s;
}

void Engine::loop() {
  at::init_num_threads();  // this thread's OpenMP team size = the process's (init_runtime)
  c10::InferenceMode guard;
  while (true) {
    std::vector<std::shared_ptr<Job>> admitted;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty() || !active_.empty(); });
      if (stopping_) break;
      // Admit whole requests while their choices fit in the batch (one always runs, however many choices it has).
      int64_t running = static_cast<int64_t>(active_.size());
      while (!queue_.empty()) {
        const auto& job = queue_.front();
        int64_t need = static_cast<int64_t>(job->prompts.size());
        if (running > 0 && running + need > options_.max_batch) break;
        running += need;
        admitted.push_back(job);
        queue_.pop_front();
      }
    }
    try {
      admit(admitted);
      drop_finished();
      if (!active_.empty()) step();
      drop_finished();
    } catch (const std::exception& e) {
      fail_all(std::string("generation failed: ") + e.what());
    }
  }
  fail_all("server shutting down");
}

void Engine::admit(std::vector<std::shared_ptr<Job>>& jobs) {
  for (auto& job : jobs) {
    if (job->cancelled) continue;
    try {
      prefill(job);
    } catch (const std::exception& e) {
      // This request alone fails; the others carry on.
      active_.erase(std::remove_if(active_.begin(), active_.end(), [&](const auto& s) { return s->job == job; }),
                    active_.end());
      std::lock_guard<std::mutex> lock(job->mu);
      job->error = std::string("generation failed: ") + e.what();
      job->cv.notify_all();
    }
  }
}

void Engine::prefill(const std::shared_ptr<Job>& job) {
  const SamplingParams& p = job->params;
  at::Tensor logits;
  std::shared_ptr<DynamicCache> cache;
  const std::vector<int64_t>* prefilled = nullptr;
  for (size_t i = 0; i < job->prompts.size(); ++i) {
    const std::vector<int64_t>& prompt = job->prompts[i];
    auto s = std::make_unique<Sequence>();
    s->job = job;
    s->index = static_cast<int>(i);
    s->ids = prompt;
    s->prompt_len = static_cast<int64_t>(prompt.size());
    s->max_new_tokens = p.config.max_new_tokens.value_or(16);
    at::Tensor prompt_ids = at::tensor(prompt, at::kLong).unsqueeze(0);
    s->processors = get_logits_processor(p.config, s->prompt_len, prompt_ids);
    if (p.presence_penalty != 0.0 || p.frequency_penalty != 0.0)
      s->processors.push_back(presence_frequency_penalty(s->prompt_len, p.presence_penalty, p.frequency_penalty));
    if (!p.logit_bias.empty()) s->processors.push_back(logit_bias_processor(p.logit_bias));
    s->do_sample = p.config.do_sample;
    if (s->do_sample) {
      s->warpers = get_logits_warper(p.config);
      uint64_t seed = p.seed ? *p.seed + i : std::random_device{}();
      s->generator = at::make_generator<at::CPUGeneratorImpl>(seed);
    }
    s->eos = p.config.eos_ids();
    s->prompt_text = tokenizer_->decode(prompt, /*skip_special_tokens=*/true);
    const int64_t reserve = s->prompt_len + s->max_new_tokens + 1;

    // Choices of the same prompt share one prefill.
    if (prefilled && *prefilled == prompt) {
      s->cache = copy_cache(cache->to_legacy_cache(), reserve, [](const at::Tensor& t) { return t; });
    } else {
      at::Tensor ids = prompt_ids;
      ModelInputs kwargs;
      kwargs.attention_mask = at::ones_like(ids);
      kwargs.cache_position = at::arange(ids.size(1), at::kLong);
      kwargs.use_cache = true;
      kwargs.num_logits_to_keep = 1;
      ModelOutput out = model_->forward(model_->prepare_inputs_for_generation(ids, kwargs));
      logits = out.logits.select(1, -1);
      cache = std::dynamic_pointer_cast<DynamicCache>(out.past_key_values);
      if (!cache) throw GenerationError(model_->class_name + " did not return a DynamicCache: it cannot be served");
      cache->reserve(reserve);
      s->cache = cache;
      prefilled = &job->prompts[i];
      std::lock_guard<std::mutex> lock(mu_);
      prompt_tokens_total_ += s->prompt_len;
    }
    Sequence& ref = *s;
    active_.push_back(std::move(s));
    choose_and_emit(ref, logits);
  }
}

void Engine::choose_and_emit(Sequence& s, const at::Tensor& logits) {
  at::Tensor ids = at::tensor(s.ids, at::kLong).unsqueeze(0);
  at::Tensor scores = apply_logits_processors(s.processors, ids, logits);
  int64_t token;
  if (s.do_sample) {
    scores = apply_logits_processors(s.warpers, ids, scores);
    at::Tensor probs = at::softmax(scores, -1);
    token = at::multinomial(probs, 1, /*replacement=*/false, s.generator).item<int64_t>();
  } else {
    token = at::argmax(scores, -1).item<int64_t>();
  }
  emit_token(s, token, logits);
}

void Engine::emit_token(Sequence& s, int64_t token, const at::Tensor& logits) {
  const SamplingParams& p = s.job->params;
  // The text a token adds after the last few ids (decoding a short window keeps this cheap).
  auto token_text = [&](int64_t id) {
    size_t context = std::min<size_t>(s.ids.size(), 4);
    std::vector<int64_t> window(s.ids.end() - static_cast<std::ptrdiff_t>(context), s.ids.end());
    std::string before = tokenizer_->decode(window, false);
    window.push_back(id);
    std::string after = tokenizer_->decode(window, false);
    return starts_with(after, before) ? after.substr(before.size()) : tokenizer_->decode({id}, false);
  };
  std::vector<TokenLogprob> logprobs;
  if (p.top_logprobs >= 0) {
    at::Tensor lp = at::log_softmax(logits.to(at::kDouble), -1).select(0, 0);
    TokenLogprob t;
    t.id = token;
    t.token = token_text(token);
    t.logprob = lp[token].item<double>();
    if (p.top_logprobs > 0) {
      auto [values, indices] = at::topk(lp, std::min<int64_t>(p.top_logprobs, lp.size(0)));
      for (int64_t k = 0; k < values.size(0); ++k)
        t.top.emplace_back(token_text(indices[k].item<int64_t>()), values[k].item<double>());
    }
    logprobs.push_back(std::move(t));
  }

  s.ids.push_back(token);
  ++s.generated;
  std::string reason;
  if (std::find(s.eos.begin(), s.eos.end(), token) != s.eos.end()) reason = "stop";

  std::string full = tokenizer_->decode(s.ids, /*skip_special_tokens=*/true);
  std::string completion;
  if (starts_with(full, s.prompt_text)) {
    completion = full.substr(s.prompt_text.size());
  } else {
    completion = tokenizer_->decode(std::vector<int64_t>(s.ids.begin() + s.prompt_len, s.ids.end()), true);
  }
  // Stop sequences: the text ends before the first one.
  size_t longest_stop = 0;
  for (const auto& stop : p.stop) longest_stop = std::max(longest_stop, stop.size());
  if (!p.stop.empty()) {
    size_t from = s.stop_scanned > longest_stop ? s.stop_scanned - longest_stop : 0;
    size_t first = std::string::npos;
    for (const auto& stop : p.stop)
      if (!stop.empty()) first = std::min(first, completion.find(stop, from));
    if (first != std::string::npos) {
      completion.resize(first);
      reason = "stop";
    }
    s.stop_scanned = completion.size();
  }
  if (reason.empty() &&
      (s.generated >= s.max_new_tokens || (max_positions_ > 0 && static_cast<int64_t>(s.ids.size()) >= max_positions_)))
    reason = "length";

  // What can be sent now: not a trailing incomplete character, nor a tail that may begin a stop sequence.
  size_t printable = completion.size();
  if (reason.empty()) {
    while (printable >= 3 && completion.compare(printable - 3, 3, kReplacementChar) == 0) printable -= 3;
    size_t hold = 0;
    for (const auto& stop : p.stop)
      for (size_t k = std::min(stop.empty() ? 0 : stop.size() - 1, printable); k > hold; --k)
        if (completion.compare(printable - k, k, stop, 0, k) == 0) {
          hold = k;
          break;
        }
    printable -= hold;
  }
  std::string delta;
  if (printable > s.emitted) {
    delta = completion.substr(s.emitted, printable - s.emitted);
    s.emitted = printable;
  }
  // Counters first, so that /metrics already shows this token (and the slot freed) when the client has its answer.
  if (!reason.empty()) s.finished = true;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++generated_tokens_total_;
    if (s.finished) update_active_counts();
  }
  {
    std::lock_guard<std::mutex> lock(s.job->mu);
    ChoiceState& choice = s.job->choices[s.index];
    choice.text = completion;
    choice.completion_tokens = s.generated;
    for (const auto& lp : logprobs) choice.logprobs.push_back(lp);
    if (s.job->stream && (!delta.empty() || !logprobs.empty() || !reason.empty()))
      s.job->events.push_back(Event{s.index, delta, logprobs, reason});
    if (!reason.empty()) {
      choice.finish_reason = reason;
      choice.done = true;
      --s.job->remaining;
    }
  }
  s.job->cv.notify_all();
}

void Engine::update_active_counts() {
  std::vector<const Job*> jobs;
  int64_t sequences = 0;
  for (const auto& s : active_) {
    if (s->finished) continue;
    ++sequences;
    if (std::find(jobs.begin(), jobs.end(), s->job.get()) == jobs.end()) jobs.push_back(s->job.get());
  }
  active_requests_ = static_cast<int64_t>(jobs.size());
  active_sequences_ = sequences;
}

void Engine::dissolve_batch() {
  if (!batch_) return;
  auto layers = batch_->cache->to_legacy_cache();
  for (size_t i = 0; i < batch_->seqs.size(); ++i) {
    Sequence* s = batch_->seqs[i];
    if (s->finished) continue;
    int64_t pad = batch_->pads[i], row = static_cast<int64_t>(i), len = batch_->length - pad;
    s->cache = copy_cache(layers, s->prompt_len + s->max_new_tokens + 1,
                          [&](const at::Tensor& t) { return t.narrow(0, row, 1).narrow(2, pad, len); });
  }
  batch_.reset();
}

void Engine::build_batch() {
  auto batch = std::make_unique<Batch>();
  int64_t length = 0, reserve = 0;
  for (const auto& s : active_) {
    batch->seqs.push_back(s.get());
    length = std::max(length, s->cache->get_seq_length());
  }
  for (const auto& s : active_) {
    batch->pads.push_back(length - s->cache->get_seq_length());
    reserve = std::max(reserve, length + s->max_new_tokens - s->generated + 1);
  }
  std::vector<std::vector<std::vector<at::Tensor>>> per_seq;
  for (const auto& s : active_) per_seq.push_back(s->cache->to_legacy_cache());
  const size_t num_layers = per_seq[0].size();
  const int64_t rows = static_cast<int64_t>(active_.size());
  batch->cache = std::make_shared<DynamicCache>();
  batch->cache->reserve(reserve);
  for (size_t l = 0; l < num_layers; ++l) {
    at::Tensor kv[2];
    for (int which = 0; which < 2; ++which) {
      const at::Tensor& like = per_seq[0][l][which];
      kv[which] = at::zeros({rows, like.size(1), length, like.size(3)}, like.options());
      for (int64_t i = 0; i < rows; ++i)
        kv[which][i].narrow(1, batch->pads[i], length - batch->pads[i]).copy_(per_seq[i][l][which][0]);
    }
    batch->cache->update(kv[0], kv[1], static_cast<int64_t>(l));
  }
  batch->length = length;
  for (const auto& s : active_) s->cache.reset();
  batch_ = std::move(batch);
}

void Engine::step() {
  const bool batched = options_.batched_decode && active_.size() > 1;
  std::vector<Sequence*> current;
  for (const auto& s : active_) current.push_back(s.get());
  if (!batched) {
    dissolve_batch();
    for (Sequence* s : current) {
      int64_t past = s->cache->get_seq_length();
      at::Tensor ids = at::tensor(s->ids, at::kLong).unsqueeze(0);
      ModelInputs kwargs;
      kwargs.attention_mask = at::ones_like(ids);
      kwargs.cache_position = at::full({1}, past, at::kLong);
      kwargs.past_key_values = s->cache;
      kwargs.use_cache = true;
      kwargs.num_logits_to_keep = 1;
      ModelOutput out = model_->forward(model_->prepare_inputs_for_generation(ids, kwargs));
      if (auto cache = std::dynamic_pointer_cast<DynamicCache>(out.past_key_values)) s->cache = cache;
      choose_and_emit(*s, out.logits.select(1, -1));
    }
    std::lock_guard<std::mutex> lock(mu_);
    decode_steps_total_ += static_cast<int64_t>(current.size());
    batched_rows_total_ += static_cast<int64_t>(current.size());
    recent_.emplace_back(now_seconds(), static_cast<int64_t>(current.size()));
    return;
  }
  if (!batch_ || batch_->seqs != current) {
    dissolve_batch();
    build_batch();
  }
  // generate()'s left-padded batch: ids and mask [B, length + 1], the new token in the last column.
  const int64_t rows = static_cast<int64_t>(current.size()), columns = batch_->length + 1;
  at::Tensor ids = at::zeros({rows, columns}, at::kLong), mask = at::zeros({rows, columns}, at::kLong);
  auto ids_a = ids.accessor<int64_t, 2>();
  auto mask_a = mask.accessor<int64_t, 2>();
  for (int64_t i = 0; i < rows; ++i) {
    const Sequence& s = *current[i];
    const int64_t pad = batch_->pads[i];
    const int64_t offset = static_cast<int64_t>(s.ids.size()) - (columns - pad);
    for (int64_t c = pad; c < columns; ++c) {
      ids_a[i][c] = s.ids[offset + c - pad];
      mask_a[i][c] = 1;
    }
  }
  ModelInputs kwargs;
  kwargs.attention_mask = mask;
  kwargs.cache_position = at::full({1}, batch_->length, at::kLong);
  kwargs.past_key_values = batch_->cache;
  kwargs.use_cache = true;
  kwargs.num_logits_to_keep = 1;
  ModelOutput out = model_->forward(model_->prepare_inputs_for_generation(ids, kwargs));
  if (auto cache = std::dynamic_pointer_cast<DynamicCache>(out.past_key_values)) batch_->cache = cache;
  batch_->length += 1;
  at::Tensor logits = out.logits.select(1, -1);  // [B, V]
  for (int64_t i = 0; i < rows; ++i) choose_and_emit(*current[i], logits.narrow(0, i, 1));
  std::lock_guard<std::mutex> lock(mu_);
  decode_steps_total_ += 1;
  batched_rows_total_ += rows;
  recent_.emplace_back(now_seconds(), rows);
}

void Engine::drop_finished() {
  for (auto& s : active_)
    if (!s->finished && s->job->cancelled) s->finished = true;
  bool any = std::any_of(active_.begin(), active_.end(), [](const auto& s) { return s->finished; });
  if (any) {
    // Rows leave the batch: the survivors take their caches back (the next batched step rebuilds the batch).
    dissolve_batch();
    active_.erase(std::remove_if(active_.begin(), active_.end(), [](const auto& s) { return s->finished; }),
                  active_.end());
  }
  std::lock_guard<std::mutex> lock(mu_);
  update_active_counts();
  double now = now_seconds();
  while (!recent_.empty() && now - recent_.front().first > 10.0) recent_.pop_front();
}

void Engine::fail_all(const std::string& message) {
  batch_.reset();
  for (auto& s : active_) {
    std::lock_guard<std::mutex> lock(s->job->mu);
    if (s->job->error.empty()) s->job->error = message;
    s->job->cv.notify_all();
  }
  active_.clear();
  std::lock_guard<std::mutex> lock(mu_);
  active_requests_ = active_sequences_ = 0;
}

}  // namespace transformers::server
