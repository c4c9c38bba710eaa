// Port of transformers/models/camembert/{configuration,modeling}_camembert.py (4.40.2): RoBERTa under the Camembert
// names; CamembertPreTrainedModel declares an empty _no_split_modules.
#include "transformers/models/camembert.h"

#include "transformers/auto.h"

namespace transformers {

TFCPP_REGISTER_CONFIG("camembert", CamembertConfig);

CamembertModel::CamembertModel(std::shared_ptr<CamembertConfig> config, bool add_pooling_layer)
    : RobertaModel(config, add_pooling_layer, "Camembert") {
  _no_split_modules = std::vector<std::string>{};
}
std::shared_ptr<CamembertModel> CamembertModel::from_pretrained(const std::string& path,
                                                                const FromPretrainedOptions& options) {
  return from_pretrained_as<CamembertModel>(path, "CamembertModel", options);
}
TFCPP_REGISTER_MODEL("camembert", "base", CamembertModel, CamembertConfig);

CamembertForCausalLM::CamembertForCausalLM(std::shared_ptr<CamembertConfig> config)
    : RobertaForCausalLM(config, "Camembert") {
  _no_split_modules = std::vector<std::string>{};
}
std::shared_ptr<CamembertForCausalLM> CamembertForCausalLM::from_pretrained(const std::string& path,
                                                                            const FromPretrainedOptions& options) {
  return from_pretrained_as<CamembertForCausalLM>(path, "CamembertForCausalLM", options);
}
TFCPP_REGISTER_MODEL("camembert", "causal-lm", CamembertForCausalLM, CamembertConfig);

CamembertForMaskedLM::CamembertForMaskedLM(std::shared_ptr<CamembertConfig> config)
    : RobertaForMaskedLM(config, "Camembert") {
  _no_split_modules = std::vector<std::string>{};
}
std::shared_ptr<CamembertForMaskedLM> CamembertForMaskedLM::from_pretrained(const std::string& path,
                                                                            const FromPretrainedOptions& options) {
  return from_pretrained_as<CamembertForMaskedLM>(path, "CamembertForMaskedLM", options);
}
TFCPP_REGISTER_MODEL("camembert", "masked-lm", CamembertForMaskedLM, CamembertConfig);

CamembertForSequenceClassification::CamembertForSequenceClassification(std::shared_ptr<CamembertConfig> config)
    : RobertaForSequenceClassification(config, "Camembert") {
  _no_split_modules = std::vector<std::string>{};
}
std::shared_ptr<CamembertForSequenceClassification> CamembertForSequenceClassification::from_pretrained(
    const std::string& path, const FromPretrainedOptions& options) {
  return from_pretrained_as<CamembertForSequenceClassification>(path, "CamembertForSequenceClassification", options);
}
TFCPP_REGISTER_MODEL("camembert", "sequence-classification", CamembertForSequenceClassification, CamembertConfig);

CamembertForMultipleChoice::CamembertForMultipleChoice(std::shared_ptr<CamembertConfig> config)
    : RobertaForMultipleChoice(config, "Camembert") {
  _no_split_modules = std::vector<std::string>{};
}
std::shared_ptr<CamembertForMultipleChoice> CamembertForMultipleChoice::from_pretrained(
    const std::string& path, const FromPretrainedOptions& options) {
  return from_pretrained_as<CamembertForMultipleChoice>(path, "CamembertForMultipleChoice", options);
}
TFCPP_REGISTER_MODEL("camembert", "multiple-choice", CamembertForMultipleChoice, CamembertConfig);

CamembertForTokenClassification::CamembertForTokenClassification(std::shared_ptr<CamembertConfig> config)
    : RobertaForTokenClassification(config, "Camembert") {
  _no_split_modules = std::vector<std::string>{};
}
std::shared_ptr<CamembertForTokenClassification> CamembertForTokenClassification::from_pretrained(
    const std::string& path, const FromPretrainedOptions& options) {
  return from_pretrained_as<CamembertForTokenClassification>(path, "CamembertForTokenClassification", options);
}
TFCPP_REGISTER_MODEL("camembert", "token-classification", CamembertForTokenClassification, CamembertConfig);

CamembertForQuestionAnswering::CamembertForQuestionAnswering(std::shared_ptr<CamembertConfig> config)
    : RobertaForQuestionAnswering(config, "Camembert") {
  _no_split_modules = std::vector<std::string>{};
}
std::shared_ptr<CamembertForQuestionAnswering> CamembertForQuestionAnswering::from_pretrained(
    const std::string& path, const FromPretrainedOptions& options) {
  return from_pretrained_as<CamembertForQuestionAnswering>(path, "CamembertForQuestionAnswering", options);
}
TFCPP_REGISTER_MODEL("camembert", "question-answering", CamembertForQuestionAnswering, CamembertConfig);

}  // namespace transformers
