// CamemBERT, as transformers/models/camembert/{configuration,modeling}_camembert.py (4.40): the RoBERTa architecture
// under its own names (the modules are copies of RoBERTa's, the base model attribute is still `roberta`).
#pragma once

#include "transformers/models/roberta.h"

namespace transformers {

class CamembertConfig : public RobertaConfig {
 public:
  CamembertConfig() { vocab_size = 30522; }
  std::string model_type() const override { return "camembert"; }
  std::shared_ptr<PretrainedConfig> clone_default() const override { return std::make_shared<CamembertConfig>(); }
};

class CamembertModel : public RobertaModel {
 public:
  explicit CamembertModel(std::shared_ptr<CamembertConfig> config, bool add_pooling_layer = true);
  static std::shared_ptr<CamembertModel> from_pretrained(const std::string& path,
                                                         const FromPretrainedOptions& options = {});
};

class CamembertForCausalLM : public RobertaForCausalLM {
 public:
  explicit CamembertForCausalLM(std::shared_ptr<CamembertConfig> config);
  static std::shared_ptr<CamembertForCausalLM> from_pretrained(const std::string& path,
                                                               const FromPretrainedOptions& options = {});
};

class CamembertForMaskedLM : public RobertaForMaskedLM {
 public:
  explicit CamembertForMaskedLM(std::shared_ptr<CamembertConfig> config);
  static std::shared_ptr<CamembertForMaskedLM> from_pretrained(const std::string& path,
                                                               const FromPretrainedOptions& options = {});
};

class CamembertForSequenceClassification : public RobertaForSequenceClassification {
 public:
  explicit CamembertForSequenceClassification(std::shared_ptr<CamembertConfig> config);
  static std::shared_ptr<CamembertForSequenceClassification> from_pretrained(
      const std::string& path, const FromPretrainedOptions& options = {});
};

class CamembertForMultipleChoice : public RobertaForMultipleChoice {
 public:
  explicit CamembertForMultipleChoice(std::shared_ptr<CamembertConfig> config);
  static std::shared_ptr<CamembertForMultipleChoice> from_pretrained(const std::string& path,
                                                                     const FromPretrainedOptions& options = {});
};

class CamembertForTokenClassification : public RobertaForTokenClassification {
 public:
  explicit CamembertForTokenClassification(std::shared_ptr<CamembertConfig> config);
  static std::shared_ptr<CamembertForTokenClassification> from_pretrained(const std::string& path,
                                                                          const FromPretrainedOptions& options = {});
};

class CamembertForQuestionAnswering : public RobertaForQuestionAnswering {
 public:
  explicit CamembertForQuestionAnswering(std::shared_ptr<CamembertConfig> config);
  static std::shared_ptr<CamembertForQuestionAnswering> from_pretrained(const std::string& path,
                                                                        const FromPretrainedOptions& options = {});
};

}  // namespace transformers
