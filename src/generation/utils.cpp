// Port of transformers/generation/utils.py (4.40): GenerationMixin.generate and its decoding loops (_greedy_search,
// _sample, _beam_search, _beam_sample, _group_beam_search, _contrastive_search with _ranking_fast), with
// generation/beam_search.py (BeamSearchScorer with beam groups, BeamHypotheses). Stopping criteria:
// stopping_criteria.cpp.
#include "transformers/errors.h"
#include "transformers/generation.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <mutex>

namespace transformers {

std::vector<std::pair<std::string, at::Tensor>> GenerateOutput::named_tensors() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  if (sequences.defined()) out.emplace_back("sequences", sequences);
  if (sequences_scores.defined()) out.emplace_back("sequences_scores", sequences_scores);
  for (size_t i = 0; i < scores.size(); ++i) out.emplace_back("scores." + std::to_string(i), scores[i]);
  for (size_t i = 0; i < logits.size(); ++i) out.emplace_back("logits." + std::to_string(i), logits[i]);
  if (beam_indices.defined()) out.emplace_back("beam_indices", beam_indices);
  for (size_t s = 0; s < attentions.size(); ++s)
    for (size_t l = 0; l < attentions[s].size(); ++l)
      out.emplace_back("attentions." + std::to_string(s) + "." + std::to_string(l), attentions[s][l]);
  for (size_t s = 0; s < hidden_states.size(); ++s)
    for (size_t l = 0; l < hidden_states[s].size(); ++l)
      out.emplace_back("hidden_states." + std::to_string(s) + "." + std::to_string(l), hidden_states[s][l]);
  for (size_t l = 0; l < encoder_attentions.size(); ++l)
    out.emplace_back("encoder_attentions." + std::to_string(l), encoder_attentions[l]);
  for (size_t l = 0; l < encoder_hidden_states.size(); ++l)
    out.emplace_back("encoder_hidden_states." + std::to_string(l), encoder_hidden_states[l]);
  auto add_steps = [&out](const char* name, const std::vector<std::vector<at::Tensor>>& steps) {
    for (size_t s = 0; s < steps.size(); ++s)
      for (size_t l = 0; l < steps[s].size(); ++l)
        out.emplace_back(std::string(name) + "." + std::to_string(s) + "." + std::to_string(l), steps[s][l]);
  };
  add_steps("decoder_attentions", decoder_attentions);
  add_steps("cross_attentions", cross_attentions);
  add_steps("decoder_hidden_states", decoder_hidden_states);
  for (const auto& [name, t] : extra) out.emplace_back(name, t);
  return out;
}

namespace {

using Clock = std::chrono::steady_clock;

// ---- configuration_utils.py: GenerationMode, the checks of validate() that GenerationConfig::validate leaves ----

enum class GenerationMode {
  kGreedySearch,
  kSample,
  kBeamSearch,
  kBeamSample,
  kContrastiveSearch,
  kGroupBeamSearch,
  kConstrainedBeamSearch,
  kAssistedGeneration,
};

GenerationMode get_generation_mode(const GenerationConfig& config) {
  GenerationMode mode;
  if (!config.force_words_ids.is_null()) {
    mode = GenerationMode::kConstrainedBeamSearch;
  } else if (config.num_beams == 1) {
    if (!config.do_sample) {
      mode = config.top_k > 1 && config.penalty_alpha && *config.penalty_alpha > 0 ? GenerationMode::kContrastiveSearch
                                                                                   : GenerationMode::kGreedySearch;
    } else {
      mode = GenerationMode::kSample;
    }
  } else if (config.num_beam_groups > 1) {
    mode = GenerationMode::kGroupBeamSearch;
  } else {
    mode = config.do_sample ? GenerationMode::kBeamSample : GenerationMode::kBeamSearch;
  }
  // Assisted generation may extend some generation modes
  if (config.prompt_lookup_num_tokens) {
    if (mode != GenerationMode::kGreedySearch && mode != GenerationMode::kSample)
      throw GenerationError("prompt_lookup_num_tokens triggers assisted generation, which is only supported with "
                            "greedy search and sampling");
    mode = GenerationMode::kAssistedGeneration;
  }
  return mode;
}

enum class EarlyStopping { kFalse, kTrue, kNever };

EarlyStopping parse_early_stopping(const json& value) {
  if (value.is_boolean()) return value.get<bool>() ? EarlyStopping::kTrue : EarlyStopping::kFalse;
  if (value.is_string() && value.get<std::string>() == "never") return EarlyStopping::kNever;
  throw GenerationError("`early_stopping` must be a boolean or 'never', but is " + value.dump());
}

void validate_generation_config(const GenerationConfig& config) {
  config.validate();
  parse_early_stopping(config.early_stopping);
  if (config.num_beams > 1) {
    if (!config.force_words_ids.is_null() && config.do_sample)
      throw GenerationError("`force_words_ids` triggers constrained beam search, which is incompatible with "
                            "`do_sample=True`");
    if (config.diversity_penalty != 0.0 || config.num_beam_groups != 1) {
      std::string prefix =
          "`diversity_penalty` is not 0.0 or `num_beam_groups` is not 1, triggering group beam search. In this "
          "generation mode, ";
      if (config.do_sample) throw GenerationError(prefix + "`do_sample` must be set to `False`");
      if (config.num_beam_groups < 1 || config.num_beams % config.num_beam_groups != 0)
        throw GenerationError(prefix + "`num_beams` should be divisible by `num_beam_groups`");
      if (config.diversity_penalty == 0.0)
        throw GenerationError(prefix + "`diversity_penalty` should be greater than `0.0`, otherwise your groups will "
                                       "be identical.");
    }
  }
  if (config.num_return_sequences != 1) {
    if (config.num_beams == 1) {
      if (!config.do_sample)
        throw GenerationError("Greedy methods without beam search do not support `num_return_sequences` different "
                              "than 1 (got " + std::to_string(config.num_return_sequences) + ").");
    } else if (config.num_return_sequences > config.num_beams) {
      throw GenerationError("`num_return_sequences` (" + std::to_string(config.num_return_sequences) +
                            ") has to be smaller or equal to `num_beams` (" + std::to_string(config.num_beams) + ").");
    }
  }
}

// ---- beam_search.py ----

class BeamHypotheses {
 public:
  struct Beam {
    double score;
    at::Tensor hyp;                                    // [T]
    std::optional<std::vector<int64_t>> beam_indices;  // one per generated step
  };

  BeamHypotheses(int64_t num_beams, double length_penalty, EarlyStopping early_stopping,
                 std::optional<int64_t> max_length)
      : length_penalty_(length_penalty), early_stopping_(early_stopping), max_length_(max_length),
        num_beams_(num_beams) {
    if (early_stopping_ == EarlyStopping::kNever && !max_length_)
      throw GenerationError("When `do_early_stopping` is set to a string, `max_length` must be defined.");
  }

  int64_t size() const { return static_cast<int64_t>(beams.size()); }

  // Add a new hypothesis to the list.
  void add(at::Tensor hyp, double sum_logprobs, std::optional<std::vector<int64_t>> beam_indices,
           int64_t generated_len) {
    double score = sum_logprobs / std::pow(static_cast<double>(generated_len), length_penalty_);
    if (size() < num_beams_ || score > worst_score_) {
      beams.push_back({score, std::move(hyp), std::move(beam_indices)});
      if (size() > num_beams_) {
        // sorted([(s, idx) for idx, (s, _, _) in enumerate(self.beams)])
        std::vector<std::pair<double, size_t>> sorted_next_scores;
        for (size_t idx = 0; idx < beams.size(); ++idx) sorted_next_scores.emplace_back(beams[idx].score, idx);
        std::sort(sorted_next_scores.begin(), sorted_next_scores.end());
        beams.erase(beams.begin() + static_cast<std::ptrdiff_t>(sorted_next_scores[0].second));
        worst_score_ = sorted_next_scores[1].first;
      } else {
        worst_score_ = std::min(score, worst_score_);
      }
    }
  }

  // If there are enough hypotheses and that none of the hypotheses being generated can become better than the worst
  // one in the heap, then we are done with this sentence.
  bool is_done(double best_sum_logprobs, int64_t cur_len, int64_t decoder_prompt_len) const {
    if (size() < num_beams_) return false;
    // `True`: stop as soon as at least `num_beams` hypotheses are finished
    if (early_stopping_ == EarlyStopping::kTrue) return true;
    // `False`: heuristic -- compute best possible score from `cur_len`
    if (early_stopping_ == EarlyStopping::kFalse) {
      double highest_attainable_score =
          best_sum_logprobs / std::pow(static_cast<double>(cur_len - decoder_prompt_len), length_penalty_);
      return worst_score_ >= highest_attainable_score;
    }
    // `"never"`: compute the best possible score, depending on the signal of `length_penalty`
    double highest_attainable_score;
    if (length_penalty_ > 0.0) {
      if (*max_length_ <= decoder_prompt_len)
        throw GenerationError("max_length is not larger than decoder prompt length");
      highest_attainable_score =
          best_sum_logprobs / std::pow(static_cast<double>(*max_length_ - decoder_prompt_len), length_penalty_);
    } else {
      highest_attainable_score =
          best_sum_logprobs / std::pow(static_cast<double>(cur_len - decoder_prompt_len), length_penalty_);
    }
    return worst_score_ >= highest_attainable_score;
  }

  std::vector<Beam> beams;

 private:
  double length_penalty_;
  EarlyStopping early_stopping_;
  std::optional<int64_t> max_length_;
  int64_t num_beams_;
  double worst_score_ = 1e9;
};

using BeamIndices = std::vector<std::vector<int64_t>>;  // per batch*beam row, the beam of each step

class BeamSearchScorer {
 public:
  struct StepOutput {
    at::Tensor next_beam_scores, next_beam_tokens, next_beam_indices;  // [B * num_beams]
  };
  struct FinalOutput {
    at::Tensor sequences, sequence_scores, beam_indices;
  };

  BeamSearchScorer(int64_t batch_size, int64_t num_beams, double length_penalty, EarlyStopping do_early_stopping,
                   int64_t num_beam_hyps_to_keep, std::optional<int64_t> max_length, int64_t num_beam_groups = 1)
      : num_beams(num_beams), num_beam_hyps_to_keep_(num_beam_hyps_to_keep), num_beam_groups_(num_beam_groups),
        group_size_(num_beam_groups > 0 ? num_beams / num_beam_groups : num_beams) {
    // self._beam_hyps[i*self.num_beam_groups+j] is the beam_hyps of the j-th group in the i-th mini-batch.
    for (int64_t i = 0; i < batch_size * num_beam_groups; ++i)
      beam_hyps_.emplace_back(group_size_, length_penalty, do_early_stopping, max_length);
    done_.assign(batch_size * num_beam_groups, false);
    if (num_beams <= 1)
      throw GenerationError("`num_beams` has to be an integer strictly greater than 1, but is " +
                            std::to_string(num_beams) +
                            ". For `num_beams` == 1, one should make use of greedy search.");
    if (num_beam_groups < 1 || num_beam_groups > num_beams || num_beams % num_beam_groups != 0)
      throw GenerationError("`num_beam_groups` has to be an integer smaller or equal than `num_beams` and `num_beams` "
                            "has to be divisible by `num_beam_groups`, but is " + std::to_string(num_beam_groups) +
                            " with `num_beams` being " + std::to_string(num_beams) + ".");
  }

  bool is_done() const { return std::all_of(done_.begin(), done_.end(), [](bool d) { return d; }); }
  int64_t batch_size() const { return static_cast<int64_t>(beam_hyps_.size()) / num_beam_groups_; }
  int64_t num_beam_groups() const { return num_beam_groups_; }

  StepOutput process(const at::Tensor& input_ids, const at::Tensor& next_scores, const at::Tensor& next_tokens,
                     const at::Tensor& next_indices, std::optional<int64_t> pad_token_id,
                     const std::vector<int64_t>& eos_token_id, const BeamIndices* beam_indices,
                     int64_t decoder_prompt_len, int64_t group_index = 0) {
    // add up to the length which the next_scores is calculated on (including decoder prompt)
    int64_t cur_len = input_ids.size(-1) + 1;
    int64_t batch = batch_size();
    if (batch != input_ids.size(0) / group_size_)
      throw GenerationError(std::string(num_beam_groups_ > 1 ? "A group beam size of " : "A beam size of ") +
                            std::to_string(input_ids.size(0)) + " is used as the input, but a " +
                            (num_beam_groups_ > 1 ? "group beam size of " : "beam size of ") +
                            std::to_string(group_size_) + " is expected by the beam scorer.");
    at::Tensor scores = next_scores.to(at::kCPU, at::kDouble).contiguous();
    at::Tensor tokens = next_tokens.to(at::kCPU, at::kLong).contiguous();
    at::Tensor indices = next_indices.to(at::kCPU, at::kLong).contiguous();
    auto scores_a = scores.accessor<double, 2>();
    auto tokens_a = tokens.accessor<int64_t, 2>();
    auto indices_a = indices.accessor<int64_t, 2>();
    std::vector<double> beam_scores(batch * group_size_, 0.0);
    std::vector<int64_t> beam_tokens(batch * group_size_, 0), beam_idx_out(batch * group_size_, 0);
    auto is_eos = [&](int64_t token) {
      return std::find(eos_token_id.begin(), eos_token_id.end(), token) != eos_token_id.end();
    };

    for (int64_t batch_idx = 0; batch_idx < batch; ++batch_idx) {
      int64_t batch_group_idx = batch_idx * num_beam_groups_ + group_index;
      BeamHypotheses& hyps = beam_hyps_[batch_group_idx];
      if (done_[batch_group_idx]) {
        if (num_beams < hyps.size())
          throw GenerationError("Batch can only be done if at least " + std::to_string(num_beams) +
                                " beams have been generated");
        if (eos_token_id.empty() || !pad_token_id)
          throw GenerationError("Generated beams >= num_beams -> eos_token_id and pad_token have to be defined");
        // pad the batch
        for (int64_t j = 0; j < group_size_; ++j) {
          beam_scores[batch_idx * group_size_ + j] = 0;
          beam_tokens[batch_idx * group_size_ + j] = *pad_token_id;
          beam_idx_out[batch_idx * group_size_ + j] = 0;
        }
        continue;
      }
      // next tokens for this sentence
      int64_t beam_idx = 0;
      for (int64_t beam_token_rank = 0; beam_token_rank < tokens.size(1); ++beam_token_rank) {
        int64_t next_token = tokens_a[batch_idx][beam_token_rank];
        double next_score = scores_a[batch_idx][beam_token_rank];
        int64_t next_index = indices_a[batch_idx][beam_token_rank];
        int64_t batch_beam_idx = batch_idx * group_size_ + next_index;
        // add to generated hypotheses if end of sentence
        if (is_eos(next_token)) {
          // if beam_token does not belong to top num_beams tokens, it should not be added
          if (beam_token_rank >= group_size_) continue;
          std::optional<std::vector<int64_t>> beam_index;
          if (beam_indices) {
            beam_index = (*beam_indices)[batch_beam_idx];
            beam_index->push_back(batch_beam_idx);
          }
          hyps.add(input_ids[batch_beam_idx].clone(), next_score, std::move(beam_index), cur_len - decoder_prompt_len);
        } else {
          // add next predicted token since it is not eos_token
          beam_scores[batch_idx * group_size_ + beam_idx] = next_score;
          beam_tokens[batch_idx * group_size_ + beam_idx] = next_token;
          beam_idx_out[batch_idx * group_size_ + beam_idx] = batch_beam_idx;
          beam_idx += 1;
        }
        // once the beam for next step is full, don't add more tokens to it.
        if (beam_idx == group_size_) break;
      }
      if (beam_idx < group_size_)
        throw GenerationError("At most " + std::to_string(group_size_) +
                              " tokens of the top candidates can be equal to `eos_token_id`.");
      // Check if we are done so that we can save a pad step if all(done)
      double best = scores.select(0, batch_idx).max().item<double>();
      done_[batch_group_idx] = done_[batch_group_idx] || hyps.is_done(best, cur_len, decoder_prompt_len);
    }
    auto device = input_ids.device();
    return {at::tensor(beam_scores, at::kDouble).to(device, next_scores.scalar_type()),
            at::tensor(beam_tokens, at::kLong).to(device, next_tokens.scalar_type()),
            at::tensor(beam_idx_out, at::kLong).to(device, next_indices.scalar_type())};
  }

  FinalOutput finalize(const at::Tensor& input_ids, const at::Tensor& final_beam_scores, int64_t max_length,
                       std::optional<int64_t> pad_token_id, const std::vector<int64_t>& eos_token_id,
                       const BeamIndices* beam_indices, int64_t decoder_prompt_len) {
    int64_t batch = batch_size();
    at::Tensor final_scores = final_beam_scores.to(at::kCPU, at::kDouble).contiguous();
    // finalize all open beam hypotheses and add to generated hypotheses
    for (int64_t batch_group_idx = 0; batch_group_idx < static_cast<int64_t>(beam_hyps_.size()); ++batch_group_idx) {
      if (done_[batch_group_idx]) continue;
      // all open beam hypotheses are added to the beam hypothesis
      // beam hypothesis class automatically keeps the best beams
      for (int64_t index_per_group = 0; index_per_group < group_size_; ++index_per_group) {
        int64_t batch_beam_idx = batch_group_idx * group_size_ + index_per_group;
        double final_score = final_scores[batch_beam_idx].item<double>();
        at::Tensor final_tokens = input_ids[batch_beam_idx];
        std::optional<std::vector<int64_t>> beam_index;
        if (beam_indices) beam_index = (*beam_indices)[batch_beam_idx];
        int64_t generated_len = final_tokens.size(-1) - decoder_prompt_len;
        beam_hyps_[batch_group_idx].add(final_tokens, final_score, std::move(beam_index), generated_len);
      }
    }

    // select the best hypotheses
    int64_t n = batch * num_beam_hyps_to_keep_;
    std::vector<int64_t> sent_lengths(n);
    std::vector<BeamHypotheses::Beam> best;
    std::vector<float> best_scores(n, 0.0f);
    // retrieve best hypotheses
    for (int64_t i = 0; i < batch; ++i) {
      std::vector<BeamHypotheses::Beam> sorted_hyps;  // the beams of every group of this batch entry
      for (int64_t g = i * num_beam_groups_; g < (i + 1) * num_beam_groups_; ++g)
        sorted_hyps.insert(sorted_hyps.end(), beam_hyps_[g].beams.begin(), beam_hyps_[g].beams.end());
      std::stable_sort(sorted_hyps.begin(), sorted_hyps.end(),
                       [](const auto& a, const auto& b) { return a.score < b.score; });
      for (int64_t j = 0; j < num_beam_hyps_to_keep_; ++j) {
        BeamHypotheses::Beam best_hyp = sorted_hyps.back();
        sorted_hyps.pop_back();
        sent_lengths[num_beam_hyps_to_keep_ * i + j] = best_hyp.hyp.size(0);
        best_scores[i * num_beam_hyps_to_keep_ + j] = static_cast<float>(best_hyp.score);
        best.push_back(std::move(best_hyp));
      }
    }

    // prepare for adding eos
    int64_t min_len = *std::min_element(sent_lengths.begin(), sent_lengths.end());
    int64_t sent_lengths_max = *std::max_element(sent_lengths.begin(), sent_lengths.end()) + 1;
    int64_t sent_max_len = std::min(sent_lengths_max, max_length);
    at::Tensor decoded = at::empty({n, sent_max_len}, input_ids.options());
    at::Tensor indices;
    if (!best.empty() && best[0].beam_indices) indices = at::empty({n, sent_max_len}, input_ids.options());
    // shorter batches are padded if needed
    bool needs_fill = min_len != sent_lengths_max - 1;
    // transformers leaves the column after equal-length hypotheses to eos_token_id[0]; without eos, pad it.
    if (eos_token_id.empty() && min_len < sent_max_len) needs_fill = true;
    if (needs_fill) {
      if (!pad_token_id) throw GenerationError("`pad_token_id` has to be defined");
      decoded.fill_(*pad_token_id);
    }
    if (indices.defined()) indices.fill_(-1);
    // fill with hypotheses and eos_token_id if the latter fits in
    for (int64_t i = 0; i < n; ++i) {
      decoded[i].narrow(0, 0, sent_lengths[i]).copy_(best[i].hyp);
      if (indices.defined() && !best[i].beam_indices->empty()) {
        const auto& idx = *best[i].beam_indices;
        indices[i].narrow(0, 0, static_cast<int64_t>(idx.size())).copy_(at::tensor(idx, at::kLong));
      }
      // inserting only the first eos_token_id
      if (sent_lengths[i] < sent_max_len && !eos_token_id.empty()) decoded[i][sent_lengths[i]] = eos_token_id[0];
    }
    return {decoded, at::tensor(best_scores, at::kFloat).to(input_ids.device()), indices};
  }

  const int64_t num_beams;

 private:
  int64_t num_beam_hyps_to_keep_;
  int64_t num_beam_groups_;
  int64_t group_size_;
  std::vector<BeamHypotheses> beam_hyps_;
  std::vector<bool> done_;
};

// ---- decoding state ----

// A [N, capacity] buffer whose first `length` columns are the live tensor, so that adding a column per step writes in
// place instead of reallocating (torch.cat in transformers).
class GrowingColumns {
 public:
  GrowingColumns(const at::Tensor& initial, int64_t capacity) : length_(initial.size(1)) {
    buffer_ = at::empty({initial.size(0), std::max(capacity, length_)}, initial.options());
    buffer_.narrow(1, 0, length_).copy_(initial);
  }
  at::Tensor view() const { return buffer_.narrow(1, 0, length_); }
  void append(const at::Tensor& column) {
    reserve_one();
    buffer_.select(1, length_).copy_(column);
    ++length_;
  }
  void append_value(int64_t value) {
    reserve_one();
    buffer_.select(1, length_).fill_(value);
    ++length_;
  }

 private:
  void reserve_one() {
    if (length_ < buffer_.size(1)) return;
    at::Tensor bigger = at::empty({buffer_.size(0), std::max<int64_t>(2 * length_, 1)}, buffer_.options());
    bigger.narrow(1, 0, length_).copy_(view());
    buffer_ = bigger;
  }
  at::Tensor buffer_;
  int64_t length_;
};

struct LoopOptions {
  std::vector<LogitsProcessor> logits_processor;
  std::vector<LogitsProcessor> logits_warper;  // sampling modes only
  StoppingCriteriaList stopping_criteria;
  int64_t max_length = 20;  // stopping_criteria.max_length
  std::optional<int64_t> pad_token_id;
  std::vector<int64_t> eos_token_id;
  bool output_scores = false, output_logits = false, output_attentions = false, output_hidden_states = false;
  bool is_encoder_decoder = false;
  c10::optional<at::Generator> generator;
};

void store_step_outputs(GenerateOutput& result, const LoopOptions& opt, const ModelOutput& outputs,
                        const at::Tensor& scores, const at::Tensor& raw_logits) {
  if (opt.output_scores) result.scores.push_back(scores);
  if (opt.output_logits) result.logits.push_back(raw_logits);
  if (opt.is_encoder_decoder) {
    if (opt.output_attentions) {
      result.decoder_attentions.push_back(outputs.decoder_attentions);
      result.cross_attentions.push_back(outputs.cross_attentions);
    }
    if (opt.output_hidden_states) result.decoder_hidden_states.push_back(outputs.decoder_hidden_states);
    return;
  }
  if (opt.output_attentions) result.attentions.push_back(outputs.attentions);
  if (opt.output_hidden_states) result.hidden_states.push_back(outputs.hidden_states);
}

ModelOutput model_step(PreTrainedModel& model, const at::Tensor& input_ids, const ModelInputs& model_kwargs,
                       const LoopOptions& opt) {
  ModelInputs model_inputs = model.prepare_inputs_for_generation(input_ids, model_kwargs);
  model_inputs.output_attentions = opt.output_attentions;
  model_inputs.output_hidden_states = opt.output_hidden_states;
  return model.forward(model_inputs);
}

// _update_model_kwargs_for_generation. `attention_mask` holds the growing mask of decoder-only models.
void update_model_kwargs_for_generation(const ModelOutput& outputs, ModelInputs& model_kwargs, bool is_encoder_decoder,
                                        GrowingColumns* attention_mask, int64_t max_length) {
  // update past_key_values
  bool first = !model_kwargs.past_key_values;
  model_kwargs.past_key_values = outputs.past_key_values;
  if (first) {
    if (auto* cache = dynamic_cast<DynamicCache*>(model_kwargs.past_key_values.get())) cache->reserve(max_length);
    if (auto* cache = dynamic_cast<EncoderDecoderCache*>(model_kwargs.past_key_values.get()))
      cache->self_attention_cache->reserve(max_length);
  }
  // update token_type_ids with last value
  if (model_kwargs.token_type_ids.defined()) {
    const at::Tensor& token_type_ids = model_kwargs.token_type_ids;
    model_kwargs.token_type_ids = at::cat({token_type_ids, token_type_ids.select(1, -1).unsqueeze(-1)}, -1);
  }
  if (!is_encoder_decoder) {
    // update attention mask
    if (attention_mask) {
      attention_mask->append_value(1);
      model_kwargs.attention_mask = attention_mask->view();
    } else if (model_kwargs.attention_mask.defined()) {
      const at::Tensor& mask = model_kwargs.attention_mask;
      model_kwargs.attention_mask = at::cat({mask, at::ones({mask.size(0), 1}, mask.options())}, -1);
    }
  } else {
    // update decoder attention mask
    if (model_kwargs.decoder_attention_mask.defined()) {
      const at::Tensor& mask = model_kwargs.decoder_attention_mask;
      model_kwargs.decoder_attention_mask = at::cat({mask, at::ones({mask.size(0), 1}, mask.options())}, -1);
    }
  }
  if (model_kwargs.cache_position.defined()) {
    const at::Tensor& cache_position = model_kwargs.cache_position;
    model_kwargs.cache_position = cache_position.narrow(0, cache_position.size(0) - 1, 1) + 1;
  }
}

// The attention mask buffer of a decoder-only loop (its capacity: the mask plus every token still to generate).
std::optional<GrowingColumns> attention_mask_buffer(const ModelInputs& model_kwargs, const at::Tensor& input_ids,
                                                    int64_t max_length, bool is_encoder_decoder) {
  if (is_encoder_decoder || !model_kwargs.attention_mask.defined() || model_kwargs.attention_mask.dim() != 2)
    return std::nullopt;
  int64_t to_generate = std::max<int64_t>(max_length - input_ids.size(-1), 0);
  return GrowingColumns(model_kwargs.attention_mask, model_kwargs.attention_mask.size(1) + to_generate);
}

int64_t initial_cur_len(const at::Tensor& input_ids, const ModelInputs& model_kwargs) {
  int64_t cur_len = input_ids.size(1);
  if (model_kwargs.inputs_embeds.defined()) cur_len = model_kwargs.inputs_embeds.size(1);
  return cur_len;
}

// _greedy_search and _sample: one loop, `do_sample` selects argmax or warpers + multinomial.
GenerateOutput greedy_search_or_sample(PreTrainedModel& model, const at::Tensor& input_ids_in, bool do_sample,
                                       const LoopOptions& opt, const TokenCallback& streamer,
                                       ModelInputs model_kwargs) {
  GenerateOutput result;
  const bool has_eos = !opt.eos_token_id.empty();
  int64_t max_length = opt.max_length;
  int64_t batch_size = input_ids_in.size(0);
  int64_t cur_len = initial_cur_len(input_ids_in, model_kwargs);
  GrowingColumns input_ids(input_ids_in, max_length);
  std::optional<GrowingColumns> attention_mask =
      attention_mask_buffer(model_kwargs, input_ids_in, max_length, opt.is_encoder_decoder);
  if (attention_mask) model_kwargs.attention_mask = attention_mask->view();

  // keep track of which sequences are already finished
  bool this_peer_finished = false;
  at::Tensor unfinished_sequences = at::ones({batch_size}, input_ids_in.options().dtype(at::kLong));
  model_kwargs.cache_position = at::arange(cur_len, input_ids_in.options().dtype(at::kLong));

  while (!this_peer_finished) {
    at::Tensor ids = input_ids.view();
    // prepare model inputs; forward pass to get next token
    ModelOutput outputs = model_step(model, ids, model_kwargs, opt);
    at::Tensor next_token_logits = outputs.logits.select(1, -1);

    // pre-process distribution
    at::Tensor next_token_scores = apply_logits_processors(opt.logits_processor, ids, next_token_logits);
    if (do_sample) next_token_scores = apply_logits_processors(opt.logits_warper, ids, next_token_scores);

    // Store scores, attentions and hidden_states when required
    store_step_outputs(result, opt, outputs, next_token_scores, next_token_logits);

    at::Tensor next_tokens;
    if (do_sample) {
      // sample
      at::Tensor probs = at::softmax(next_token_scores, -1);
      next_tokens = at::multinomial(probs, 1, /*replacement=*/false, opt.generator).squeeze(1);
    } else {
      // argmax
      next_tokens = at::argmax(next_token_scores, -1);
    }

    // finished sentences should have their next token be a padding token
    if (has_eos) {
      if (!opt.pad_token_id)
        throw GenerationError("If `eos_token_id` is defined, make sure that `pad_token_id` is defined.");
      next_tokens = next_tokens * unfinished_sequences + *opt.pad_token_id * (1 - unfinished_sequences);
    }

    // update generated ids, model inputs, and length for next step
    input_ids.append(next_tokens);
    if (streamer) streamer(next_tokens.cpu());
    update_model_kwargs_for_generation(outputs, model_kwargs, opt.is_encoder_decoder,
                                       attention_mask ? &*attention_mask : nullptr, max_length);

    unfinished_sequences = unfinished_sequences & ~opt.stopping_criteria(input_ids.view(), next_token_scores);
    this_peer_finished = unfinished_sequences.max().item<int64_t>() == 0;
  }
  result.sequences = input_ids.view().contiguous();
  result.past_key_values = model_kwargs.past_key_values;
  return result;
}

// _beam_search and _beam_sample: one loop; `do_sample` applies the warpers and samples 2 * num_beams candidates
// instead of taking the top ones, and starts every beam at score 0.
GenerateOutput beam_search_or_sample(PreTrainedModel& model, at::Tensor input_ids, BeamSearchScorer& beam_scorer,
                                     bool do_sample, const LoopOptions& opt, ModelInputs model_kwargs) {
  GenerateOutput result;
  int64_t batch_size = beam_scorer.batch_size();
  int64_t num_beams = beam_scorer.num_beams;
  int64_t max_length = opt.max_length;
  int64_t batch_beam_size = input_ids.size(0);
  int64_t cur_len = initial_cur_len(input_ids, model_kwargs);
  model_kwargs.cache_position = at::arange(cur_len, input_ids.options().dtype(at::kLong));
  if (num_beams * batch_size != batch_beam_size)
    throw GenerationError("Batch dimension of `input_ids` should be " + std::to_string(num_beams * batch_size) +
                          ", but is " + std::to_string(batch_beam_size) + ".");
  std::optional<GrowingColumns> attention_mask =
      attention_mask_buffer(model_kwargs, input_ids, max_length, opt.is_encoder_decoder);
  if (attention_mask) model_kwargs.attention_mask = attention_mask->view();

  std::optional<BeamIndices> beam_indices;
  if (opt.output_scores) beam_indices = BeamIndices(batch_beam_size);

  // initialise score of first beam with 0 and the rest with -1e9. This makes sure that only tokens
  // of the first beam are considered to avoid sampling the exact same tokens across all beams.
  at::Tensor beam_scores = at::zeros({batch_size, num_beams}, input_ids.options().dtype(at::kFloat));
  if (!do_sample) beam_scores.narrow(1, 1, num_beams - 1).fill_(-1e9);
  beam_scores = beam_scores.view({batch_size * num_beams});

  bool this_peer_finished = false;
  int64_t decoder_prompt_len = input_ids.size(-1);  // record the prompt length of decoder
  const int64_t n_eos_tokens = static_cast<int64_t>(opt.eos_token_id.size());

  while (!this_peer_finished) {
    ModelOutput outputs = model_step(model, input_ids, model_kwargs, opt);
    at::Tensor next_token_logits = outputs.logits.select(1, -1);
    at::Tensor next_token_scores = at::log_softmax(next_token_logits, -1);  // (batch_size * num_beams, vocab_size)

    at::Tensor next_token_scores_processed =
        apply_logits_processors(opt.logits_processor, input_ids, next_token_scores);
    if (do_sample)
      next_token_scores_processed = apply_logits_processors(opt.logits_warper, input_ids, next_token_scores_processed);
    next_token_scores = next_token_scores_processed + beam_scores.unsqueeze(1).expand_as(next_token_scores_processed);

    // Store scores, attentions and hidden_states when required
    store_step_outputs(result, opt, outputs, next_token_scores_processed, next_token_logits);

    // reshape for beam search
    int64_t vocab_size = next_token_scores.size(-1);
    next_token_scores = next_token_scores.view({batch_size, num_beams * vocab_size});

    at::Tensor next_tokens;
    if (do_sample) {
      at::Tensor probs = at::softmax(next_token_scores, -1);
      next_tokens = at::multinomial(probs, 2 * num_beams, /*replacement=*/false, opt.generator);
      next_token_scores = at::gather(next_token_scores, -1, next_tokens);
      auto [sorted_scores, _indices] = at::sort(next_token_scores, /*dim=*/1, /*descending=*/true);
      next_token_scores = sorted_scores;
      next_tokens = at::gather(next_tokens, -1, _indices);
    } else {
      // Sample 1 + len(eos_token_id) next tokens for each beam so we have at least 1 non eos token per beam.
      auto [top_scores, top_tokens] = at::topk(next_token_scores, std::max<int64_t>(2, 1 + n_eos_tokens) * num_beams,
                                               /*dim=*/1, /*largest=*/true, /*sorted=*/true);
      next_token_scores = top_scores;
      next_tokens = top_tokens;
    }
    at::Tensor next_indices = at::div(next_tokens, vocab_size, "floor");
    next_tokens = next_tokens % vocab_size;

    // stateless
    BeamSearchScorer::StepOutput beam_outputs =
        beam_scorer.process(input_ids, next_token_scores, next_tokens, next_indices, opt.pad_token_id,
                            opt.eos_token_id, beam_indices ? &*beam_indices : nullptr, decoder_prompt_len);
    beam_scores = beam_outputs.next_beam_scores;
    const at::Tensor& beam_next_tokens = beam_outputs.next_beam_tokens;
    const at::Tensor& beam_idx = beam_outputs.next_beam_indices;

    input_ids = at::cat({input_ids.index_select(0, beam_idx), beam_next_tokens.unsqueeze(-1)}, -1);

    update_model_kwargs_for_generation(outputs, model_kwargs, opt.is_encoder_decoder,
                                       attention_mask ? &*attention_mask : nullptr, max_length);
    if (model_kwargs.past_key_values) model._reorder_cache(*model_kwargs.past_key_values, beam_idx);

    if (beam_indices) {
      at::Tensor idx = beam_idx.to(at::kCPU, at::kLong).contiguous();
      const int64_t* p = idx.data_ptr<int64_t>();
      BeamIndices next(beam_indices->size());
      for (size_t i = 0; i < next.size(); ++i) {
        next[i] = (*beam_indices)[p[i]];
        next[i].push_back(p[i]);
      }
      beam_indices = std::move(next);
    }

    // increase cur_len
    cur_len = cur_len + 1;
    if (beam_scorer.is_done() || opt.stopping_criteria(input_ids, next_token_scores_processed).all().item<bool>())
      this_peer_finished = true;
  }

  BeamSearchScorer::FinalOutput sequence_outputs =
      beam_scorer.finalize(input_ids, beam_scores, max_length, opt.pad_token_id, opt.eos_token_id,
                           beam_indices ? &*beam_indices : nullptr, decoder_prompt_len);
  result.sequences = sequence_outputs.sequences;
  result.sequences_scores = sequence_outputs.sequence_scores;
  result.beam_indices = sequence_outputs.beam_indices;
  result.past_key_values = model_kwargs.past_key_values;
  return result;
}

// ---- GenerationMixin helpers ----

// _maybe_initialize_input_ids_for_generation
at::Tensor maybe_initialize_input_ids_for_generation(const at::Tensor& inputs, std::optional<int64_t> bos_token_id,
                                                     const ModelInputs& model_kwargs, bool is_encoder_decoder) {
  if (inputs.defined()) return inputs;
  const auto& encoder_outputs = model_kwargs.encoder_outputs;
  if (is_encoder_decoder && encoder_outputs && encoder_outputs->last_hidden_state.defined()) {
    // make dummy input_ids with value -100, as a sanity check ensuring that they won't be used for encoding
    const at::Tensor& last = encoder_outputs->last_hidden_state;
    return at::full({last.size(0), last.size(1)}, -100, at::TensorOptions(at::kLong).device(last.device()));
  }
  // If there is some tensor in `model_kwargs`, we can infer the batch size from it.
  int64_t batch_size = 1;
  for (const at::Tensor* t : {&model_kwargs.attention_mask, &model_kwargs.inputs_embeds, &model_kwargs.position_ids,
                              &model_kwargs.token_type_ids})
    if (t->defined()) {
      batch_size = t->size(0);
      break;
    }
  auto options = at::TensorOptions(at::kLong);
  if (model_kwargs.inputs_embeds.defined())
    return at::ones({batch_size, 0}, options.device(model_kwargs.inputs_embeds.device()));
  if (!bos_token_id) throw GenerationError("`bos_token_id` has to be defined when no `input_ids` are provided.");
  return at::full({batch_size, 1}, *bos_token_id, options);
}

// _prepare_attention_mask_for_generation
at::Tensor prepare_attention_mask_for_generation(const at::Tensor& inputs, std::optional<int64_t> pad_token_id,
                                                 const std::optional<TokenIds>& eos_token_id) {
  bool is_input_ids = inputs.dim() == 2 && (inputs.scalar_type() == at::kInt || inputs.scalar_type() == at::kLong);
  bool is_pad_token_in_inputs = is_input_ids && pad_token_id && inputs.eq(*pad_token_id).any().item<bool>();
  bool is_pad_token_not_equal_to_eos_token_id =
      !eos_token_id || !pad_token_id ||
      std::find(eos_token_id->begin(), eos_token_id->end(), *pad_token_id) == eos_token_id->end();
  // Check if input is input_ids and padded -> only then is attention_mask defined
  if (is_input_ids && is_pad_token_in_inputs && is_pad_token_not_equal_to_eos_token_id)
    return inputs.ne(*pad_token_id).to(at::kLong);
  return at::ones({inputs.size(0), inputs.size(1)}, inputs.options().dtype(at::kLong));
}

// _expand_inputs_for_generation: every batch tensor repeated `expand_size` times along dim 0 (not cache_position).
void expand_inputs_for_generation(int64_t expand_size, bool is_encoder_decoder, at::Tensor& input_ids,
                                  ModelInputs& model_kwargs) {
  if (expand_size == 1) return;
  auto expand = [expand_size](at::Tensor& t) {
    if (t.defined()) t = t.repeat_interleave(expand_size, 0);
  };
  expand(input_ids);
  expand(model_kwargs.input_ids);
  expand(model_kwargs.attention_mask);
  expand(model_kwargs.position_ids);
  expand(model_kwargs.inputs_embeds);
  expand(model_kwargs.token_type_ids);
  expand(model_kwargs.labels);
  expand(model_kwargs.decoder_input_ids);
  expand(model_kwargs.decoder_attention_mask);
  expand(model_kwargs.decoder_inputs_embeds);
  expand(model_kwargs.encoder_hidden_states);
  expand(model_kwargs.encoder_attention_mask);
  // head masks have no batch dimension ([layers, heads]): transformers would repeat them too, which cannot work.
  for (auto& [name, t] : model_kwargs.extra) expand(t);
  if (is_encoder_decoder) {
    if (!model_kwargs.encoder_outputs)
      throw GenerationError("If `is_encoder_decoder` is True, make sure that `encoder_outputs` is defined.");
    // Only the tensor fields of the encoder output are expanded (its per-layer tuples are not), as transformers.
    auto encoder_outputs = std::make_shared<ModelOutput>(*model_kwargs.encoder_outputs);
    expand(encoder_outputs->last_hidden_state);
    expand(encoder_outputs->pooler_output);
    for (auto& [name, t] : encoder_outputs->extra) expand(t);
    model_kwargs.encoder_outputs = encoder_outputs;
  }
}

// _prepare_encoder_decoder_kwargs_for_generation: runs the encoder once; its output goes to
// model_kwargs.encoder_outputs. Decoder-only arguments (decoder_*, cross_attn*, use_cache) are not passed.
void prepare_encoder_decoder_kwargs_for_generation(PreTrainedModel& model, const at::Tensor& inputs_tensor,
                                                   ModelInputs& model_kwargs, const std::string& model_input_name) {
  // 1. get encoder
  std::shared_ptr<PreTrainedModel> encoder = model.get_encoder();
  if (!encoder)
    throw GenerationError(model.class_name + " is an encoder-decoder model (config.is_encoder_decoder) but has no "
                          "encoder (get_encoder)");
  // 2. Prepare encoder args and encoder kwargs from model kwargs.
  ModelInputs encoder_kwargs;
  encoder_kwargs.attention_mask = model_kwargs.attention_mask;
  encoder_kwargs.head_mask = model_kwargs.head_mask;
  encoder_kwargs.token_type_ids = model_kwargs.token_type_ids;
  encoder_kwargs.position_ids = model_kwargs.position_ids;
  encoder_kwargs.inputs_embeds = model_kwargs.inputs_embeds;
  encoder_kwargs.output_attentions = model_kwargs.output_attentions;
  encoder_kwargs.output_hidden_states = model_kwargs.output_hidden_states;
  for (const auto& [name, t] : model_kwargs.extra)
    if (name.rfind("decoder_", 0) != 0 && name.rfind("cross_attn", 0) != 0) encoder_kwargs.extra[name] = t;
  // 3. make sure that encoder returns `ModelOutput`
  if (model_input_name == "inputs_embeds") encoder_kwargs.inputs_embeds = inputs_tensor;
  else if (model_input_name == "input_ids") encoder_kwargs.input_ids = inputs_tensor;
  else encoder_kwargs.extra[model_input_name] = inputs_tensor;
  model_kwargs.encoder_outputs = std::make_shared<ModelOutput>(encoder->forward(encoder_kwargs));
}

// _prepare_decoder_input_ids_for_generation: the decoder prompt, starting with decoder_start_token_id.
at::Tensor prepare_decoder_input_ids_for_generation(PreTrainedModel& model, int64_t batch_size,
                                                    const std::string& model_input_name, ModelInputs& model_kwargs,
                                                    const GenerationConfig& generation_config,
                                                    const at::Device& device) {
  // 1. Check whether the user has defined `decoder_input_ids` manually. To facilitate in terms of input naming,
  // we also allow the user to pass it under `input_ids`, if the encoder does not use it as the main input.
  at::Tensor decoder_input_ids;
  if (model_kwargs.decoder_input_ids.defined()) {
    decoder_input_ids = model_kwargs.decoder_input_ids;
    model_kwargs.decoder_input_ids = at::Tensor();
  } else if (model_kwargs.input_ids.defined() && model_input_name != "input_ids") {
    decoder_input_ids = model_kwargs.input_ids;
    model_kwargs.input_ids = at::Tensor();
  }
  // 2. Encoder-decoder models expect the `decoder_input_ids` to start with a special token. Let's ensure that.
  // (_get_decoder_start_token_id)
  std::optional<int64_t> decoder_start_token_id = generation_config.decoder_start_token_id;
  if (!decoder_start_token_id) decoder_start_token_id = model.generation_config.decoder_start_token_id;
  if (!decoder_start_token_id) decoder_start_token_id = generation_config.bos_token_id;
  if (!decoder_start_token_id) decoder_start_token_id = model.generation_config.bos_token_id;
  if (!decoder_start_token_id)
    throw GenerationError("`decoder_start_token_id` or `bos_token_id` has to be defined for encoder-decoder "
                          "generation.");
  at::Tensor decoder_input_ids_start =
      at::full({batch_size, 1}, *decoder_start_token_id, at::TensorOptions(at::kLong).device(device));
  // no user input -> use decoder_start_token_id as decoder_input_ids
  if (!decoder_input_ids.defined()) return decoder_input_ids_start;
  if (decoder_input_ids.dim() != 2 || decoder_input_ids.size(0) != batch_size)
    throw GenerationError("decoder_input_ids must be [batch, seq] with batch " + std::to_string(batch_size) +
                          ", got " + c10::str(decoder_input_ids.sizes()));
  // user input but doesn't start with decoder_start_token_id -> prepend decoder_start_token_id (and adjust
  // decoder_attention_mask if provided)
  if (decoder_input_ids.size(1) == 0 ||
      decoder_input_ids.select(1, 0).ne(*decoder_start_token_id).all().item<bool>()) {
    decoder_input_ids = at::cat({decoder_input_ids_start, decoder_input_ids.to(at::kLong)}, -1);
    if (model_kwargs.decoder_attention_mask.defined()) {
      const at::Tensor& mask = model_kwargs.decoder_attention_mask;
      model_kwargs.decoder_attention_mask = at::cat({at::ones({mask.size(0), 1}, mask.options()), mask}, -1);
    }
  }
  return decoder_input_ids;
}

// _group_beam_search: the beams of each batch entry are split in num_beam_groups groups decoded one after the other
// within a step; processors see `current_tokens` (the tokens the earlier groups picked) through ScopedBeamGroupArgs.
GenerateOutput group_beam_search(PreTrainedModel& model, at::Tensor input_ids, BeamSearchScorer& beam_scorer,
                                 const LoopOptions& opt, ModelInputs model_kwargs) {
  GenerateOutput result;
  const int64_t num_beams = beam_scorer.num_beams;
  const int64_t num_beam_groups = beam_scorer.num_beam_groups();
  const int64_t num_sub_beams = num_beams / num_beam_groups;
  const int64_t batch_size = beam_scorer.batch_size();
  const int64_t max_length = opt.max_length;
  const at::Device device = input_ids.device();
  const int64_t batch_beam_size = input_ids.size(0);
  int64_t cur_len = initial_cur_len(input_ids, model_kwargs);
  model_kwargs.cache_position = at::arange(cur_len, input_ids.options().dtype(at::kLong));
  if (num_beams * batch_size != batch_beam_size)
    throw GenerationError("Batch dimension of `input_ids` should be " + std::to_string(num_beams * batch_size) +
                          ", but is " + std::to_string(batch_beam_size) + ".");
  std::optional<GrowingColumns> attention_mask =
      attention_mask_buffer(model_kwargs, input_ids, max_length, opt.is_encoder_decoder);
  if (attention_mask) model_kwargs.attention_mask = attention_mask->view();
  input_ids = input_ids.clone();  // rows are rewritten in place below

  // per group, per (batch, sub-beam) row: the beam of each step (indices inside the group)
  std::optional<std::vector<BeamIndices>> beam_indices;
  if (opt.output_scores) beam_indices.emplace(num_beam_groups, BeamIndices(num_sub_beams * batch_size));
  auto flat_beam_indices = [&]() {  // sum(beam_indices, ())
    BeamIndices flat;
    for (const auto& group : *beam_indices) flat.insert(flat.end(), group.begin(), group.end());
    return flat;
  };

  // initialise score of first beam of each group with 0 and the rest with -1e9. This ensures that the beams in
  // the same group don't produce same tokens everytime.
  at::Tensor beam_scores = at::full({batch_size, num_beams}, -1e9, input_ids.options().dtype(at::kFloat));
  beam_scores.slice(1, 0, num_beams, num_sub_beams).fill_(0);
  beam_scores = beam_scores.view({batch_size * num_beams});

  bool this_peer_finished = false;
  const int64_t decoder_prompt_len = input_ids.size(-1);  // record the prompt length of decoder
  const int64_t n_eos_tokens = static_cast<int64_t>(opt.eos_token_id.size());
  while (!this_peer_finished) {
    // predicted tokens in cur_len step
    at::Tensor current_tokens = at::zeros({batch_size * num_beams}, input_ids.options());
    // indices which will form the beams in the next time step
    at::Tensor reordering_indices = at::zeros({batch_size * num_beams}, input_ids.options().dtype(at::kLong));

    // do one decoder step on all beams of all sentences in batch
    ModelOutput outputs = model_step(model, input_ids, model_kwargs, opt);
    at::Tensor last_logits = outputs.logits.select(1, -1);
    at::Tensor processed_score;
    if (opt.output_scores) processed_score = at::zeros_like(last_logits);

    for (int64_t beam_group_idx = 0; beam_group_idx < num_beam_groups; ++beam_group_idx) {
      int64_t group_start_idx = beam_group_idx * num_sub_beams;
      int64_t group_end_idx = std::min(group_start_idx + num_sub_beams, num_beams);
      int64_t group_size = group_end_idx - group_start_idx;

      // indices of beams of current group among all sentences in batch
      std::vector<int64_t> indices;
      for (int64_t batch_idx = 0; batch_idx < batch_size; ++batch_idx)
        for (int64_t idx = group_start_idx; idx < group_end_idx; ++idx) indices.push_back(batch_idx * num_beams + idx);
      at::Tensor batch_group_indices = at::tensor(indices, at::kLong).to(device);
      at::Tensor group_input_ids = input_ids.index_select(0, batch_group_indices);

      // select outputs of beams of current group only
      at::Tensor next_token_logits = last_logits.index_select(0, batch_group_indices);
      at::Tensor next_token_scores = at::log_softmax(next_token_logits, -1);  // (batch_size * group_size, vocab_size)
      int64_t vocab_size = next_token_scores.size(-1);

      at::Tensor next_token_scores_processed;
      {
        BeamGroupArgs args{current_tokens, beam_group_idx};
        ScopedBeamGroupArgs scope(args);
        next_token_scores_processed = apply_logits_processors(opt.logits_processor, group_input_ids, next_token_scores);
      }
      next_token_scores =
          next_token_scores_processed + beam_scores.index_select(0, batch_group_indices).unsqueeze(-1);
      if (opt.output_scores) processed_score.index_copy_(0, batch_group_indices, next_token_scores_processed);

      // reshape for beam search
      next_token_scores = next_token_scores.view({batch_size, group_size * vocab_size});
      // Sample 1 + len(eos_token_id) next tokens for each beam so we have at least 1 non eos token per beam.
      auto [top_scores, top_tokens] = at::topk(next_token_scores, std::max<int64_t>(2, 1 + n_eos_tokens) * group_size,
                                               /*dim=*/1, /*largest=*/true, /*sorted=*/true);
      at::Tensor next_indices = at::div(top_tokens, vocab_size, "floor");
      at::Tensor next_tokens = top_tokens % vocab_size;

      // stateless
      std::optional<BeamIndices> process_beam_indices;
      if (beam_indices) process_beam_indices = flat_beam_indices();
      BeamSearchScorer::StepOutput beam_outputs = beam_scorer.process(
          group_input_ids, top_scores, next_tokens, next_indices, opt.pad_token_id, opt.eos_token_id,
          process_beam_indices ? &*process_beam_indices : nullptr, decoder_prompt_len, beam_group_idx);
      beam_scores.index_copy_(0, batch_group_indices, beam_outputs.next_beam_scores);
      const at::Tensor& beam_next_tokens = beam_outputs.next_beam_tokens;
      const at::Tensor& beam_idx = beam_outputs.next_beam_indices;

      if (beam_indices) {
        at::Tensor idx = beam_idx.to(at::kCPU, at::kLong).contiguous();
        const int64_t* p = idx.data_ptr<int64_t>();
        BeamIndices& group = (*beam_indices)[beam_group_idx];
        BeamIndices next(group.size());
        for (size_t i = 0; i < next.size(); ++i) {
          next[i] = group[p[i]];
          next[i].push_back(p[i]);
        }
        group = std::move(next);
      }

      at::Tensor selected = group_input_ids.index_select(0, beam_idx);
      input_ids.index_copy_(0, batch_group_indices, selected);
      group_input_ids = at::cat({selected, beam_next_tokens.unsqueeze(-1)}, -1);
      current_tokens.index_copy_(0, batch_group_indices, group_input_ids.select(1, -1));

      // (beam_idx // group_size) -> batch_idx
      // (beam_idx % group_size) -> offset of idx inside the group
      reordering_indices.index_copy_(
          0, batch_group_indices,
          num_beams * at::div(beam_idx, group_size, "floor") + group_start_idx + (beam_idx % group_size));
    }

    // Store scores, attentions and hidden_states when required
    store_step_outputs(result, opt, outputs, processed_score, last_logits);

    input_ids = at::cat({input_ids, current_tokens.unsqueeze(-1)}, -1);
    update_model_kwargs_for_generation(outputs, model_kwargs, opt.is_encoder_decoder,
                                       attention_mask ? &*attention_mask : nullptr, max_length);
    if (model_kwargs.past_key_values) model._reorder_cache(*model_kwargs.past_key_values, reordering_indices);

    // increase cur_len
    cur_len = cur_len + 1;
    if (beam_scorer.is_done() || opt.stopping_criteria(input_ids, processed_score).all().item<bool>())
      this_peer_finished = true;
  }

  std::optional<BeamIndices> final_beam_indices;
  if (beam_indices) final_beam_indices = flat_beam_indices();
  BeamSearchScorer::FinalOutput sequence_outputs =
      beam_scorer.finalize(input_ids, beam_scores, max_length, opt.pad_token_id, opt.eos_token_id,
                           final_beam_indices ? &*final_beam_indices : nullptr, decoder_prompt_len);
  result.sequences = sequence_outputs.sequences;
  result.sequences_scores = sequence_outputs.sequence_scores;
  result.beam_indices = sequence_outputs.beam_indices;
  result.past_key_values = model_kwargs.past_key_values;
  return result;
}

// _ranking_fast: reranks the top_k candidates by (1 - alpha) * model confidence - alpha * degeneration penalty (the
// highest cosine similarity of the candidate's hidden state with the context's). Returns the best candidate per row.
at::Tensor ranking_fast(const at::Tensor& context_hidden, const at::Tensor& next_hidden,
                        const at::Tensor& next_top_k_probs, double alpha, int64_t beam_width) {
  at::Tensor norm_context_hidden = context_hidden / context_hidden.norm(2, {2}, /*keepdim=*/true);
  at::Tensor norm_next_hidden = next_hidden / next_hidden.norm(2, {2}, /*keepdim=*/true);
  at::Tensor cosine_matrix = at::matmul(norm_context_hidden, norm_next_hidden.transpose(1, 2)).squeeze(-1);  // [B*K, S]
  at::Tensor degeneration_penalty = std::get<0>(cosine_matrix.max(-1));  // [B*K]
  at::Tensor probs = next_top_k_probs.view(-1);                         // [B*K]
  at::Tensor contrastive_score = (1.0 - alpha) * probs - alpha * degeneration_penalty;
  contrastive_score = contrastive_score.view({-1, beam_width});  // [B, K]
  return std::get<1>(contrastive_score.max(-1));                 // [B]
}

// _contrastive_search (the batched path; `low_memory` is not needed: the outputs are the same).
GenerateOutput contrastive_search(PreTrainedModel& model, const at::Tensor& input_ids_in, int64_t top_k,
                                  double penalty_alpha, const LoopOptions& opt, const TokenCallback& streamer,
                                  ModelInputs model_kwargs) {
  GenerateOutput result;
  const bool has_eos = !opt.eos_token_id.empty();
  const bool is_encoder_decoder = opt.is_encoder_decoder;
  const int64_t max_length = opt.max_length;
  const int64_t batch_size = input_ids_in.size(0);
  int64_t cur_len = initial_cur_len(input_ids_in, model_kwargs);
  GrowingColumns input_ids(input_ids_in, max_length);
  at::Tensor unfinished_sequences = at::ones({batch_size}, input_ids_in.options().dtype(at::kLong));
  model_kwargs.cache_position = at::arange(cur_len, input_ids_in.options().dtype(at::kLong));
  const at::Tensor batch_rows = at::arange(batch_size, input_ids_in.options().dtype(at::kLong));
  const at::Tensor expand_rows = batch_rows.repeat_interleave(top_k);

  auto forward_with_hidden_states = [&](const at::Tensor& ids) {
    ModelInputs model_inputs = model.prepare_inputs_for_generation(ids, model_kwargs);
    model_inputs.output_hidden_states = true;
    model_inputs.output_attentions = opt.output_attentions;
    return model.forward(model_inputs);
  };
  auto last_layer = [&](const ModelOutput& out) -> const std::vector<at::Tensor>& {
    const auto& layers = is_encoder_decoder ? out.decoder_hidden_states : out.hidden_states;
    if (layers.empty())
      throw GenerationError(model.class_name + " returned no hidden states with output_hidden_states=True, which "
                            "contrastive search needs.");
    return layers;
  };

  ModelOutput outputs;
  at::Tensor last_hidden_states, logit_for_next_step;
  bool first_step = true;
  bool this_peer_finished = false;
  while (!this_peer_finished) {
    // if the first step in the loop, encode all the prefix and obtain: (1) past_key_values;
    // (2) last_hidden_states; (3) logit_for_next_step; (4) update model kwargs for the next step
    if (first_step) {
      first_step = false;
      model_kwargs.use_cache = true;
      outputs = forward_with_hidden_states(input_ids.view());
      // last decoder hidden states will be used to compute the degeneration penalty (cosine similarity with
      // previous tokens)
      last_hidden_states = last_layer(outputs).back();
      // next logit for contrastive search to select top-k candidate tokens
      logit_for_next_step = outputs.logits.select(1, -1);
      update_model_kwargs_for_generation(outputs, model_kwargs, is_encoder_decoder, nullptr, max_length);
      // Expands model inputs top_k times, for batched forward passes (akin to beam search).
      at::Tensor no_input_ids;
      expand_inputs_for_generation(top_k, is_encoder_decoder, no_input_ids, model_kwargs);
      if (!model_kwargs.past_key_values)
        throw GenerationError(model.class_name + " does not support caching and therefore **can't** be used for "
                              "contrastive search.");
    }
    at::Tensor ids = input_ids.view();

    // contrastive_search main logic start:
    // contrastive search decoding consists of two steps: (1) candidate tokens recall; (2) candidate re-rank by
    // degeneration penalty
    at::Tensor processed_logit_for_next_step = apply_logits_processors(opt.logits_processor, ids, logit_for_next_step);
    processed_logit_for_next_step = apply_logits_processors(opt.logits_warper, ids, processed_logit_for_next_step);
    at::Tensor next_probs = at::softmax(processed_logit_for_next_step, -1);
    auto [top_k_probs, top_k_ids] = at::topk(next_probs, top_k, /*dim=*/-1);

    // Store scores, attentions and hidden_states when required
    store_step_outputs(result, opt, outputs, processed_logit_for_next_step, logit_for_next_step);

    // Replicates the new past_key_values to match the `top_k` candidates (every cached tensor, self- and
    // cross-attention, repeat_interleave'd top_k times)
    model_kwargs.past_key_values->reorder_cache(expand_rows);

    // compute the candidate tokens by the language model and collect their hidden_states
    // assembles top_k_ids into batch of size k
    outputs = forward_with_hidden_states(top_k_ids.reshape({-1, 1}));
    const std::vector<at::Tensor>& full_hidden_states = last_layer(outputs);
    at::Tensor next_hidden = full_hidden_states.back();
    at::Tensor logits = outputs.logits.select(1, -1);
    at::Tensor context_hidden = last_hidden_states.repeat_interleave(top_k, 0);

    // compute the degeneration penalty and re-rank the candidates based on the degeneration penalty and the
    // model confidence.
    at::Tensor selected_idx = ranking_fast(context_hidden, next_hidden, top_k_probs, penalty_alpha, top_k);
    // the row of each selected candidate among the batch_size * top_k candidates
    at::Tensor selected_rows = batch_rows * top_k + selected_idx;

    // prepare for the next step: (1) next token_id; (2) past_key_values; (3) last_hidden_states for computing
    // the degeneration penalty; (4) logits for selecting next top-k candidates; (5) selected tokens scores
    // (model confidence minus degeneration penalty); (6) decoder hidden_states
    at::Tensor next_tokens = top_k_ids.gather(1, selected_idx.unsqueeze(1)).squeeze(1);
    next_hidden = next_hidden.squeeze(1).index_select(0, selected_rows);
    last_hidden_states = at::cat({last_hidden_states, next_hidden.unsqueeze(1)}, 1);

    // Rebuilds the relevant parts of the model output for the selected token, for use in the next iteration
    ModelOutput selected;
    auto select_layers = [&](const std::vector<at::Tensor>& layers) {
      std::vector<at::Tensor> out;
      for (const auto& layer : layers) out.push_back(layer.index_select(0, selected_rows));
      return out;
    };
    // generate past_key_values cache of only the selected token
    selected.past_key_values = outputs.past_key_values;
    if (selected.past_key_values) selected.past_key_values->reorder_cache(selected_rows);
    logit_for_next_step = logits.index_select(0, selected_rows);
    if (is_encoder_decoder) {
      selected.decoder_hidden_states = select_layers(full_hidden_states);
      if (opt.output_attentions) {
        selected.cross_attentions = select_layers(outputs.cross_attentions);
        selected.decoder_attentions = select_layers(outputs.decoder_attentions);
      }
    } else {
      selected.hidden_states = select_layers(full_hidden_states);
      if (opt.output_attentions) selected.attentions = select_layers(outputs.attentions);
    }
    outputs = std::move(selected);
    // contrastive_search main logic end

    // finished sentences should have their next token be a padding token
    if (has_eos) {
      if (!opt.pad_token_id)
        throw GenerationError("If `eos_token_id` is defined, make sure that `pad_token_id` is defined.");
      next_tokens = next_tokens * unfinished_sequences + *opt.pad_token_id * (1 - unfinished_sequences);
    }

    // update generated ids, model inputs, and length for next step
    input_ids.append(next_tokens);
    if (streamer) streamer(next_tokens.cpu());
    update_model_kwargs_for_generation(outputs, model_kwargs, is_encoder_decoder, nullptr, max_length);

    // stop when each sentence is finished
    unfinished_sequences =
        unfinished_sequences & ~opt.stopping_criteria(input_ids.view(), processed_logit_for_next_step);
    this_peer_finished = unfinished_sequences.max().item<int64_t>() == 0;
  }
  result.sequences = input_ids.view().contiguous();
  // Contrastive search works by forward looking at the next token, so we need to exclude it from
  // `past_key_values` to be consistent with the other decoding methods
  if (model_kwargs.past_key_values) {
    int64_t keep = model_kwargs.past_key_values->get_seq_length() - 1;
    if (auto* cache = dynamic_cast<DynamicCache*>(model_kwargs.past_key_values.get())) cache->crop(keep);
    if (auto* cache = dynamic_cast<EncoderDecoderCache*>(model_kwargs.past_key_values.get()))
      cache->self_attention_cache->crop(keep);
  }
  result.past_key_values = model_kwargs.past_key_values;
  return result;
}

c10::optional<at::Generator> sampling_generator(const GenerationConfig& config, const at::Device& device) {
  if (!config.seed) return c10::nullopt;  // the default generator, as transformers without torch.manual_seed
  if (device.is_cpu()) return at::make_generator<at::CPUGeneratorImpl>(*config.seed);
  // Other devices: seed their default generator, as torch.manual_seed does.
  at::Generator generator = at::globalContext().defaultGenerator(device);
  std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_current_seed(*config.seed);
  return generator;
}

}  // namespace

GenerateOutput generate(PreTrainedModel& model, const at::Tensor& inputs, const GenerationConfig& config,
                        const ModelInputs& kwargs, const TokenCallback& streamer) {
  GenerateOptions options;
  options.streamer = streamer;
  return generate(model, inputs, config, kwargs, options);
}

GenerateOutput generate(PreTrainedModel& model, const at::Tensor& inputs, const GenerationConfig& config,
                        const ModelInputs& kwargs, const GenerateOptions& options) {
  c10::InferenceMode inference_mode;
  const TokenCallback& streamer = options.streamer;
  if (auto* custom = dynamic_cast<CustomGenerate*>(&model)) return custom->generate(inputs, config, kwargs, streamer);
  const bool is_encoder_decoder = model.config && model.config->is_encoder_decoder;

  // 1. Handle `generation_config` and kwargs that might update it, and validate the `.generate()` call
  if (!model.can_generate())
    throw GenerationError(model.class_name + " cannot generate: it has no language modeling head with a "
                          "prepare_inputs_for_generation (use a *ForCausalLM / *ForConditionalGeneration class).");
  GenerationConfig generation_config = config;
  validate_generation_config(generation_config);
  ModelInputs model_kwargs = kwargs;

  // 2. Set generation parameters if not already defined
  if (!generation_config.pad_token_id && generation_config.eos_token_id && !generation_config.eos_token_id->empty())
    generation_config.pad_token_id = generation_config.eos_token_id->front();

  // 3. Define model inputs (_prepare_model_inputs)
  std::string model_input_name = model.main_input_name;
  at::Tensor inputs_tensor = inputs;
  at::Tensor kwargs_input_ids;  // model_kwargs["input_ids"] when generating from inputs_embeds
  if (model_input_name == "input_ids" && model_kwargs.input_ids.defined()) {
    if (inputs_tensor.defined())
      throw GenerationError("`inputs` were passed alongside `input_ids` in the model kwargs, which is not allowed. "
                            "Pass one of them.");
    inputs_tensor = model_kwargs.input_ids;
  }
  model_kwargs.input_ids = at::Tensor();
  if (model_input_name == "input_ids" && model_kwargs.inputs_embeds.defined()) {
    if (!is_encoder_decoder) {
      // `input_ids` is moved to the model kwargs, so a few automations (like the creation of the attention mask)
      // can rely on the actual model input.
      kwargs_input_ids = maybe_initialize_input_ids_for_generation(inputs_tensor, generation_config.bos_token_id,
                                                                   model_kwargs, is_encoder_decoder);
    } else if (inputs_tensor.defined()) {
      throw GenerationError("You passed `inputs_embeds` and `input_ids` to `generate()`. Please pick one.");
    }
    inputs_tensor = model_kwargs.inputs_embeds;
    model_input_name = "inputs_embeds";
  }
  inputs_tensor = maybe_initialize_input_ids_for_generation(inputs_tensor, generation_config.bos_token_id,
                                                            model_kwargs, is_encoder_decoder);
  int64_t batch_size = inputs_tensor.size(0);

  // 4. Define other model kwargs
  model_kwargs.output_attentions = generation_config.output_attentions;
  model_kwargs.output_hidden_states = generation_config.output_hidden_states;
  // decoder-only models with inputs_embeds forwarding must use caching (otherwise we can't detect whether we are
  // generating the first new token or not, and we only want to use the embeddings for the first new token)
  if (!is_encoder_decoder && model_input_name == "inputs_embeds") model_kwargs.use_cache = true;
  else model_kwargs.use_cache = generation_config.use_cache;
  bool requires_attention_mask = !model_kwargs.encoder_outputs && !model_kwargs.extra.count("encoder_outputs");
  if (!model_kwargs.attention_mask.defined() && requires_attention_mask)
    model_kwargs.attention_mask = prepare_attention_mask_for_generation(inputs_tensor, generation_config.pad_token_id,
                                                                        generation_config.eos_token_id);
  if (is_encoder_decoder && !model_kwargs.encoder_outputs)
    // if model is encoder decoder encoder_outputs are created and added to `model_kwargs`
    prepare_encoder_decoder_kwargs_for_generation(model, inputs_tensor, model_kwargs, model_input_name);

  // 5. Prepare `input_ids` which will be used for auto-regressive generation
  at::Tensor input_ids;
  if (is_encoder_decoder)
    input_ids = prepare_decoder_input_ids_for_generation(model, batch_size, model_input_name, model_kwargs,
                                                         generation_config, inputs_tensor.device());
  else
    input_ids = model_input_name == "input_ids" ? inputs_tensor : kwargs_input_ids;
  if (!input_ids.defined()) throw GenerationError("generate(): no input_ids (and no inputs_embeds) were given");
  if (input_ids.dim() != 2)
    throw GenerationError("generate(): input_ids must be 2-D [batch, seq], got " + std::to_string(input_ids.dim()) +
                          "-D");

  if (streamer && generation_config.num_beams > 1)
    throw GenerationError("`streamer` cannot be used with beam search (yet!). Make sure that `num_beams` is set to 1.");
  if (streamer) streamer(input_ids.cpu());

  // 6. Prepare `max_length` depending on other stopping criteria (_prepare_generated_length).
  int64_t input_ids_length = input_ids.size(-1);
  if (generation_config.max_new_tokens) {
    generation_config.max_length = *generation_config.max_new_tokens + input_ids_length;
  } else if (model_input_name == "inputs_embeds" && input_ids_length != inputs_tensor.size(1) &&
             !is_encoder_decoder) {
    // if both `inputs_embeds` and `input_ids` are passed, we do not correct the length
    generation_config.max_length -= inputs_tensor.size(1);
  }
  if (generation_config.min_new_tokens) {
    generation_config.min_length = *generation_config.min_new_tokens + input_ids_length;
  } else if (model_input_name == "inputs_embeds" && input_ids_length != inputs_tensor.size(1) &&
             !is_encoder_decoder) {
    generation_config.min_length = std::max<int64_t>(generation_config.min_length - inputs_tensor.size(1), 0);
  }
  // Cache implementation (_get_cache): "static" preallocates max_length positions per layer.
  if (generation_config.cache_implementation) {
    const std::string& impl = *generation_config.cache_implementation;
    if (impl == "static") {
      if (model_kwargs.past_key_values)
        throw GenerationError("Passing both `cache_implementation` (used to initialize certain caches) and "
                              "`past_key_values` (a Cache object) is unsupported. Please use only one of the two.");
      if (!generation_config.use_cache)
        throw GenerationError("cache_implementation='static' needs use_cache=True");
      auto static_cache = std::make_shared<StaticCache>(generation_config.max_length);
      if (is_encoder_decoder)
        model_kwargs.past_key_values = std::make_shared<EncoderDecoderCache>(static_cache, std::make_shared<DynamicCache>());
      else
        model_kwargs.past_key_values = static_cache;
    } else if (impl != "dynamic") {
      throw GenerationError("generation config: unknown cache_implementation '" + impl +
                            "' (supported: \"static\", \"dynamic\")");
    }
  }

  // max_new_tokens == 0: nothing to generate (transformers rejects it in GenerationConfig.validate).
  if (generation_config.max_new_tokens && *generation_config.max_new_tokens == 0) {
    GenerateOutput result;
    result.sequences = input_ids.repeat_interleave(generation_config.num_return_sequences, 0);
    return result;
  }
  // _validate_generated_length
  if (input_ids_length >= generation_config.max_length)
    throw GenerationError(std::string("Input length of ") + (is_encoder_decoder ? "decoder_input_ids" : "input_ids") +
                          " is " + std::to_string(input_ids_length) +
                          ", but `max_length` is set to " + std::to_string(generation_config.max_length) +
                          ". This can lead to unexpected behavior. You should consider increasing `max_length` or, "
                          "better yet, setting `max_new_tokens`.");

  // 7. determine generation mode
  GenerationMode generation_mode = get_generation_mode(generation_config);
  switch (generation_mode) {
    case GenerationMode::kConstrainedBeamSearch:
      throw GenerationError("constrained beam search (force_words_ids) is not supported yet by generate()");
    case GenerationMode::kAssistedGeneration:
      throw GenerationError("assisted generation (prompt_lookup_num_tokens) is not supported yet by generate()");
    default:
      break;
  }

  LoopOptions opt;
  // 8. prepare distribution pre_processing samplers (the user's processors after the config's, and
  // LogitNormalization last)
  opt.logits_processor = get_logits_processor(generation_config, input_ids_length, inputs_tensor);
  if (!options.logits_processor.empty()) {
    auto insert_at = opt.logits_processor.end();
    if (generation_config.renormalize_logits) --insert_at;
    opt.logits_processor.insert(insert_at, options.logits_processor.begin(), options.logits_processor.end());
  }
  // 9. prepare stopping criteria
  std::optional<int64_t> max_position_embeddings;
  if (model.config) {
    json value = model.config->get("max_position_embeddings");
    if (value.is_number_integer()) max_position_embeddings = value.get<int64_t>();
  }
  opt.stopping_criteria =
      get_stopping_criteria(generation_config, options.stopping_criteria, options.tokenizer, max_position_embeddings);
  opt.max_length = opt.stopping_criteria.max_length().value_or(generation_config.max_length);
  opt.eos_token_id = generation_config.eos_ids();
  if (opt.eos_token_id.empty())  // an EosTokenCriteria among the user's criteria
    for (const auto& criteria : opt.stopping_criteria)
      if (auto* eos = dynamic_cast<const EosTokenCriteria*>(criteria.get())) {
        opt.eos_token_id = eos->eos_token_id;
        break;
      }
  opt.pad_token_id = generation_config.pad_token_id;
  opt.output_scores = generation_config.output_scores;
  opt.output_logits = generation_config.output_logits.value_or(false);
  opt.output_attentions = generation_config.output_attentions;
  opt.output_hidden_states = generation_config.output_hidden_states;
  opt.is_encoder_decoder = is_encoder_decoder;
  // The loops only read the last position's logits: let the model compute no others.
  model_kwargs.num_logits_to_keep = 1;

  // if model is an encoder-decoder, retrieve encoder attention weights and hidden states (not expanded)
  const std::shared_ptr<ModelOutput> encoder_outputs = is_encoder_decoder ? model_kwargs.encoder_outputs : nullptr;
  auto with_encoder_outputs = [&](GenerateOutput result) {
    if (encoder_outputs) {
      if (generation_config.output_attentions) result.encoder_attentions = encoder_outputs->attentions;
      if (generation_config.output_hidden_states) result.encoder_hidden_states = encoder_outputs->hidden_states;
    }
    return result;
  };

  // 10. go into different generation modes
  if (generation_mode == GenerationMode::kGreedySearch)
    return with_encoder_outputs(
        greedy_search_or_sample(model, input_ids, /*do_sample=*/false, opt, streamer, std::move(model_kwargs)));

  if (generation_mode == GenerationMode::kContrastiveSearch) {
    if (!model_kwargs.use_cache.value_or(true)) throw GenerationError("Contrastive search requires `use_cache=True`");
    return with_encoder_outputs(contrastive_search(model, input_ids, generation_config.top_k,
                                                   *generation_config.penalty_alpha, opt, streamer,
                                                   std::move(model_kwargs)));
  }

  if (generation_mode == GenerationMode::kSample) {
    // 11. prepare logits warper
    opt.logits_warper = get_logits_warper(generation_config);
    opt.generator = sampling_generator(generation_config, input_ids.device());
    // 12. expand input_ids with `num_return_sequences` additional sequences per batch
    expand_inputs_for_generation(generation_config.num_return_sequences, is_encoder_decoder, input_ids, model_kwargs);
    // 13. run sample
    return with_encoder_outputs(
        greedy_search_or_sample(model, input_ids, /*do_sample=*/true, opt, streamer, std::move(model_kwargs)));
  }

  // GenerationMode::kBeamSearch / kBeamSample / kGroupBeamSearch
  bool do_sample = generation_mode == GenerationMode::kBeamSample;
  if (do_sample) {
    opt.logits_warper = get_logits_warper(generation_config);
    opt.generator = sampling_generator(generation_config, input_ids.device());
  }
  const bool group = generation_mode == GenerationMode::kGroupBeamSearch;
  // 11. prepare beam search scorer
  BeamSearchScorer beam_scorer(batch_size, generation_config.num_beams, generation_config.length_penalty,
                               parse_early_stopping(generation_config.early_stopping),
                               generation_config.num_return_sequences, generation_config.max_length,
                               group ? generation_config.num_beam_groups : 1);
  // 12. interleave input_ids with `num_beams` additional sequences per batch
  expand_inputs_for_generation(generation_config.num_beams, is_encoder_decoder, input_ids, model_kwargs);
  // 13. run beam search
  if (group) return with_encoder_outputs(group_beam_search(model, input_ids, beam_scorer, opt, std::move(model_kwargs)));
  return with_encoder_outputs(
      beam_search_or_sample(model, input_ids, beam_scorer, do_sample, opt, std::move(model_kwargs)));
}

}  // namespace transformers
