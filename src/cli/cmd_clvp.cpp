// tfcpp clvp-speech-ids: text token ids (+ a reference voice WAV) -> speech ids ranked by CLVP, as
// ClvpModelForConditionalGeneration.generate.
#include "cli/commands.h"

#include "transformers/case_runner.h"
#include "transformers/errors.h"
#include "transformers/models/clvp.h"

#include <ATen/ATen.h>

#include <filesystem>
#include <iostream>
#include <sstream>

namespace fs = std::filesystem;

namespace tfcpp {
namespace {

using namespace transformers;

std::vector<int64_t> parse_ids(const std::string& text) {
  std::vector<int64_t> ids;
  std::string item;
  std::stringstream in(text);
  while (std::getline(in, item, ',')) {
    size_t start = item.find_first_not_of(" \t"), end = item.find_last_not_of(" \t");
    if (start == std::string::npos) continue;
    item = item.substr(start, end - start + 1);
    try {
      size_t used = 0;
      ids.push_back(std::stoll(item, &used));
      if (used != item.size()) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      throw ValueError("--ids: '" + item + "' is not an integer token id (expected e.g. \"5,17,33\")");
    }
  }
  if (ids.empty()) throw ValueError("--ids: no token ids given (expected e.g. \"5,17,33\")");
  return ids;
}

struct SpeechIdsOptions {
  LoadFlags load;
  std::string ids, audio;
  std::optional<int64_t> max_new_tokens, num_beams, seed, feature_size, sampling_rate;
  std::optional<double> temperature, top_p;
  std::optional<int64_t> top_k;
  bool do_sample = false;
};

int run_speech_ids(const SpeechIdsOptions& o) {
  setup_threads(o.load.threads);
  LoadFlags flags = o.load;
  if (flags.class_name.empty()) flags.class_name = "ClvpModelForConditionalGeneration";
  auto loaded = flags.load("base");
  auto* model = dynamic_cast<ClvpModelForConditionalGeneration*>(loaded.get());
  if (!model) throw ValueError("clvp-speech-ids needs a ClvpModelForConditionalGeneration, got " + loaded->class_name);

  // The voice: log-mel features of the reference WAV (silence without one).
  ClvpFeatureExtractor extractor;
  if (fs::exists(fs::path(flags.model) / "preprocessor_config.json")) {
    extractor = ClvpFeatureExtractor::from_pretrained(flags.model);
  } else {
    json settings = {{"feature_size", model->cfg().decoder_config->feature_size}};
    extractor = ClvpFeatureExtractor::from_dict(settings, "defaults");
  }
  if (o.feature_size || o.sampling_rate) {
    json settings = extractor.to_dict();
    if (o.feature_size) settings["feature_size"] = *o.feature_size;
    if (o.sampling_rate) settings["sampling_rate"] = *o.sampling_rate;
    settings["mel_norms"] = nullptr;
    extractor = ClvpFeatureExtractor::from_dict(settings, "command line");
  }
  at::Tensor waveform;
  ClvpFeatureExtractor::CallOptions call;
  call.sampling_rate = extractor.sampling_rate;
  if (!o.audio.empty()) {
    waveform = extractor.load_wav(o.audio);
  } else {
    waveform = at::zeros({extractor.default_audio_length * extractor.sampling_rate});
  }
  at::Tensor input_features = extractor({waveform}, call).at("input_features");

  std::vector<int64_t> ids = parse_ids(o.ids);
  GenerationConfig config = model->generation_config;
  json overrides = json::object();
  if (o.max_new_tokens) overrides["max_new_tokens"] = *o.max_new_tokens;
  if (o.do_sample || o.temperature || o.top_k || o.top_p) overrides["do_sample"] = true;
  if (o.temperature) overrides["temperature"] = *o.temperature;
  if (o.top_k) overrides["top_k"] = *o.top_k;
  if (o.top_p) overrides["top_p"] = *o.top_p;
  if (o.num_beams) overrides["num_beams"] = *o.num_beams;
  if (o.seed) overrides["seed"] = *o.seed;
  config.from_dict(overrides, "command line", false);
  GenerateOutput out = model->generate(at::tensor(ids, at::kLong).unsqueeze(0), input_features, at::Tensor(), config);
  json result;
  result["speech_ids"] = tensor_to_json(out.extra.at("speech_ids"));
  result["logits_per_text"] = tensor_to_json(out.extra.at("logits_per_text").to(at::kDouble));
  std::cout << result.dump() << std::endl;
  return 0;
}

}  // namespace

TFCPP_CLI_COMMAND("clvp-speech-ids", "CLVP: text token ids (+ a reference voice WAV) to speech ids, as JSON",
                  [](CLI::App* cmd) -> std::function<int()> {
                    auto o = std::make_shared<SpeechIdsOptions>();
                    o->load.add(cmd);
                    cmd->add_option("--ids", o->ids, "Text token ids, comma separated (e.g. \"5,17,33\")")->required();
                    cmd->add_option("--audio", o->audio, "Reference voice: a WAV file at the extractor's sampling "
                                                         "rate, channels averaged (default: silence)")
                        ->check(CLI::ExistingFile);
                    cmd->add_option("--max-new-tokens,-n", o->max_new_tokens, "Speech tokens to generate");
                    cmd->add_flag("--do-sample", o->do_sample, "Sample instead of greedy decoding");
                    cmd->add_option("--temperature", o->temperature, "Sampling temperature (implies --do-sample)");
                    cmd->add_option("--top-k", o->top_k, "Top-k filtering (implies --do-sample)");
                    cmd->add_option("--top-p", o->top_p, "Nucleus filtering (implies --do-sample)");
                    cmd->add_option("--num-beams", o->num_beams, "Beam search width");
                    cmd->add_option("--seed", o->seed, "Sampling seed");
                    cmd->add_option("--feature-size", o->feature_size,
                                    "Mel bins of the feature extractor (default: preprocessor_config.json, else the "
                                    "decoder's feature_size)");
                    cmd->add_option("--sampling-rate", o->sampling_rate, "Sampling rate of the feature extractor "
                                                                         "(default 22050)");
                    return [o] { return run_speech_ids(*o); };
                  });

}  // namespace tfcpp
