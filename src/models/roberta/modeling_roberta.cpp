// Port of transformers/models/roberta/{configuration,modeling}_roberta.py (4.40.2).
#include "transformers/models/roberta.h"

#include "transformers/auto.h"
#include "transformers/errors.h"

#include <ATen/ATen.h>


namespace transformers {

// RobertaConfig: BertConfig's fields and checks, RoBERTa's special tokens (roberta.h).
TFCPP_REGISTER_CONFIG("roberta", RobertaConfig);

// ---- Embeddings ----

using bert::check_ids_in_range;

at::Tensor create_position_ids_from_input_ids(const at::Tensor& input_ids, int64_t padding_idx,
                                              int64_t past_key_values_length) {
  at::Tensor mask = input_ids.ne(padding_idx).to(at::kInt);
  at::Tensor incremental_indices = (at::cumsum(mask, 1).to(at::kInt) + past_key_values_length) * mask;
  return incremental_indices.to(at::kLong) + padding_idx;
}

RobertaEmbeddings::RobertaEmbeddings(const RobertaConfig& config)
    : position_embedding_type(config.position_embedding_type),
      padding_idx(config.pad_token_id.value_or(1)),
      dropout(config.hidden_dropout_prob) {
  word_embeddings = register_module(
      "word_embeddings", std::make_shared<nn::Embedding>(config.vocab_size, config.hidden_size, config.pad_token_id));
  position_embeddings = register_module(
      "position_embeddings",
      std::make_shared<nn::Embedding>(config.max_position_embeddings, config.hidden_size, padding_idx));
  token_type_embeddings = register_module(
      "token_type_embeddings", std::make_shared<nn::Embedding>(config.type_vocab_size, config.hidden_size));
  LayerNorm = register_module("LayerNorm", std::make_shared<nn::LayerNorm>(config.hidden_size, config.layer_norm_eps));
  bind_buffer("position_ids", &position_ids, at::arange(config.max_position_embeddings, at::kLong).unsqueeze(0));
  set_non_persistent("position_ids");
  bind_buffer("token_type_ids", &token_type_ids, at::zeros({1, config.max_position_embeddings}, at::kLong));
  set_non_persistent("token_type_ids");
}

at::Tensor RobertaEmbeddings::forward(const at::Tensor& input_ids, const at::Tensor& token_type_ids_in,
                                      const at::Tensor& position_ids_in, const at::Tensor& inputs_embeds_in,
                                      int64_t past_key_values_length) const {
  at::Tensor position_ids = position_ids_in;
  if (!position_ids.defined()) {
    // Create the position ids from the input token ids. Any padded tokens remain padded.
    position_ids = input_ids.defined()
                       ? create_position_ids_from_input_ids(input_ids, padding_idx, past_key_values_length)
                       : create_position_ids_from_inputs_embeds(inputs_embeds_in);
  }
  int64_t batch_size = input_ids.defined() ? input_ids.size(0) : inputs_embeds_in.size(0);
  int64_t seq_length = input_ids.defined() ? input_ids.size(1) : inputs_embeds_in.size(1);

  at::Tensor token_type_ids = token_type_ids_in;
  if (!token_type_ids.defined()) {
    if (seq_length > this->token_type_ids.size(1))
      throw ValueError("sequence length " + std::to_string(seq_length) + " exceeds max_position_embeddings (" +
                       std::to_string(this->token_type_ids.size(1)) + ")");
    token_type_ids = this->token_type_ids.narrow(1, 0, seq_length).expand({batch_size, seq_length});
  }
  at::Tensor inputs_embeds = inputs_embeds_in;
  if (!inputs_embeds.defined()) {
    check_ids_in_range(input_ids, word_embeddings->num_embeddings, "input_ids", "vocab_size");
    inputs_embeds = word_embeddings->forward(input_ids);
  }
  check_ids_in_range(token_type_ids, token_type_embeddings->num_embeddings, "token_type_ids", "type_vocab_size");
  at::Tensor embeddings = inputs_embeds + token_type_embeddings->forward(token_type_ids);
  if (position_embedding_type == "absolute") {
    check_ids_in_range(position_ids, position_embeddings->num_embeddings, "position ids (padding_idx + 1 + position)",
                       "max_position_embeddings");
    embeddings += position_embeddings->forward(position_ids);
  }
  embeddings = LayerNorm->forward(embeddings);
  return bert::dropout(embeddings, dropout, is_training());
}

at::Tensor RobertaEmbeddings::create_position_ids_from_inputs_embeds(const at::Tensor& inputs_embeds) const {
  int64_t sequence_length = inputs_embeds.size(1);
  at::Tensor ids = at::arange(padding_idx + 1, sequence_length + padding_idx + 1,
                              at::TensorOptions(at::kLong).device(inputs_embeds.device()));
  return ids.unsqueeze(0).expand({inputs_embeds.size(0), sequence_length});
}

// ---- Attention, layers, encoder, pooler: BertSelfAttention ... BertPooler (modeling_bert.cpp) ----

// ---- RobertaPreTrainedModel ----

RobertaPreTrainedModel::RobertaPreTrainedModel(std::shared_ptr<RobertaConfig> config, std::string name)
    : PreTrainedModel(std::move(config), std::move(name)) {
  base_model_prefix = "roberta";
  supports_gradient_checkpointing = true;
  _no_split_modules = {"RobertaEmbeddings", "RobertaSelfAttention"};
  // transformers 4.40 has only the eager RobertaSelfAttention: _supports_sdpa stays false.
}

void RobertaPreTrainedModel::_init_weights(torch::nn::Module& module) {
  double std = cfg().initializer_range;
  if (auto* linear = dynamic_cast<nn::Linear*>(&module)) {
    linear->weight.normal_(0.0, std);
    if (linear->bias.defined()) linear->bias.zero_();
  } else if (auto* embedding = dynamic_cast<nn::Embedding*>(&module)) {
    embedding->weight.normal_(0.0, std);
    if (embedding->padding_idx) embedding->weight[*embedding->padding_idx].zero_();
  } else if (auto* norm = dynamic_cast<nn::LayerNorm*>(&module)) {
    if (norm->bias.defined()) norm->bias.zero_();
    norm->weight.fill_(1.0);
  }
}

// ---- RobertaModel ----

RobertaModel::RobertaModel(std::shared_ptr<RobertaConfig> config, bool add_pooling_layer, const std::string& prefix)
    : RobertaPreTrainedModel(config, prefix + "Model") {
  embeddings = register_module("embeddings", std::make_shared<RobertaEmbeddings>(*config));
  encoder = register_module("encoder", std::make_shared<RobertaEncoder>(*config));
  if (add_pooling_layer) pooler = register_module("pooler", std::make_shared<RobertaPooler>(*config));
  declare_bert_encoder_tp_plan(*this);
  post_init();
}

std::shared_ptr<RobertaModel> RobertaModel::from_pretrained(const std::string& path,
                                                            const FromPretrainedOptions& options) {
  return from_pretrained_as<RobertaModel>(path, "RobertaModel", options);
}

void RobertaModel::set_input_embeddings(std::shared_ptr<nn::Embedding> value) {
  embeddings->word_embeddings = embeddings->replace_module("word_embeddings", value);
}

void RobertaModel::_prune_heads(const std::map<int64_t, std::vector<int64_t>>& heads_to_prune) {
  encoder->prune_heads(heads_to_prune);
}

ModelOutput RobertaModel::forward(const ModelInputs& in) {
  if (in.input_ids.defined() && !in.inputs_embeds.defined())
    warn_if_padding_and_no_attention_mask(in.input_ids, in.attention_mask);
  return bert::model_forward(
      cfg(), in, dtype(), gradient_checkpointing && is_training(),
      [&](int64_t past_key_values_length) {
        return embeddings->forward(in.input_ids, in.token_type_ids, in.position_ids, in.inputs_embeds,
                                   past_key_values_length);
      },
      *encoder, pooler.get());
}

TFCPP_REGISTER_MODEL("roberta", "base", RobertaModel, RobertaConfig);

// ---- RobertaLMHead ----

RobertaLMHead::RobertaLMHead(const RobertaConfig& config) {
  dense = register_module("dense", std::make_shared<nn::Linear>(config.hidden_size, config.hidden_size));
  layer_norm = register_module("layer_norm", std::make_shared<nn::LayerNorm>(config.hidden_size, config.layer_norm_eps));
  decoder = register_module("decoder", std::make_shared<nn::Linear>(config.hidden_size, config.vocab_size));
  bind_parameter("bias", &bias, at::zeros({config.vocab_size}));
  decoder->replace_parameter("bias", bias);
}

at::Tensor RobertaLMHead::forward(const at::Tensor& features) const {
  at::Tensor x = dense->forward(features);
  x = at::gelu(x);
  x = layer_norm->forward(x);
  return decoder->forward(x);
}

void RobertaLMHead::_tie_weights() {
  if (decoder->bias.defined()) replace_parameter("bias", decoder->bias);
}

// ---- RobertaForCausalLM ----

RobertaForCausalLM::RobertaForCausalLM(std::shared_ptr<RobertaConfig> config, const std::string& prefix)
    : RobertaPreTrainedModel(config, prefix + "ForCausalLM") {
  _tied_weights_keys = {"lm_head.decoder.weight", "lm_head.decoder.bias"};
  // transformers warns when config.is_decoder is false: the model then attends bidirectionally.
  roberta = register_module("roberta", std::make_shared<RobertaModel>(config, false, prefix));
  lm_head = register_module("lm_head", std::make_shared<RobertaLMHead>(*config));
  post_init();
}

std::shared_ptr<RobertaForCausalLM> RobertaForCausalLM::from_pretrained(const std::string& path,
                                                                        const FromPretrainedOptions& options) {
  return from_pretrained_as<RobertaForCausalLM>(path, "RobertaForCausalLM", options);
}

void RobertaForCausalLM::set_output_embeddings(std::shared_ptr<nn::Linear> value) {
  lm_head->decoder = lm_head->replace_module("decoder", value);
}

void RobertaForCausalLM::tie_weights() {
  PreTrainedModel::tie_weights();
  lm_head->_tie_weights();
}

ModelOutput RobertaForCausalLM::forward(const ModelInputs& in) {
  ModelInputs inputs = in;
  if (in.labels.defined()) inputs.use_cache = false;
  ModelOutput outputs = roberta->forward(inputs);
  ModelOutput out;
  out.logits = lm_head->forward(outputs.last_hidden_state);
  if (in.labels.defined()) {
    // next-token prediction: shift prediction scores and labels by one
    int64_t vocab = out.logits.size(-1), length = out.logits.size(1);
    at::Tensor shifted_prediction_scores = out.logits.narrow(1, 0, length - 1).contiguous();
    at::Tensor labels = in.labels.narrow(1, 1, in.labels.size(1) - 1).contiguous();
    out.loss = at::cross_entropy_loss(shifted_prediction_scores.view({-1, vocab}), labels.view({-1}), {},
                                      at::Reduction::Mean, -100);
  }
  out.past_key_values = outputs.past_key_values;
  out.hidden_states = std::move(outputs.hidden_states);
  out.attentions = std::move(outputs.attentions);
  out.cross_attentions = std::move(outputs.cross_attentions);
  return out;
}

ModelInputs RobertaForCausalLM::prepare_inputs_for_generation(const at::Tensor& input_ids_full,
                                                              const ModelInputs& kwargs) {
  at::Tensor input_ids = input_ids_full;
  // if model is used as a decoder in encoder-decoder model, the decoder attention mask is created on the fly
  at::Tensor attention_mask = kwargs.attention_mask.defined() ? kwargs.attention_mask : at::ones_like(input_ids);
  // cut decoder_input_ids if past_key_values is used
  if (kwargs.past_key_values) {
    int64_t past_length = kwargs.past_key_values->get_seq_length();
    // Some generation methods already pass only the last input ID
    int64_t remove_prefix_length = input_ids.size(1) > past_length ? past_length : input_ids.size(1) - 1;
    input_ids = input_ids.narrow(1, remove_prefix_length, input_ids.size(1) - remove_prefix_length);
  }
  ModelInputs model_inputs;
  model_inputs.input_ids = input_ids;
  model_inputs.attention_mask = attention_mask;
  model_inputs.past_key_values = kwargs.past_key_values;
  return model_inputs;
}

TFCPP_REGISTER_MODEL("roberta", "causal-lm", RobertaForCausalLM, RobertaConfig);

// ---- RobertaForMaskedLM ----

RobertaForMaskedLM::RobertaForMaskedLM(std::shared_ptr<RobertaConfig> config, const std::string& prefix)
    : RobertaPreTrainedModel(config, prefix + "ForMaskedLM") {
  _tied_weights_keys = {"lm_head.decoder.weight", "lm_head.decoder.bias"};
  // transformers warns when config.is_decoder is set: masked LM wants bi-directional self-attention.
  roberta = register_module("roberta", std::make_shared<RobertaModel>(config, false, prefix));
  lm_head = register_module("lm_head", std::make_shared<RobertaLMHead>(*config));
  post_init();
}

std::shared_ptr<RobertaForMaskedLM> RobertaForMaskedLM::from_pretrained(const std::string& path,
                                                                        const FromPretrainedOptions& options) {
  return from_pretrained_as<RobertaForMaskedLM>(path, "RobertaForMaskedLM", options);
}

void RobertaForMaskedLM::set_output_embeddings(std::shared_ptr<nn::Linear> value) {
  lm_head->decoder = lm_head->replace_module("decoder", value);
}

void RobertaForMaskedLM::tie_weights() {
  PreTrainedModel::tie_weights();
  lm_head->_tie_weights();
}

ModelOutput RobertaForMaskedLM::forward(const ModelInputs& in) {
  ModelInputs inputs = in;
  inputs.past_key_values = nullptr;
  inputs.use_cache = std::nullopt;
  ModelOutput outputs = roberta->forward(inputs);
  ModelOutput out;
  out.logits = lm_head->forward(outputs.last_hidden_state);
  if (in.labels.defined()) {
    int64_t vocab = out.logits.size(-1);
    out.loss = at::cross_entropy_loss(out.logits.view({-1, vocab}), in.labels.reshape({-1}), {}, at::Reduction::Mean,
                                      -100);
  }
  out.hidden_states = std::move(outputs.hidden_states);
  out.attentions = std::move(outputs.attentions);
  return out;
}

TFCPP_REGISTER_MODEL("roberta", "masked-lm", RobertaForMaskedLM, RobertaConfig);

// ---- Classification heads ----

using bert::classifier_dropout_of;
using bert::encoder_inputs;
using bert::tensor_argument;

RobertaClassificationHead::RobertaClassificationHead(const RobertaConfig& config)
    : dropout(classifier_dropout_of(config)) {
  dense = register_module("dense", std::make_shared<nn::Linear>(config.hidden_size, config.hidden_size));
  out_proj = register_module("out_proj", std::make_shared<nn::Linear>(config.hidden_size, config.num_labels()));
}

at::Tensor RobertaClassificationHead::forward(const at::Tensor& features) const {
  at::Tensor x = features.select(1, 0);  // take <s> token (equiv. to [CLS])
  x = bert::dropout(x, dropout, is_training());
  x = at::tanh(dense->forward(x));
  x = bert::dropout(x, dropout, is_training());
  return out_proj->forward(x);
}

RobertaForSequenceClassification::RobertaForSequenceClassification(std::shared_ptr<RobertaConfig> config,
                                                                   const std::string& prefix)
    : RobertaPreTrainedModel(config, prefix + "ForSequenceClassification"), num_labels(config->num_labels()) {
  roberta = register_module("roberta", std::make_shared<RobertaModel>(config, false, prefix));
  classifier = register_module("classifier", std::make_shared<RobertaClassificationHead>(*config));
  post_init();
}

std::shared_ptr<RobertaForSequenceClassification> RobertaForSequenceClassification::from_pretrained(
    const std::string& path, const FromPretrainedOptions& options) {
  return from_pretrained_as<RobertaForSequenceClassification>(path, "RobertaForSequenceClassification", options);
}

ModelOutput RobertaForSequenceClassification::forward(const ModelInputs& in) {
  ModelOutput outputs = roberta->forward(encoder_inputs(in));
  ModelOutput out;
  out.logits = classifier->forward(outputs.last_hidden_state);
  if (in.labels.defined()) out.loss = bert::sequence_classification_loss(*config, out.logits, in.labels, num_labels);
  out.hidden_states = std::move(outputs.hidden_states);
  out.attentions = std::move(outputs.attentions);
  return out;
}

TFCPP_REGISTER_MODEL("roberta", "sequence-classification", RobertaForSequenceClassification, RobertaConfig);

RobertaForMultipleChoice::RobertaForMultipleChoice(std::shared_ptr<RobertaConfig> config, const std::string& prefix)
    : RobertaPreTrainedModel(config, prefix + "ForMultipleChoice"), dropout(config->hidden_dropout_prob) {
  roberta = register_module("roberta", std::make_shared<RobertaModel>(config, true, prefix));
  classifier = register_module("classifier", std::make_shared<nn::Linear>(config->hidden_size, 1));
  post_init();
}

std::shared_ptr<RobertaForMultipleChoice> RobertaForMultipleChoice::from_pretrained(
    const std::string& path, const FromPretrainedOptions& options) {
  return from_pretrained_as<RobertaForMultipleChoice>(path, "RobertaForMultipleChoice", options);
}

ModelOutput RobertaForMultipleChoice::forward(const ModelInputs& in) {
  ModelInputs inputs;
  int64_t num_choices = bert::flatten_multiple_choice(in, class_name, inputs);
  ModelOutput outputs = roberta->forward(inputs);

  at::Tensor pooled_output = bert::dropout(outputs.pooler_output, dropout, is_training());
  at::Tensor logits = classifier->forward(pooled_output);
  ModelOutput out;
  out.logits = logits.view({-1, num_choices});
  if (in.labels.defined())
    out.loss = at::cross_entropy_loss(out.logits, in.labels.reshape({-1}).to(at::kLong), {}, at::Reduction::Mean, -100);
  out.hidden_states = std::move(outputs.hidden_states);
  out.attentions = std::move(outputs.attentions);
  return out;
}

TFCPP_REGISTER_MODEL("roberta", "multiple-choice", RobertaForMultipleChoice, RobertaConfig);

RobertaForTokenClassification::RobertaForTokenClassification(std::shared_ptr<RobertaConfig> config,
                                                             const std::string& prefix)
    : RobertaPreTrainedModel(config, prefix + "ForTokenClassification"),
      num_labels(config->num_labels()),
      dropout(classifier_dropout_of(*config)) {
  roberta = register_module("roberta", std::make_shared<RobertaModel>(config, false, prefix));
  classifier = register_module("classifier", std::make_shared<nn::Linear>(config->hidden_size, num_labels));
  post_init();
}

std::shared_ptr<RobertaForTokenClassification> RobertaForTokenClassification::from_pretrained(
    const std::string& path, const FromPretrainedOptions& options) {
  return from_pretrained_as<RobertaForTokenClassification>(path, "RobertaForTokenClassification", options);
}

ModelOutput RobertaForTokenClassification::forward(const ModelInputs& in) {
  ModelOutput outputs = roberta->forward(encoder_inputs(in));
  at::Tensor sequence_output = bert::dropout(outputs.last_hidden_state, dropout, is_training());
  ModelOutput out;
  out.logits = classifier->forward(sequence_output);
  if (in.labels.defined())
    out.loss = at::cross_entropy_loss(out.logits.view({-1, num_labels}), in.labels.reshape({-1}).to(at::kLong), {},
                                      at::Reduction::Mean, -100);
  out.hidden_states = std::move(outputs.hidden_states);
  out.attentions = std::move(outputs.attentions);
  return out;
}

TFCPP_REGISTER_MODEL("roberta", "token-classification", RobertaForTokenClassification, RobertaConfig);

RobertaForQuestionAnswering::RobertaForQuestionAnswering(std::shared_ptr<RobertaConfig> config,
                                                         const std::string& prefix)
    : RobertaPreTrainedModel(config, prefix + "ForQuestionAnswering"), num_labels(config->num_labels()) {
  roberta = register_module("roberta", std::make_shared<RobertaModel>(config, false, prefix));
  qa_outputs = register_module("qa_outputs", std::make_shared<nn::Linear>(config->hidden_size, num_labels));
  post_init();
}

std::shared_ptr<RobertaForQuestionAnswering> RobertaForQuestionAnswering::from_pretrained(
    const std::string& path, const FromPretrainedOptions& options) {
  return from_pretrained_as<RobertaForQuestionAnswering>(path, "RobertaForQuestionAnswering", options);
}

ModelOutput RobertaForQuestionAnswering::forward(const ModelInputs& in) {
  ModelOutput outputs = roberta->forward(encoder_inputs(in));
  at::Tensor logits = qa_outputs->forward(outputs.last_hidden_state);
  if (logits.size(-1) != 2)
    throw ConfigError(class_name + ": question answering needs num_labels == 2 (start, end), the config has " +
                      std::to_string(logits.size(-1)));
  auto split = logits.split(1, -1);
  at::Tensor start_logits = split[0].squeeze(-1).contiguous();
  at::Tensor end_logits = split[1].squeeze(-1).contiguous();

  ModelOutput out;
  at::Tensor start_positions = tensor_argument(in, "start_positions"), end_positions = tensor_argument(in, "end_positions");
  if (start_positions.defined() && end_positions.defined())
    out.loss = bert::question_answering_loss(start_logits, end_logits, start_positions, end_positions);
  out.extra["start_logits"] = start_logits;
  out.extra["end_logits"] = end_logits;
  out.hidden_states = std::move(outputs.hidden_states);
  out.attentions = std::move(outputs.attentions);
  return out;
}

TFCPP_REGISTER_MODEL("roberta", "question-answering", RobertaForQuestionAnswering, RobertaConfig);

}  // namespace transformers
