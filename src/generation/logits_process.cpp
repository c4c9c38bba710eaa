// Port of transformers/generation/logits_process.py (4.40) and the processor/warper lists of
// GenerationMixin._get_logits_processor / _get_logits_warper (generation/utils.py).
#include "transformers/errors.h"
#include "transformers/generation.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <limits>
#include <map>

namespace transformers {

namespace {

std::string ids_to_string(const std::vector<int64_t>& ids) {
  std::string s = "[";
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? ", " : "") + std::to_string(ids[i]);
  return s + "]";
}

double dtype_lowest(c10::ScalarType type) {
  switch (type) {
    case at::kDouble: return std::numeric_limits<double>::lowest();
    case at::kBFloat16: return -3.3895313892515355e+38;
    case at::kHalf: return -65504.0;
    default: return std::numeric_limits<float>::lowest();
  }
}

// torch.isin(torch.arange(V), ids) for a fixed id list, computed once per vocabulary size.
class VocabMask {
 public:
  explicit VocabMask(std::vector<int64_t> ids) : ids_(std::move(ids)) {}
  const at::Tensor& get(const at::Tensor& scores) {
    int64_t vocab = scores.size(-1);
    if (!mask_.defined() || vocab_ != vocab || mask_.device() != scores.device()) {
      at::Tensor vocab_tensor = at::arange(vocab, scores.options().dtype(at::kLong));
      mask_ = at::isin(vocab_tensor, at::tensor(ids_, at::kLong).to(scores.device()));
      vocab_ = vocab;
    }
    return mask_;
  }
  bool empty() const { return ids_.empty(); }

 private:
  std::vector<int64_t> ids_;
  at::Tensor mask_;
  int64_t vocab_ = -1;
};

// scores < torch.topk(scores, k)[0][..., -1, None]
at::Tensor below_top_k(const at::Tensor& scores, int64_t top_k) {
  at::Tensor kth = std::get<0>(at::topk(scores, top_k)).narrow(-1, top_k - 1, 1);
  return scores < kth;
}

// _get_ngrams for one hypothesis: (ngram prefix) -> following tokens.
using NGramMap = std::map<std::vector<int64_t>, std::vector<int64_t>>;
NGramMap get_ngrams(int64_t ngram_size, const int64_t* tokens, int64_t length) {
  NGramMap ngrams;
  for (int64_t i = 0; i + ngram_size <= length; ++i)
    ngrams[std::vector<int64_t>(tokens + i, tokens + i + ngram_size - 1)].push_back(tokens[i + ngram_size - 1]);
  return ngrams;
}

// _get_generated_ngrams: the tokens that would repeat an n-gram, looked up by prev_input_ids[start_idx:cur_len]
// (Python slice semantics, including a negative start).
const std::vector<int64_t>* get_generated_ngrams(const NGramMap& banned_ngrams, const int64_t* tokens,
                                                 int64_t ngram_size, int64_t cur_len) {
  int64_t start_idx = cur_len + 1 - ngram_size;
  if (start_idx < 0) start_idx = std::max<int64_t>(start_idx + cur_len, 0);
  std::vector<int64_t> key(tokens + std::min(start_idx, cur_len), tokens + cur_len);
  auto it = banned_ngrams.find(key);
  return it == banned_ngrams.end() ? nullptr : &it->second;
}

at::Tensor cpu_long_contiguous(const at::Tensor& t) { return t.to(at::kCPU, at::kLong).contiguous(); }

// scores_processed[i, banned_tokens] = -inf for each row i.
void ban_tokens(at::Tensor& scores, const std::vector<int64_t>& rows, const std::vector<int64_t>& cols) {
  if (rows.empty()) return;
  at::Tensor r = at::tensor(rows, at::kLong).to(scores.device());
  at::Tensor c = at::tensor(cols, at::kLong).to(scores.device());
  scores.index_put_({r, c}, -INFINITY);
}

std::vector<int64_t> json_int_list(const json& value, const std::string& key) {
  if (!value.is_array())
    throw GenerationError("generation config: `" + key + "` must be a list of token ids, got " + value.dump());
  std::vector<int64_t> out;
  for (const auto& v : value) {
    if (!v.is_number_integer())
      throw GenerationError("generation config: `" + key + "` must be a list of token ids, got " + value.dump());
    out.push_back(v.get<int64_t>());
  }
  return out;
}

}  // namespace

at::Tensor apply_logits_processors(const std::vector<LogitsProcessor>& processors, const at::Tensor& input_ids,
                                   const at::Tensor& scores) {
  at::Tensor out = scores;
  for (const auto& processor : processors) out = processor(input_ids, out);
  return out;
}

// ---- Processors ----

LogitsProcessor MinLengthLogitsProcessor(int64_t min_length, std::vector<int64_t> eos_token_id) {
  if (min_length < 0)
    throw GenerationError("`min_length` has to be a non-negative integer, but is " + std::to_string(min_length));
  auto mask = std::make_shared<VocabMask>(std::move(eos_token_id));
  return [min_length, mask](const at::Tensor& input_ids, const at::Tensor& scores) {
    if (input_ids.size(-1) < min_length) return at::where(mask->get(scores), -INFINITY, scores);
    return scores;
  };
}

LogitsProcessor MinNewTokensLengthLogitsProcessor(int64_t prompt_length_to_skip, int64_t min_new_tokens,
                                                  std::vector<int64_t> eos_token_id) {
  if (prompt_length_to_skip < 0)
    throw GenerationError("`prompt_length_to_skip` has to be a positive integer, but is " +
                          std::to_string(prompt_length_to_skip));
  if (min_new_tokens < 0)
    throw GenerationError("`min_new_tokens` has to be a positive integer, but is " + std::to_string(min_new_tokens));
  auto mask = std::make_shared<VocabMask>(std::move(eos_token_id));
  return [prompt_length_to_skip, min_new_tokens, mask](const at::Tensor& input_ids, const at::Tensor& scores) {
    int64_t new_tokens_length = input_ids.size(-1) - prompt_length_to_skip;
    if (new_tokens_length < min_new_tokens) return at::where(mask->get(scores), -INFINITY, scores);
    return scores;
  };
}

LogitsProcessor TemperatureLogitsWarper(double temperature) {
  if (!(temperature > 0)) {
    std::string msg = "`temperature` (=" + std::to_string(temperature) +
                      ") has to be a strictly positive float, otherwise your next token scores will be invalid.";
    if (temperature == 0.0) msg += " If you're looking for greedy decoding strategies, set `do_sample=False`.";
    throw GenerationError(msg);
  }
  return [temperature](const at::Tensor&, const at::Tensor& scores) { return scores / temperature; };
}

LogitsProcessor RepetitionPenaltyLogitsProcessor(double penalty) {
  if (!(penalty > 0))
    throw GenerationError("`penalty` has to be a strictly positive float, but is " + std::to_string(penalty));
  return [penalty](const at::Tensor& input_ids, const at::Tensor& scores) {
    at::Tensor score = at::gather(scores, 1, input_ids);
    // if score < 0 then repetition penalty has to be multiplied to reduce the token probabilities
    score = at::where(score < 0, score * penalty, score / penalty);
    return scores.scatter(1, input_ids, score);
  };
}

LogitsProcessor EncoderRepetitionPenaltyLogitsProcessor(double penalty, at::Tensor encoder_input_ids) {
  if (!(penalty > 0))
    throw GenerationError("`penalty` has to be a strictly positive float, but is " + std::to_string(penalty));
  if (!encoder_input_ids.defined())
    throw GenerationError("encoder_repetition_penalty needs the encoder input ids");
  double inverse = 1 / penalty;
  return [inverse, encoder_input_ids](const at::Tensor&, const at::Tensor& scores) {
    at::Tensor score = at::gather(scores, 1, encoder_input_ids);
    // if score < 0 then hallucination penalty has to be multiplied to increase the token probabilities
    score = at::where(score < 0, score * inverse, score / inverse);
    return scores.scatter(1, encoder_input_ids, score);
  };
}

LogitsProcessor TopPLogitsWarper(double top_p, double filter_value, int64_t min_tokens_to_keep) {
  if (top_p < 0 || top_p > 1.0)
    throw GenerationError("`top_p` has to be a float > 0 and < 1, but is " + std::to_string(top_p));
  if (min_tokens_to_keep < 1)
    throw GenerationError("`min_tokens_to_keep` has to be a positive integer, but is " +
                          std::to_string(min_tokens_to_keep));
  return [top_p, filter_value, min_tokens_to_keep](const at::Tensor&, const at::Tensor& scores) {
    auto [sorted_logits, sorted_indices] = at::sort(scores, /*dim=*/-1, /*descending=*/false);
    at::Tensor cumulative_probs = sorted_logits.softmax(-1).cumsum(-1);
    // Remove tokens with cumulative top_p above the threshold (token with 0 are kept)
    at::Tensor sorted_indices_to_remove = cumulative_probs <= (1 - top_p);
    // Keep at least min_tokens_to_keep
    int64_t vocab = sorted_indices_to_remove.size(-1), keep = std::min(min_tokens_to_keep, vocab);
    sorted_indices_to_remove.narrow(-1, vocab - keep, keep).fill_(false);
    at::Tensor indices_to_remove = sorted_indices_to_remove.scatter(1, sorted_indices, sorted_indices_to_remove);
    return scores.masked_fill(indices_to_remove, filter_value);
  };
}

LogitsProcessor MinPLogitsWarper(double min_p, double filter_value, int64_t min_tokens_to_keep) {
  if (!(0 <= min_p && min_p <= 1.0))
    throw GenerationError("`min_p` has to be a float in the [0, 1] interval, but is " + std::to_string(min_p));
  if (min_tokens_to_keep < 1)
    throw GenerationError("`min_tokens_to_keep` has to be a positive integer, but is " +
                          std::to_string(min_tokens_to_keep));
  return [min_p, filter_value, min_tokens_to_keep](const at::Tensor&, const at::Tensor& scores) {
    // Convert logits to probabilities
    at::Tensor probs = at::softmax(scores, -1);
    // Get the probability of the top token for each sequence in the batch
    at::Tensor top_probs = std::get<0>(probs.max(-1, /*keepdim=*/true));
    // Calculate the actual min_p threshold by scaling min_p with the top token's probability
    at::Tensor scaled_min_p = min_p * top_probs;
    // Create a mask for tokens that have a probability less than the scaled min_p
    at::Tensor tokens_to_remove = probs < scaled_min_p;
    at::Tensor sorted_indices = at::argsort(scores, /*dim=*/-1, /*descending=*/true);
    at::Tensor sorted_indices_to_remove = at::gather(tokens_to_remove, -1, sorted_indices);
    // Keep at least min_tokens_to_keep
    sorted_indices_to_remove.narrow(-1, 0, std::min(min_tokens_to_keep, scores.size(-1))).fill_(false);
    at::Tensor indices_to_remove = sorted_indices_to_remove.scatter(1, sorted_indices, sorted_indices_to_remove);
    return scores.masked_fill(indices_to_remove, filter_value);
  };
}

LogitsProcessor TopKLogitsWarper(int64_t top_k, double filter_value, int64_t min_tokens_to_keep) {
  if (top_k <= 0)
    throw GenerationError("`top_k` has to be a strictly positive integer, but is " + std::to_string(top_k));
  int64_t k = std::max(top_k, min_tokens_to_keep);
  return [k, filter_value](const at::Tensor&, const at::Tensor& scores) {
    int64_t top_k = std::min(k, scores.size(-1));  // Safety check
    // Remove all tokens with a probability less than the last token of the top-k
    return scores.masked_fill(below_top_k(scores, top_k), filter_value);
  };
}

LogitsProcessor TypicalLogitsWarper(double mass, double filter_value, int64_t min_tokens_to_keep) {
  if (!(mass > 0 && mass < 1))
    throw GenerationError("`typical_p` has to be a float > 0 and < 1, but is " + std::to_string(mass));
  if (min_tokens_to_keep < 1)
    throw GenerationError("`min_tokens_to_keep` has to be a positive integer, but is " +
                          std::to_string(min_tokens_to_keep));
  return [mass, filter_value, min_tokens_to_keep](const at::Tensor&, const at::Tensor& scores) {
    // calculate entropy
    at::Tensor normalized = at::log_softmax(scores, -1);
    at::Tensor p = at::exp(normalized);
    at::Tensor ent = -(normalized * p).nansum(-1, /*keepdim=*/true);
    // shift and sort
    at::Tensor shifted_scores = at::abs((-normalized) - ent);
    auto [sorted_scores, sorted_indices] = at::sort(shifted_scores, -1, /*descending=*/false);
    at::Tensor sorted_logits = scores.gather(-1, sorted_indices);
    at::Tensor cumulative_probs = sorted_logits.softmax(-1).cumsum(-1);
    // Remove tokens with cumulative mass above the threshold
    at::Tensor last_ind = (cumulative_probs < mass).sum(1);
    last_ind.clamp_max_(sorted_scores.size(-1) - 1);
    at::Tensor sorted_indices_to_remove = sorted_scores > sorted_scores.gather(1, last_ind.view({-1, 1}));
    sorted_indices_to_remove.narrow(-1, 0, std::min(min_tokens_to_keep, sorted_scores.size(-1))).fill_(false);
    at::Tensor indices_to_remove = sorted_indices_to_remove.scatter(1, sorted_indices, sorted_indices_to_remove);
    return scores.masked_fill(indices_to_remove, filter_value);
  };
}

LogitsProcessor EpsilonLogitsWarper(double epsilon, double filter_value, int64_t min_tokens_to_keep) {
  if (epsilon <= 0 || epsilon >= 1)
    throw GenerationError("`epsilon_cutoff` has to be a float > 0 and < 1, but is " + std::to_string(epsilon));
  if (min_tokens_to_keep < 1)
    throw GenerationError("`min_tokens_to_keep` has to be a strictly positive integer, but is " +
                          std::to_string(min_tokens_to_keep));
  return [epsilon, filter_value, min_tokens_to_keep](const at::Tensor&, const at::Tensor& scores) {
    // Determine which indices to remove
    at::Tensor probabilities = scores.softmax(-1);
    at::Tensor indices_to_remove = probabilities < epsilon;
    // Keep the words with the 'min_tokens_to_keep'-highest probabilities
    int64_t top_k = std::min(min_tokens_to_keep, scores.size(-1));  // Safety check
    indices_to_remove = indices_to_remove & below_top_k(scores, top_k);
    return scores.masked_fill(indices_to_remove, filter_value);
  };
}

LogitsProcessor EtaLogitsWarper(double epsilon, double filter_value, int64_t min_tokens_to_keep) {
  if (epsilon <= 0 || epsilon >= 1)
    throw GenerationError("`eta_cutoff` has to be a float > 0 and < 1, but is " + std::to_string(epsilon));
  if (min_tokens_to_keep < 1)
    throw GenerationError("`min_tokens_to_keep` has to be a strictly positive integer, but is " +
                          std::to_string(min_tokens_to_keep));
  return [epsilon, filter_value, min_tokens_to_keep](const at::Tensor&, const at::Tensor& scores) {
    // Calculate the adaptive cutoff
    at::Tensor probabilities = scores.softmax(-1);
    // torch.distributions.Categorical(logits=scores).entropy()
    at::Tensor logits = scores - scores.logsumexp(-1, /*keepdim=*/true);
    at::Tensor p_log_p = logits.clamp_min(dtype_lowest(logits.scalar_type())) * at::softmax(logits, -1);
    at::Tensor entropy = -p_log_p.sum(-1);
    at::Tensor eps = at::scalar_tensor(epsilon, scores.options().dtype(at::kFloat));  // torch.tensor(epsilon)
    at::Tensor eta = at::minimum(eps, at::sqrt(eps) * at::exp(-entropy)).unsqueeze(-1);
    at::Tensor indices_to_remove = probabilities < eta;
    // Keep the words with the 'min_tokens_to_keep'-highest probabilities
    int64_t top_k = std::min(min_tokens_to_keep, scores.size(-1));  // Safety check
    indices_to_remove = indices_to_remove & below_top_k(scores, top_k);
    return scores.masked_fill(indices_to_remove, filter_value);
  };
}

LogitsProcessor NoRepeatNGramLogitsProcessor(int64_t ngram_size) {
  if (ngram_size <= 0)
    throw GenerationError("`ngram_size` has to be a strictly positive integer, but is " + std::to_string(ngram_size));
  return [ngram_size](const at::Tensor& input_ids, const at::Tensor& scores) {
    int64_t num_batch_hypotheses = scores.size(0);
    int64_t cur_len = input_ids.size(-1);
    at::Tensor scores_processed = scores.clone();
    // _calc_banned_ngram_tokens: nothing is banned before ngram_size tokens exist
    if (cur_len + 1 < ngram_size) return scores_processed;
    at::Tensor ids = cpu_long_contiguous(input_ids);
    std::vector<int64_t> rows, cols;
    for (int64_t hypo = 0; hypo < num_batch_hypotheses; ++hypo) {
      const int64_t* tokens = ids.data_ptr<int64_t>() + hypo * cur_len;
      // Only the n-grams whose prefix is the current last (n-1) tokens matter: scan for them directly.
      const int64_t* prefix = tokens + (cur_len + 1 - ngram_size);
      for (int64_t i = 0; i + ngram_size <= cur_len; ++i)
        if (std::equal(tokens + i, tokens + i + ngram_size - 1, prefix)) {
          rows.push_back(hypo);
          cols.push_back(tokens[i + ngram_size - 1]);
        }
    }
    ban_tokens(scores_processed, rows, cols);
    return scores_processed;
  };
}

LogitsProcessor EncoderNoRepeatNGramLogitsProcessor(int64_t encoder_ngram_size, at::Tensor encoder_input_ids) {
  if (encoder_ngram_size <= 0)
    throw GenerationError("`encoder_ngram_size` has to be a strictly positive integer, but is " +
                          std::to_string(encoder_ngram_size));
  if (!encoder_input_ids.defined())
    throw GenerationError("encoder_no_repeat_ngram_size needs the encoder input ids");
  if (encoder_input_ids.dim() == 1) encoder_input_ids = encoder_input_ids.unsqueeze(0);
  at::Tensor enc = cpu_long_contiguous(encoder_input_ids);
  int64_t batch_size = enc.size(0), enc_len = enc.size(1);
  auto generated_ngrams = std::make_shared<std::vector<NGramMap>>();
  for (int64_t b = 0; b < batch_size; ++b)
    generated_ngrams->push_back(get_ngrams(encoder_ngram_size, enc.data_ptr<int64_t>() + b * enc_len, enc_len));
  int64_t n = encoder_ngram_size;
  return [n, batch_size, generated_ngrams](const at::Tensor& input_ids, const at::Tensor& scores) {
    // B x num_beams
    int64_t num_hypos = scores.size(0);
    int64_t num_beams = num_hypos / batch_size;
    int64_t cur_len = input_ids.size(-1);
    at::Tensor scores_processed = scores.clone();
    at::Tensor ids = cpu_long_contiguous(input_ids);
    std::vector<int64_t> rows, cols;
    for (int64_t hypo = 0; hypo < num_hypos; ++hypo) {
      const auto* banned = get_generated_ngrams((*generated_ngrams)[hypo / num_beams],
                                                ids.data_ptr<int64_t>() + hypo * cur_len, n, cur_len);
      if (!banned) continue;
      for (int64_t token : *banned) {
        rows.push_back(hypo);
        cols.push_back(token);
      }
    }
    ban_tokens(scores_processed, rows, cols);
    return scores_processed;
  };
}

LogitsProcessor SequenceBiasLogitsProcessor(std::vector<std::pair<std::vector<int64_t>, double>> sequence_bias_in) {
  // A dict in transformers: a repeated key keeps its first position and its last value.
  std::vector<std::pair<std::vector<int64_t>, double>> sequence_bias;
  for (auto& entry : sequence_bias_in) {
    const auto& ids = entry.first;
    const double bias = entry.second;
    auto it = std::find_if(sequence_bias.begin(), sequence_bias.end(), [&](const auto& e) { return e.first == ids; });
    if (it != sequence_bias.end()) it->second = bias;
    else sequence_bias.emplace_back(ids, bias);
  }
  // _validate_arguments
  if (sequence_bias.empty()) throw GenerationError("`sequence_bias` has to be a non-empty dictionary");
  for (const auto& [ids, bias] : sequence_bias)
    if (ids.empty() || std::any_of(ids.begin(), ids.end(), [](int64_t id) { return id < 0; }))
      throw GenerationError("Each key in `sequence_bias` has to be a non-empty tuple of positive integers, but got " +
                            ids_to_string(ids));
  struct State {
    bool prepared_bias_variables = false;
    at::Tensor length_1_bias;
  };
  auto state = std::make_shared<State>();
  return [state, sequence_bias](const at::Tensor& input_ids, const at::Tensor& scores) {
    // 1 - Prepares the bias tensors. This is only needed the first time the logit processor is called.
    if (!state->prepared_bias_variables) {
      int64_t vocabulary_size = scores.size(-1);
      std::vector<int64_t> invalid_biases;
      for (const auto& [ids, bias] : sequence_bias)
        for (int64_t id : ids)
          if (id >= vocabulary_size) invalid_biases.push_back(id);
      if (!invalid_biases.empty())
        throw GenerationError("The model vocabulary size is " + std::to_string(vocabulary_size) +
                              ", but the following tokens were being biased: " + ids_to_string(invalid_biases));
      state->length_1_bias = at::zeros({vocabulary_size}, scores.options().dtype(at::kFloat));
      for (const auto& [ids, bias] : sequence_bias)
        if (ids.size() == 1) state->length_1_bias[ids.back()] = bias;
      state->prepared_bias_variables = true;
    }
    // 2 - prepares an empty bias to add
    at::Tensor bias = at::zeros_like(scores);
    // 3 - include the bias from length = 1
    bias += state->length_1_bias;
    // 4 - include the bias from length > 1, after determining which biased sequences may be completed.
    for (const auto& [sequence_ids, sequence_bias_value] : sequence_bias) {
      int64_t length = static_cast<int64_t>(sequence_ids.size());
      if (length == 1) continue;                 // the sequence is of length 1, already applied
      if (length > input_ids.size(1)) continue;  // the sequence is longer than the context, ignore
      int64_t prefix_length = length - 1;
      int64_t last_token = sequence_ids.back();
      at::Tensor prefix = at::tensor(std::vector<int64_t>(sequence_ids.begin(), sequence_ids.end() - 1),
                                     input_ids.options().dtype(at::kLong))
                              .to(input_ids.scalar_type());
      at::Tensor matching_rows =
          at::eq(input_ids.narrow(1, input_ids.size(1) - prefix_length, prefix_length), prefix).prod(1);
      bias.select(1, last_token) += at::where(
          matching_rows.to(at::kBool), at::scalar_tensor(sequence_bias_value, scores.options().dtype(at::kFloat)),
          at::scalar_tensor(0.0, scores.options().dtype(at::kFloat)));
    }
    // 5 - apply the bias to the scores
    return scores + bias;
  };
}

LogitsProcessor NoBadWordsLogitsProcessor(std::vector<std::vector<int64_t>> bad_words_ids,
                                          std::vector<int64_t> eos_token_id) {
  // _validate_arguments
  if (bad_words_ids.empty()) throw GenerationError("`bad_words_ids` has to be a non-empty list");
  for (const auto& ids : bad_words_ids)
    if (std::any_of(ids.begin(), ids.end(), [](int64_t id) { return id < 0; }))
      throw GenerationError("Each list in `bad_words_ids` has to be a list of positive integers, but got " +
                            ids_to_string(ids));
  // Filter EOS token from bad_words_ids; forbidding a sequence is equivalent to setting its bias to -inf
  std::vector<std::pair<std::vector<int64_t>, double>> sequence_bias;
  for (auto& ids : bad_words_ids) {
    bool is_eos = std::any_of(eos_token_id.begin(), eos_token_id.end(),
                              [&](int64_t eos) { return ids == std::vector<int64_t>{eos}; });
    if (!is_eos) sequence_bias.emplace_back(ids, -INFINITY);
  }
  return SequenceBiasLogitsProcessor(std::move(sequence_bias));
}

LogitsProcessor ForcedBOSTokenLogitsProcessor(int64_t bos_token_id) {
  return [bos_token_id](const at::Tensor& input_ids, const at::Tensor& scores) {
    if (input_ids.size(-1) != 1) return scores;
    at::Tensor scores_processed = at::full_like(scores, -INFINITY);
    scores_processed.select(1, bos_token_id).fill_(0);
    return scores_processed;
  };
}

LogitsProcessor ForcedEOSTokenLogitsProcessor(int64_t max_length, std::vector<int64_t> eos_token_id) {
  return [max_length, eos_token_id](const at::Tensor& input_ids, const at::Tensor& scores) {
    if (input_ids.size(-1) != max_length - 1) return scores;
    at::Tensor scores_processed = at::full_like(scores, -INFINITY);
    scores_processed.index_fill_(1, at::tensor(eos_token_id, at::kLong).to(scores.device()), 0);
    return scores_processed;
  };
}

LogitsProcessor InfNanRemoveLogitsProcessor() {
  return [](const at::Tensor&, const at::Tensor& scores) {
    // set all nan values to 0.0, all +/-inf values to the max/min value of the dtype
    at::Tensor scores_processed = at::where(scores != scores, 0.0, scores);
    scores_processed = at::where(scores == INFINITY, -dtype_lowest(scores.scalar_type()), scores_processed);
    return at::where(scores == -INFINITY, dtype_lowest(scores.scalar_type()), scores_processed);
  };
}

LogitsProcessor ExponentialDecayLengthPenalty(int64_t start_index, double decay_factor,
                                              std::vector<int64_t> eos_token_id, int64_t input_ids_seq_length) {
  int64_t regulation_start = start_index + input_ids_seq_length;
  return [regulation_start, decay_factor, eos_token_id](const at::Tensor& input_ids, const at::Tensor& scores) {
    int64_t cur_len = input_ids.size(-1);
    at::Tensor penalties = at::zeros_like(scores);
    at::Tensor scores_processed = scores;
    if (cur_len > regulation_start) {
      for (int64_t i : eos_token_id) {
        int64_t penalty_idx = cur_len - regulation_start;
        // To support negative logits we compute the penalty of the absolute value and add to the original logit
        at::Tensor penalty = at::abs(scores.select(1, i)) * (std::pow(decay_factor, penalty_idx) - 1);
        penalties.select(1, i).copy_(penalty);
        scores_processed = scores + penalties;
      }
    }
    return scores_processed;
  };
}

LogitsProcessor LogitNormalization() {
  return [](const at::Tensor&, const at::Tensor& scores) { return scores.log_softmax(-1); };
}

LogitsProcessor SuppressTokensAtBeginLogitsProcessor(std::vector<int64_t> begin_suppress_tokens, int64_t begin_index) {
  auto mask = std::make_shared<VocabMask>(std::move(begin_suppress_tokens));
  return [mask, begin_index](const at::Tensor& input_ids, const at::Tensor& scores) {
    if (input_ids.size(-1) != begin_index) return scores;
    return at::where(mask->get(scores), -INFINITY, scores);
  };
}

LogitsProcessor SuppressTokensLogitsProcessor(std::vector<int64_t> suppress_tokens) {
  auto mask = std::make_shared<VocabMask>(std::move(suppress_tokens));
  return
      [mask](const at::Tensor&, const at::Tensor& scores) { return at::where(mask->get(scores), -INFINITY, scores); };
}

LogitsProcessor ForceTokensLogitsProcessor(std::vector<std::pair<int64_t, int64_t>> force_token_map) {
  std::map<int64_t, int64_t> map;
  for (const auto& [index, token] : force_token_map) map[index] = token;  // dict(): the last pair wins
  return [map](const at::Tensor& input_ids, const at::Tensor& scores) {
    auto it = map.find(input_ids.size(-1));
    if (it == map.end()) return scores;
    at::Tensor scores_processed = at::full_like(scores, -INFINITY);
    scores_processed.select(1, it->second).fill_(0);
    return scores_processed;
  };
}

namespace {
thread_local const BeamGroupArgs* current_beam_group_args = nullptr;
}  // namespace

ScopedBeamGroupArgs::ScopedBeamGroupArgs(const BeamGroupArgs& args) : previous_(current_beam_group_args) {
  current_beam_group_args = &args;
}
ScopedBeamGroupArgs::~ScopedBeamGroupArgs() { current_beam_group_args = previous_; }
const BeamGroupArgs* ScopedBeamGroupArgs::current() { return current_beam_group_args; }

at::Tensor hamming_diversity_penalty(const at::Tensor& scores, const at::Tensor& current_tokens, int64_t beam_group_idx,
                                     double diversity_penalty, int64_t num_beams, int64_t num_beam_groups) {
  // hamming diversity: penalise using same token in current group which was used in previous groups at
  // the same time step
  int64_t num_sub_beams = num_beams / num_beam_groups;
  int64_t batch_size = current_tokens.size(0) / num_beams;
  int64_t group_start_idx = beam_group_idx * num_sub_beams;
  int64_t group_end_idx = std::min(group_start_idx + num_sub_beams, num_beams);
  int64_t group_size = group_end_idx - group_start_idx;
  int64_t vocab_size = scores.size(-1);
  if (group_start_idx == 0) return scores;
  at::Tensor scores_processed = scores.clone();
  for (int64_t batch_idx = 0; batch_idx < batch_size; ++batch_idx) {
    // predicted tokens of last time step of previous groups
    at::Tensor previous_group_tokens = current_tokens.narrow(0, batch_idx * num_beams, group_start_idx);
    at::Tensor token_frequency = at::bincount(previous_group_tokens, {}, vocab_size).to(scores.device());
    scores_processed.narrow(0, batch_idx * group_size, group_size) -= diversity_penalty * token_frequency;
  }
  return scores_processed;
}

LogitsProcessor HammingDiversityLogitsProcessor(double diversity_penalty, int64_t num_beams, int64_t num_beam_groups) {
  if (!(diversity_penalty > 0.0))
    throw GenerationError("`diversity_penalty` should be a float strictly larger than 0.");
  if (num_beams < 2) throw GenerationError("`num_beams` should be an integer strictly larger than 1.");
  if (num_beam_groups < 2) throw GenerationError("`num_beam_groups` should be an integer strictly larger than 1.");
  if (num_beam_groups > num_beams) throw GenerationError("`beam_groups` has to be smaller or equal to `num_beams`.");
  return [=](const at::Tensor&, const at::Tensor& scores) {
    const BeamGroupArgs* args = ScopedBeamGroupArgs::current();
    if (!args || !args->current_tokens.defined())
      throw GenerationError("Make sure that all the required parameters: ['input_ids', 'scores', 'current_tokens', "
                            "'beam_group_idx'] for HammingDiversityLogitsProcessor are passed to the logits "
                            "processor (it only runs in group beam search).");
    return hamming_diversity_penalty(scores, args->current_tokens, args->beam_group_idx, diversity_penalty, num_beams,
                                     num_beam_groups);
  };
}

// ---- GenerationMixin._get_logits_processor / _get_logits_warper ----

std::vector<LogitsProcessor> get_logits_processor(const GenerationConfig& config, int64_t input_ids_seq_length,
                                                  const at::Tensor& encoder_input_ids) {
  std::vector<LogitsProcessor> processors;
  const std::vector<int64_t> eos = config.eos_ids();
  const bool has_eos = config.eos_token_id.has_value() && !eos.empty();

  if (config.guidance_scale && *config.guidance_scale != 1)
    throw GenerationError("guidance_scale (classifier-free guidance) is not supported yet by generate()");
  if (!config.sequence_bias.is_null()) {
    // A list of [[token ids], bias] pairs (transformers' Dict[Tuple[int], float] in JSON form).
    std::vector<std::pair<std::vector<int64_t>, double>> sequence_bias;
    const json& sb = config.sequence_bias;
    if (!sb.is_array())
      throw GenerationError("generation config: `sequence_bias` must be a list of [[token ids], bias] pairs, got " +
                            sb.dump());
    for (const auto& item : sb) {
      if (!item.is_array() || item.size() != 2 || !item[1].is_number())
        throw GenerationError("generation config: `sequence_bias` must be a list of [[token ids], bias] pairs, got " +
                              sb.dump());
      sequence_bias.emplace_back(json_int_list(item[0], "sequence_bias"), item[1].get<double>());
    }
    processors.push_back(SequenceBiasLogitsProcessor(std::move(sequence_bias)));
  }
  if (config.diversity_penalty > 0.0)
    processors.push_back(
        HammingDiversityLogitsProcessor(config.diversity_penalty, config.num_beams, config.num_beam_groups));
  if (config.encoder_repetition_penalty != 1.0)
    processors.push_back(EncoderRepetitionPenaltyLogitsProcessor(config.encoder_repetition_penalty, encoder_input_ids));
  if (config.repetition_penalty != 1.0)
    processors.push_back(RepetitionPenaltyLogitsProcessor(config.repetition_penalty));
  if (config.no_repeat_ngram_size > 0) processors.push_back(NoRepeatNGramLogitsProcessor(config.no_repeat_ngram_size));
  if (config.encoder_no_repeat_ngram_size > 0)
    processors.push_back(EncoderNoRepeatNGramLogitsProcessor(config.encoder_no_repeat_ngram_size, encoder_input_ids));
  if (!config.bad_words_ids.is_null()) {
    const json& bw = config.bad_words_ids;
    if (!bw.is_array() || bw.empty())
      throw GenerationError("`bad_words_ids` has to be a non-empty list, but is " + bw.dump());
    std::vector<std::vector<int64_t>> bad_words_ids;
    for (const auto& ids : bw) {
      if (!ids.is_array()) throw GenerationError("`bad_words_ids` has to be a list of lists, but is " + bw.dump());
      bad_words_ids.push_back(json_int_list(ids, "bad_words_ids"));
    }
    processors.push_back(NoBadWordsLogitsProcessor(std::move(bad_words_ids), eos));
  }
  if (has_eos && config.min_length > 0) processors.push_back(MinLengthLogitsProcessor(config.min_length, eos));
  if (config.min_new_tokens && has_eos && *config.min_new_tokens > 0)
    processors.push_back(MinNewTokensLengthLogitsProcessor(input_ids_seq_length, *config.min_new_tokens, eos));
  if (config.forced_bos_token_id) processors.push_back(ForcedBOSTokenLogitsProcessor(*config.forced_bos_token_id));
  if (config.forced_eos_token_id)
    processors.push_back(ForcedEOSTokenLogitsProcessor(config.max_length, {*config.forced_eos_token_id}));
  if (config.remove_invalid_values) processors.push_back(InfNanRemoveLogitsProcessor());
  if (!config.exponential_decay_length_penalty.is_null()) {
    const json& e = config.exponential_decay_length_penalty;
    if (!e.is_array() || e.size() != 2 || !e[0].is_number_integer() || !e[1].is_number())
      throw GenerationError("`exponential_decay_length_penalty` must be [start_index, decay_factor], got " + e.dump());
    processors.push_back(
        ExponentialDecayLengthPenalty(e[0].get<int64_t>(), e[1].get<double>(), eos, input_ids_seq_length));
  }
  if (!config.suppress_tokens.is_null())
    processors.push_back(SuppressTokensLogitsProcessor(json_int_list(config.suppress_tokens, "suppress_tokens")));
  std::vector<std::pair<int64_t, int64_t>> forced_decoder_ids;
  if (!config.forced_decoder_ids.is_null()) {
    const json& f = config.forced_decoder_ids;
    if (!f.is_array()) throw GenerationError("`forced_decoder_ids` must be a list of [index, token] pairs");
    for (const auto& pair : f) {
      if (!pair.is_array() || pair.size() != 2 || !pair[0].is_number_integer() || !pair[1].is_number_integer())
        throw GenerationError("`forced_decoder_ids` must be a list of [index, token] pairs, got " + f.dump());
      forced_decoder_ids.emplace_back(pair[0].get<int64_t>(), pair[1].get<int64_t>());
    }
  }
  if (!config.begin_suppress_tokens.is_null()) {
    int64_t begin_index = input_ids_seq_length;
    begin_index = (input_ids_seq_length > 1 || !config.forced_bos_token_id) ? begin_index : begin_index + 1;
    // generation starts after the last token that is forced
    if (!forced_decoder_ids.empty()) begin_index += forced_decoder_ids.back().first;
    processors.push_back(SuppressTokensAtBeginLogitsProcessor(
        json_int_list(config.begin_suppress_tokens, "begin_suppress_tokens"), begin_index));
  }
  if (!config.forced_decoder_ids.is_null()) processors.push_back(ForceTokensLogitsProcessor(forced_decoder_ids));
  // `LogitNormalization` should always be the last logit processor, when present
  if (config.renormalize_logits) processors.push_back(LogitNormalization());
  return processors;
}

std::vector<LogitsProcessor> get_logits_warper(const GenerationConfig& config) {
  std::vector<LogitsProcessor> warpers;
  // In beam methods, we need to keep at least one non-eos token to explore continuations that might have a
  // better score (i.e. keep len(list(generation_config.eos_token_id)) + 1)
  int64_t min_tokens_to_keep = 1;
  if (config.num_beams > 1) {
    size_t n_eos = config.eos_ids().size();
    min_tokens_to_keep = n_eos > 1 ? static_cast<int64_t>(n_eos) + 1 : 2;
  }
  if (config.temperature != 1.0) warpers.push_back(TemperatureLogitsWarper(config.temperature));
  if (config.top_k != 0) warpers.push_back(TopKLogitsWarper(config.top_k, -INFINITY, min_tokens_to_keep));
  if (config.top_p < 1.0) warpers.push_back(TopPLogitsWarper(config.top_p, -INFINITY, min_tokens_to_keep));
  // Applied after temperature scaling (transformers 4.41)
  if (config.min_p) warpers.push_back(MinPLogitsWarper(*config.min_p, -INFINITY, min_tokens_to_keep));
  if (config.typical_p < 1.0) warpers.push_back(TypicalLogitsWarper(config.typical_p, -INFINITY, min_tokens_to_keep));
  if (0.0 < config.epsilon_cutoff && config.epsilon_cutoff < 1.0)
    warpers.push_back(EpsilonLogitsWarper(config.epsilon_cutoff, -INFINITY, min_tokens_to_keep));
  if (0.0 < config.eta_cutoff && config.eta_cutoff < 1.0)
    warpers.push_back(EtaLogitsWarper(config.eta_cutoff, -INFINITY, min_tokens_to_keep));
  // `LogitNormalization` should always be the last logit processor, when present
  if (config.renormalize_logits) warpers.push_back(LogitNormalization());
  return warpers;
}

}  // namespace transformers
