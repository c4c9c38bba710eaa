// tfcpp vocode: unit ids + speaker + language -> WAV, with SeamlessM4T's code HiFi-GAN vocoder.
#include "cli/commands.h"

#include "transformers/audio.h"
#include "transformers/errors.h"
#include "transformers/models/seamless_m4t.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <fmt/format.h>

#include <iostream>
#include <sstream>

namespace tfcpp {

using namespace transformers;

namespace {

// "12 7 7 30" or "12,7,7,30" -> ids. ValueError naming the bad token.
std::vector<int64_t> parse_units(const std::string& text) {
  std::string spaced = text;
  for (char& ch : spaced)
    if (ch == ',') ch = ' ';
  std::istringstream in(spaced);
  std::vector<int64_t> units;
  std::string token;
  while (in >> token) {
    size_t used = 0;
    int64_t value = 0;
    try {
      value = std::stoll(token, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != token.size()) throw ValueError("--units: '" + token + "' is not an integer unit id");
    units.push_back(value);
  }
  if (units.empty()) throw ValueError("--units is empty: give unit ids such as \"12 7 7 30\"");
  return units;
}

struct VocodeOptions {
  std::string units, out, format = "pcm16";
  int64_t speaker = 0, lang = 0;
};

int cmd_vocode(const LoadFlags& flags, const VocodeOptions& options) {
  setup_threads(flags.threads);
  std::vector<int64_t> units = parse_units(options.units);
  auto model = std::dynamic_pointer_cast<SeamlessM4TCodeHifiGan>(flags.load("unit-vocoder"));
  if (!model) throw ValueError(flags.model + ": vocode needs a SeamlessM4TCodeHifiGan checkpoint");
  const SeamlessM4TConfig& config = model->cfg();
  // The range checks name the valid ids: do them before any work.
  if (options.speaker < 0 || options.speaker >= config.vocoder_num_spkrs)
    throw ValueError(fmt::format("--speaker {} is out of range; valid speaker ids are 0..{} (config.vocoder_num_spkrs "
                                 "= {})",
                                 options.speaker, config.vocoder_num_spkrs - 1, config.vocoder_num_spkrs));
  if (options.lang < 0 || options.lang >= config.vocoder_num_langs)
    throw ValueError(fmt::format("--lang {} is out of range; valid language ids are 0..{} (config.vocoder_num_langs "
                                 "= {})",
                                 options.lang, config.vocoder_num_langs - 1, config.vocoder_num_langs));
  if (model->has_weight_norm()) model->remove_weight_norm();

  c10::InferenceMode guard;
  at::Tensor input_ids = at::tensor(units, at::kLong).unsqueeze(0);
  at::Tensor spkr_id = at::full({1, 1}, options.speaker, at::kLong);
  at::Tensor lang_id = at::full({1, 1}, options.lang, at::kLong);
  auto [waveform, lengths] = model->forward(input_ids, spkr_id, lang_id);
  // lengths counts the samples of the units before padding (t2u_pad_token_id); the rest is padding.
  int64_t length = std::min(lengths.reshape({-1})[0].item<int64_t>(), waveform.size(-1));
  at::Tensor samples = waveform[0].narrow(0, 0, std::max<int64_t>(length, 0));

  WavWriteOptions wav;
  wav.sampling_rate = config.sampling_rate;
  wav.format = options.format == "float32" ? WavFormat::kFloat32 : WavFormat::kPcm16;
  write_wav(options.out, samples, wav);
  std::cout << fmt::format("wrote {}: {} units -> {} samples, {:.3f} s at {} Hz, {}\n", options.out, units.size(),
                           samples.size(0), static_cast<double>(samples.size(0)) / config.sampling_rate,
                           config.sampling_rate, options.format == "float32" ? "32-bit float" : "16-bit PCM");
  return 0;
}

}  // namespace

TFCPP_CLI_COMMAND("vocode", "Unit ids to a WAV file with a SeamlessM4T code HiFi-GAN vocoder", [](CLI::App* cmd) {
  auto flags = std::make_shared<LoadFlags>();
  auto options = std::make_shared<VocodeOptions>();
  flags->add(cmd);
  cmd->add_option("--units,-u", options->units, "Vocoder unit ids, e.g. \"12 7 7 30\" (spaces or commas)")->required();
  cmd->add_option("--speaker,-s", options->speaker, "Speaker id, 0..vocoder_num_spkrs-1 (default 0)");
  cmd->add_option("--lang,-l", options->lang, "Language id, 0..vocoder_num_langs-1 (default 0)");
  cmd->add_option("--out,-o", options->out, "Output .wav (mono, config.sampling_rate)")->required();
  cmd->add_option("--format", options->format, "pcm16 (default) | float32")
      ->check(CLI::IsMember({"pcm16", "float32"}));
  return [flags, options] { return cmd_vocode(*flags, *options); };
});

}  // namespace tfcpp
