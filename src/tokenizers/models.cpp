#include "tokenizers/models.h"

#include "tokenizers/bpe.h"
#include "tokenizers/unigram.h"

namespace transformers::tokenizers {

namespace {

const ComponentRegistry<Model>& registry() {
  static const ComponentRegistry<Model> models = {
      {"BPE", build_bpe},
      {"Unigram", build_unigram},
      {"WordPiece", build_wordpiece},
      {"WordLevel", build_wordlevel},
  };
  return models;
}

}  // namespace

std::unique_ptr<Model> build_model(const json& config) {
  // Files written by old versions of tokenizers leave out the type of a BPE model.
  if (config.is_object() && !config.contains("type") && config.contains("merges")) return build_bpe(config);
  return build_component(registry(), config, "model");
}

}  // namespace transformers::tokenizers
