// generate(), as transformers/generation/utils.py (4.40): greedy, multinomial sampling and beam search over a
// decoder-only or encoder-decoder PreTrainedModel with a KV cache; logits processors and warpers.
#pragma once

#include "transformers/generation_config.h"
#include "transformers/modeling_utils.h"

#include <chrono>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

namespace transformers {

class Tokenizer;

struct GenerateOutput {
  at::Tensor sequences;                // [B * num_return_sequences, T]
  at::Tensor sequences_scores;         // beam search: [B * num_return_sequences]
  std::vector<at::Tensor> scores;      // output_scores: processed scores per step, [B * beams, V]
  std::vector<at::Tensor> logits;      // output_logits: raw logits per step
  at::Tensor beam_indices;             // beam search with output_scores
  // output_attentions / output_hidden_states: per step, the model's per-layer tensors.
  std::vector<std::vector<at::Tensor>> attentions, hidden_states;
  // Encoder-decoder models (GenerateEncoderDecoderOutput): the encoder's per-layer tensors (run once), and per step
  // the decoder's; `attentions` / `hidden_states` stay empty.
  std::vector<at::Tensor> encoder_attentions, encoder_hidden_states;
  std::vector<std::vector<at::Tensor>> decoder_attentions, cross_attentions, decoder_hidden_states;
  std::shared_ptr<Cache> past_key_values;  // the cache after the last step (use_cache)
  // Other named outputs of a model's own generate (Clvp: speech_ids, logits_per_text, ...).
  std::map<std::string, at::Tensor> extra;
  // "sequences", "sequences_scores", "scores.N", "logits.N", "beam_indices", "attentions.S.L", "hidden_states.S.L",
  // "encoder_attentions.L", "encoder_hidden_states.L", "decoder_attentions.S.L", "cross_attentions.S.L",
  // "decoder_hidden_states.S.L", then `extra` by name
  std::vector<std::pair<std::string, at::Tensor>> named_tensors() const;
};

// Called once with the prompt ids [B, T] and then after each step with the new ids [B] (transformers' streamer.put).
using TokenCallback = std::function<void(const at::Tensor& ids)>;

// A model whose class overrides generate() as a whole (transformers: ClvpModelForConditionalGeneration.generate).
// generate() below hands such a model the call.
class CustomGenerate {
 public:
  virtual ~CustomGenerate() = default;
  virtual GenerateOutput generate(const at::Tensor& inputs, const GenerationConfig& config,
                                  const ModelInputs& model_kwargs, const TokenCallback& streamer) = 0;
};

// Logits processor: (input_ids [N, T], scores [N, V]) -> scores.
using LogitsProcessor = std::function<at::Tensor(const at::Tensor& input_ids, const at::Tensor& scores)>;

// The extra arguments group beam search passes to the processors (transformers' `current_tokens` and `beam_group_idx`
// keyword arguments of LogitsProcessorList.__call__): the tokens chosen so far in this step for every beam [B * beams],
// and the index of the group being processed. Set for the duration of a call by ScopedBeamGroupArgs; processors that
// need them (HammingDiversityLogitsProcessor) raise a GenerationError outside group beam search.
struct BeamGroupArgs {
  at::Tensor current_tokens;
  int64_t beam_group_idx = 0;
};
class ScopedBeamGroupArgs {
 public:
  explicit ScopedBeamGroupArgs(const BeamGroupArgs& args);
  ~ScopedBeamGroupArgs();
  ScopedBeamGroupArgs(const ScopedBeamGroupArgs&) = delete;
  ScopedBeamGroupArgs& operator=(const ScopedBeamGroupArgs&) = delete;
  static const BeamGroupArgs* current();

 private:
  const BeamGroupArgs* previous_;
};

// The processors and warpers generate() builds for `config` (in transformers' order). `encoder_input_ids` is what
// encoder_repetition_penalty / encoder_no_repeat_ngram_size look at (the prompt for decoder-only models).
std::vector<LogitsProcessor> get_logits_processor(const GenerationConfig& config, int64_t input_ids_seq_length,
                                                  const at::Tensor& encoder_input_ids = {});
std::vector<LogitsProcessor> get_logits_warper(const GenerationConfig& config);
// Applies `processors` in order (LogitsProcessorList.__call__).
at::Tensor apply_logits_processors(const std::vector<LogitsProcessor>& processors, const at::Tensor& input_ids,
                                   const at::Tensor& scores);

// The processors of transformers/generation/logits_process.py, same names and arguments. Bad arguments raise
// GenerationError. None modifies its input scores in place.
LogitsProcessor MinLengthLogitsProcessor(int64_t min_length, std::vector<int64_t> eos_token_id);
LogitsProcessor MinNewTokensLengthLogitsProcessor(int64_t prompt_length_to_skip, int64_t min_new_tokens,
                                                  std::vector<int64_t> eos_token_id);
LogitsProcessor TemperatureLogitsWarper(double temperature);
LogitsProcessor RepetitionPenaltyLogitsProcessor(double penalty);
LogitsProcessor EncoderRepetitionPenaltyLogitsProcessor(double penalty, at::Tensor encoder_input_ids);
LogitsProcessor TopPLogitsWarper(double top_p, double filter_value = -INFINITY, int64_t min_tokens_to_keep = 1);
// transformers 4.41: keeps tokens whose probability is at least min_p times the top token's.
LogitsProcessor MinPLogitsWarper(double min_p, double filter_value = -INFINITY, int64_t min_tokens_to_keep = 1);
LogitsProcessor TopKLogitsWarper(int64_t top_k, double filter_value = -INFINITY, int64_t min_tokens_to_keep = 1);
LogitsProcessor TypicalLogitsWarper(double mass = 0.9, double filter_value = -INFINITY, int64_t min_tokens_to_keep = 1);
LogitsProcessor EpsilonLogitsWarper(double epsilon, double filter_value = -INFINITY, int64_t min_tokens_to_keep = 1);
LogitsProcessor EtaLogitsWarper(double epsilon, double filter_value = -INFINITY, int64_t min_tokens_to_keep = 1);
LogitsProcessor NoRepeatNGramLogitsProcessor(int64_t ngram_size);
LogitsProcessor EncoderNoRepeatNGramLogitsProcessor(int64_t encoder_ngram_size, at::Tensor encoder_input_ids);
// sequence_bias: (token ids, bias) pairs (transformers' Dict[Tuple[int], float]).
LogitsProcessor SequenceBiasLogitsProcessor(std::vector<std::pair<std::vector<int64_t>, double>> sequence_bias);
LogitsProcessor NoBadWordsLogitsProcessor(std::vector<std::vector<int64_t>> bad_words_ids,
                                          std::vector<int64_t> eos_token_id);
LogitsProcessor ForcedBOSTokenLogitsProcessor(int64_t bos_token_id);
LogitsProcessor ForcedEOSTokenLogitsProcessor(int64_t max_length, std::vector<int64_t> eos_token_id);
LogitsProcessor InfNanRemoveLogitsProcessor();
LogitsProcessor ExponentialDecayLengthPenalty(int64_t start_index, double decay_factor,
                                              std::vector<int64_t> eos_token_id, int64_t input_ids_seq_length);
LogitsProcessor LogitNormalization();
LogitsProcessor SuppressTokensAtBeginLogitsProcessor(std::vector<int64_t> begin_suppress_tokens, int64_t begin_index);
LogitsProcessor SuppressTokensLogitsProcessor(std::vector<int64_t> suppress_tokens);
// force_token_map: (generation index, token id) pairs.
LogitsProcessor ForceTokensLogitsProcessor(std::vector<std::pair<int64_t, int64_t>> force_token_map);
// Group beam search: subtracts diversity_penalty * (how often previous groups picked the token at this step). Reads
// ScopedBeamGroupArgs::current(); the formula itself is hamming_diversity_penalty.
LogitsProcessor HammingDiversityLogitsProcessor(double diversity_penalty, int64_t num_beams, int64_t num_beam_groups);
at::Tensor hamming_diversity_penalty(const at::Tensor& scores, const at::Tensor& current_tokens, int64_t beam_group_idx,
                                     double diversity_penalty, int64_t num_beams, int64_t num_beam_groups);

// ---- generation/stopping_criteria.py (4.41): each returns a [N] bool tensor, true where a sequence is done ----
class StoppingCriteria {
 public:
  virtual ~StoppingCriteria() = default;
  // `scores`: the last step's processed scores (may be undefined).
  virtual at::Tensor operator()(const at::Tensor& input_ids, const at::Tensor& scores) = 0;
};

class MaxLengthCriteria : public StoppingCriteria {
 public:
  explicit MaxLengthCriteria(int64_t max_length, std::optional<int64_t> max_position_embeddings = std::nullopt)
      : max_length(max_length), max_position_embeddings(max_position_embeddings) {}
  at::Tensor operator()(const at::Tensor& input_ids, const at::Tensor& scores) override;
  int64_t max_length;
  std::optional<int64_t> max_position_embeddings;
};

class MaxTimeCriteria : public StoppingCriteria {
 public:
  using Clock = std::chrono::steady_clock;
  explicit MaxTimeCriteria(double max_time, std::optional<Clock::time_point> initial_timestamp = std::nullopt)
      : max_time(max_time), initial_timestamp(initial_timestamp.value_or(Clock::now())) {}
  at::Tensor operator()(const at::Tensor& input_ids, const at::Tensor& scores) override;
  double max_time;
  Clock::time_point initial_timestamp;
};

class EosTokenCriteria : public StoppingCriteria {
 public:
  explicit EosTokenCriteria(std::vector<int64_t> eos_token_id);
  at::Tensor operator()(const at::Tensor& input_ids, const at::Tensor& scores) override;
  std::vector<int64_t> eos_token_id;

 private:
  at::Tensor eos_;
};

// Stops when the decoded text of a sequence ends with one of `stop_strings` (a stop string may end inside the last
// token, which may carry more characters after it), as transformers 4.41's StopStringCriteria. The vocabulary is
// turned into the strings each token adds to a text (its "clean" form, decoded after a fixed prefix as
// clean_tokenizer_vocab does).
class StopStringCriteria : public StoppingCriteria {
 public:
  StopStringCriteria(const Tokenizer& tokenizer, std::vector<std::string> stop_strings);
  // token_strings[id]: the text token `id` adds (for tests and tokenizers of other kinds).
  StopStringCriteria(std::vector<std::string> token_strings, std::vector<std::string> stop_strings);
  at::Tensor operator()(const at::Tensor& input_ids, const at::Tensor& scores) override;
  static std::vector<std::string> clean_tokenizer_vocab(const Tokenizer& tokenizer,
                                                        const std::string& static_prefix = "abcdef");
  std::vector<std::string> stop_strings;

 private:
  std::vector<std::string> token_strings_;
  int64_t maximum_token_len_ = 0;
};

// A stopping criterion from a function (transformers: a user subclass of StoppingCriteria).
class StoppingCriteriaFunction : public StoppingCriteria {
 public:
  using Fn = std::function<at::Tensor(const at::Tensor& input_ids, const at::Tensor& scores)>;
  explicit StoppingCriteriaFunction(Fn fn) : fn_(std::move(fn)) {}
  at::Tensor operator()(const at::Tensor& input_ids, const at::Tensor& scores) override { return fn_(input_ids, scores); }

 private:
  Fn fn_;
};

class StoppingCriteriaList : public std::vector<std::shared_ptr<StoppingCriteria>> {
 public:
  using std::vector<std::shared_ptr<StoppingCriteria>>::vector;
  // OR of every criterion; all false when empty.
  at::Tensor operator()(const at::Tensor& input_ids, const at::Tensor& scores = {}) const;
  // The first MaxLengthCriteria's max_length.
  std::optional<int64_t> max_length() const;
};

// What generate() stops on for `config` (_get_stopping_criteria): max_length, max_time, stop_strings (needs
// `tokenizer`: GenerationError otherwise), eos_token_id; then `custom` (GenerationError if one has the type of a
// default criterion).
StoppingCriteriaList get_stopping_criteria(const GenerationConfig& config, const StoppingCriteriaList& custom = {},
                                           const Tokenizer* tokenizer = nullptr,
                                           std::optional<int64_t> max_position_embeddings = std::nullopt);

// The optional arguments of transformers' generate() beyond the config and the model inputs.
struct GenerateOptions {
  std::vector<LogitsProcessor> logits_processor;  // appended after the processors the config builds
  StoppingCriteriaList stopping_criteria;         // merged with the config's (_merge_criteria_processor_list)
  const Tokenizer* tokenizer = nullptr;           // needed for stop_strings
  TokenCallback streamer;
};

// `config` is the full generation config (start from model.generation_config and apply the call's kwargs).
// `model_kwargs` carries attention_mask and family-specific inputs. Raises GenerationError for bad settings.
// Deviations from transformers: max_new_tokens == 0 returns the prompt (expanded by num_return_sequences) instead of
// raising; scores/logits are collected whenever output_scores/output_logits is set (return_dict_in_generate is
// implied), and beam search always returns sequences_scores. Runs under c10::InferenceMode.
// Encoder-decoder models (config.is_encoder_decoder): `input_ids` (or model_kwargs.inputs_embeds) feed the encoder,
// which runs once unless model_kwargs.encoder_outputs is given; the decoder starts from model_kwargs.decoder_input_ids
// (decoder_start_token_id prepended when missing) or decoder_start_token_id, and `sequences` are decoder ids.
// Decoding strategies as transformers' get_generation_mode: greedy, sampling (do_sample), beam search and beam
// sampling (num_beams > 1), group (diverse) beam search (num_beam_groups > 1 with diversity_penalty), contrastive search
// (penalty_alpha > 0 and top_k > 1; needs the model's hidden states). cache_implementation="static" decodes with a
// StaticCache of max_length positions.
GenerateOutput generate(PreTrainedModel& model, const at::Tensor& input_ids, const GenerationConfig& config,
                        const ModelInputs& model_kwargs = {}, const TokenCallback& streamer = {});
GenerateOutput generate(PreTrainedModel& model, const at::Tensor& input_ids, const GenerationConfig& config,
                        const ModelInputs& model_kwargs, const GenerateOptions& options);

}  // namespace transformers
