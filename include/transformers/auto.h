// Auto classes: model_type -> config class, (model_type, task) -> model class. Each family registers itself in its
// own file (TFCPP_REGISTER_*), so nothing here names a family.
#pragma once

#include "transformers/errors.h"
#include "transformers/modeling_utils.h"

namespace transformers {

using ConfigFactory = std::function<std::shared_ptr<PretrainedConfig>()>;

// Tasks, as transformers' MODEL_*_MAPPING names: "base" (AutoModel), "causal-lm", "masked-lm", "seq2seq-lm",
// "sequence-classification", "token-classification", "question-answering", "multiple-choice", ...
void register_config(const std::string& model_type, ConfigFactory factory);
void register_model(const std::string& model_type, const std::string& task, const std::string& class_name,
                    ModelFactory factory);

std::vector<std::string> supported_model_types();
std::vector<std::string> registered_classes();

class AutoConfig {
 public:
  // Reads path/config.json and builds the config class its model_type names. ConfigError for unknown types.
  static std::shared_ptr<PretrainedConfig> from_pretrained(const std::string& path);
  static std::shared_ptr<PretrainedConfig> for_model(const std::string& model_type);
};

// Loads `path` with the class registered under `class_name` ("LlamaForCausalLM"), checking the config's model_type.
std::shared_ptr<PreTrainedModel> model_from_pretrained(const std::string& path, const std::string& class_name,
                                                       const FromPretrainedOptions& options = {});
// model_from_pretrained, typed: LlamaForCausalLM::from_pretrained and friends.
template <typename T>
std::shared_ptr<T> from_pretrained_as(const std::string& path, const std::string& class_name,
                                      const FromPretrainedOptions& options = {}) {
  return std::dynamic_pointer_cast<T>(model_from_pretrained(path, class_name, options));
}
// Builds a randomly initialised model of `class_name` from a config (transformers' Model(config)).
std::shared_ptr<PreTrainedModel> model_from_config(std::shared_ptr<PretrainedConfig> config,
                                                   const std::string& class_name);
// The class registered for (config model_type, task); ValueError listing what exists otherwise.
std::string class_for_task(const std::string& model_type, const std::string& task);

template <const char* Task>
class AutoModelFor {
 public:
  static std::shared_ptr<PreTrainedModel> from_pretrained(const std::string& path,
                                                          const FromPretrainedOptions& options = {}) {
    const std::string dir = hub::resolve_pretrained_model(path, options.variant, options.hub);  // hub id -> snapshot
    auto config = AutoConfig::from_pretrained(dir);
    return model_from_pretrained(dir, class_for_task(config->model_type(), Task), options);
  }
  static std::shared_ptr<PreTrainedModel> from_config(std::shared_ptr<PretrainedConfig> config) {
    return model_from_config(config, class_for_task(config->model_type(), Task));
  }
};

namespace tasks {
inline constexpr char kBase[] = "base";
inline constexpr char kCausalLM[] = "causal-lm";
inline constexpr char kMaskedLM[] = "masked-lm";
inline constexpr char kSeq2SeqLM[] = "seq2seq-lm";
inline constexpr char kSequenceClassification[] = "sequence-classification";
inline constexpr char kTokenClassification[] = "token-classification";
inline constexpr char kQuestionAnswering[] = "question-answering";
inline constexpr char kMultipleChoice[] = "multiple-choice";
inline constexpr char kTextEncoding[] = "text-encoding";
inline constexpr char kPreTraining[] = "pretraining";
inline constexpr char kNextSentencePrediction[] = "next-sentence-prediction";
}  // namespace tasks

using AutoModel = AutoModelFor<tasks::kBase>;
using AutoModelForCausalLM = AutoModelFor<tasks::kCausalLM>;
using AutoModelForMaskedLM = AutoModelFor<tasks::kMaskedLM>;
using AutoModelForSeq2SeqLM = AutoModelFor<tasks::kSeq2SeqLM>;
using AutoModelForSequenceClassification = AutoModelFor<tasks::kSequenceClassification>;
using AutoModelForTokenClassification = AutoModelFor<tasks::kTokenClassification>;
using AutoModelForQuestionAnswering = AutoModelFor<tasks::kQuestionAnswering>;
using AutoModelForMultipleChoice = AutoModelFor<tasks::kMultipleChoice>;
using AutoModelForTextEncoding = AutoModelFor<tasks::kTextEncoding>;
using AutoModelForPreTraining = AutoModelFor<tasks::kPreTraining>;
using AutoModelForNextSentencePrediction = AutoModelFor<tasks::kNextSentencePrediction>;

}  // namespace transformers

#define TFCPP_CONCAT_INNER(a, b) a##b
#define TFCPP_CONCAT(a, b) TFCPP_CONCAT_INNER(a, b)
// In a family's .cpp: TFCPP_REGISTER_CONFIG("llama", LlamaConfig);
#define TFCPP_REGISTER_CONFIG(model_type, ConfigClass)                                      \
  static const bool TFCPP_CONCAT(tfcpp_config_registered_, __LINE__) = [] {                 \
    ::transformers::register_config(model_type, [] { return std::make_shared<ConfigClass>(); }); \
    return true;                                                                             \
  }()
// TFCPP_REGISTER_MODEL("llama", "causal-lm", LlamaForCausalLM, LlamaConfig);
#define TFCPP_REGISTER_MODEL(model_type, task, ModelClass, ConfigClass)                                  \
  static const bool TFCPP_CONCAT(tfcpp_model_registered_, __LINE__) = [] {                               \
    ::transformers::register_model(model_type, task, #ModelClass,                                        \
                                   [](std::shared_ptr<::transformers::PretrainedConfig> c) {             \
                                     auto typed = std::dynamic_pointer_cast<ConfigClass>(c);             \
                                     if (!typed) throw ::transformers::ConfigError(#ModelClass ": config is not a " #ConfigClass); \
                                     return std::static_pointer_cast<::transformers::PreTrainedModel>(   \
                                         std::make_shared<ModelClass>(typed));                           \
                                   });                                                                   \
    return true;                                                                                         \
  }()
