// Port of transformers/models/clvp/feature_extraction_clvp.py (4.40.2), the parts of transformers/audio_utils.py it
// uses, and SequenceFeatureExtractor.pad / _pad / _truncate.
#include "transformers/audio.h"
#include "transformers/errors.h"
#include "transformers/models/clvp.h"

#include <ATen/ATen.h>

#include <cmath>
#include <filesystem>

namespace fs = std::filesystem;

namespace transformers {

namespace audio_utils {

namespace {

void check_mel_scale(const std::string& mel_scale) {
  if (mel_scale != "slaney" && mel_scale != "htk" && mel_scale != "kaldi")
    throw ValueError("mel_scale should be one of \"htk\", \"slaney\" or \"kaldi\", got \"" + mel_scale + "\".");
}

// np.linspace(start, stop, num): start + i * step, the last value exactly `stop`.
std::vector<double> linspace(double start, double stop, int64_t num) {
  std::vector<double> out(static_cast<size_t>(num));
  double step = num > 1 ? (stop - start) / static_cast<double>(num - 1) : 0.0;
  for (int64_t i = 0; i < num; ++i) out[i] = static_cast<double>(i) * step + start;
  if (num > 1) out.back() = stop;
  return out;
}

// np.pad(waveform, (pad, pad), mode="reflect"), repeated reflection for pads longer than the signal.
at::Tensor reflect_pad(const at::Tensor& waveform, int64_t pad) {
  int64_t n = waveform.size(0);
  std::vector<int64_t> index(static_cast<size_t>(n + 2 * pad));
  int64_t period = 2 * (n - 1);
  for (int64_t i = 0; i < n + 2 * pad; ++i) {
    int64_t j = i - pad;
    if (n == 1) {
      j = 0;
    } else {
      j = std::abs(j) % period;
      if (j >= n) j = period - j;
    }
    index[i] = j;
  }
  return waveform.index_select(0, at::tensor(index, at::kLong));
}

}  // namespace

double hertz_to_mel(double freq, const std::string& mel_scale) {
  check_mel_scale(mel_scale);
  if (mel_scale == "htk") return 2595.0 * std::log10(1.0 + (freq / 700.0));
  if (mel_scale == "kaldi") return 1127.0 * std::log(1.0 + (freq / 700.0));
  const double min_log_hertz = 1000.0, min_log_mel = 15.0, logstep = 27.0 / std::log(6.4);
  double mels = 3.0 * freq / 200.0;
  if (freq >= min_log_hertz) mels = min_log_mel + std::log(freq / min_log_hertz) * logstep;
  return mels;
}

double mel_to_hertz(double mels, const std::string& mel_scale) {
  check_mel_scale(mel_scale);
  if (mel_scale == "htk") return 700.0 * (std::pow(10.0, mels / 2595.0) - 1.0);
  if (mel_scale == "kaldi") return 700.0 * (std::exp(mels / 1127.0) - 1.0);
  const double min_log_hertz = 1000.0, min_log_mel = 15.0, logstep = std::log(6.4) / 27.0;
  double freq = 200.0 * mels / 3.0;
  if (mels >= min_log_mel) freq = min_log_hertz * std::exp(logstep * (mels - min_log_mel));
  return freq;
}

at::Tensor mel_filter_bank(int64_t num_frequency_bins, int64_t num_mel_filters, double min_frequency,
                           double max_frequency, int64_t sampling_rate, const std::string& norm,
                           const std::string& mel_scale, bool triangularize_in_mel_space) {
  if (!norm.empty() && norm != "slaney") throw ValueError("norm must be one of None or \"slaney\", got \"" + norm + "\"");
  if (num_frequency_bins < 2 || num_mel_filters < 1)
    throw ValueError("mel_filter_bank needs at least 2 frequency bins and 1 mel filter");
  // center points of the triangular mel filters
  double mel_min = hertz_to_mel(min_frequency, mel_scale);
  double mel_max = hertz_to_mel(max_frequency, mel_scale);
  std::vector<double> mel_freqs = linspace(mel_min, mel_max, num_mel_filters + 2);
  std::vector<double> filter_freqs(mel_freqs.size());
  for (size_t i = 0; i < mel_freqs.size(); ++i) filter_freqs[i] = mel_to_hertz(mel_freqs[i], mel_scale);

  std::vector<double> fft_freqs;
  if (triangularize_in_mel_space) {
    // frequencies of FFT bins in Hz, but filters triangularized in mel space
    double fft_bin_width = static_cast<double>(sampling_rate) / static_cast<double>(num_frequency_bins * 2);
    for (int64_t i = 0; i < num_frequency_bins; ++i)
      fft_freqs.push_back(hertz_to_mel(fft_bin_width * static_cast<double>(i), mel_scale));
    filter_freqs = mel_freqs;
  } else {
    // frequencies of FFT bins in Hz
    fft_freqs = linspace(0.0, static_cast<double>(sampling_rate / 2), num_frequency_bins);
  }

  // _create_triangular_filter_bank
  at::Tensor filter = at::tensor(filter_freqs, at::kDouble);
  at::Tensor fft = at::tensor(fft_freqs, at::kDouble);
  at::Tensor filter_diff = filter.narrow(0, 1, filter.size(0) - 1) - filter.narrow(0, 0, filter.size(0) - 1);
  at::Tensor slopes = filter.unsqueeze(0) - fft.unsqueeze(1);
  int64_t n = filter.size(0);
  at::Tensor down_slopes = -slopes.narrow(1, 0, n - 2) / filter_diff.narrow(0, 0, n - 2);
  at::Tensor up_slopes = slopes.narrow(1, 2, n - 2) / filter_diff.narrow(0, 1, n - 2);
  at::Tensor mel_filters = at::maximum(at::zeros({1}, at::kDouble), at::minimum(down_slopes, up_slopes));

  if (norm == "slaney") {
    // Slaney-style mel is scaled to be approx constant energy per channel
    at::Tensor enorm = 2.0 / (filter.narrow(0, 2, num_mel_filters) - filter.narrow(0, 0, num_mel_filters));
    mel_filters = mel_filters * enorm.unsqueeze(0);
  }
  return mel_filters;
}

at::Tensor window_function(int64_t window_length, const std::string& name, bool periodic,
                           std::optional<int64_t> frame_length, bool center) {
  if (window_length < 1) throw ValueError("window_length must be positive, got " + std::to_string(window_length));
  int64_t length = periodic ? window_length + 1 : window_length;
  std::vector<double> window(static_cast<size_t>(length));
  // np.hanning / np.hamming: n = arange(1 - M, M, 2), a + b * cos(pi * n / (M - 1))
  auto cosine_window = [&](double a, double b) {
    for (int64_t i = 0; i < length; ++i) {
      double k = static_cast<double>(1 - length + 2 * i);
      window[i] = length == 1 ? 1.0 : a + b * std::cos(M_PI * k / static_cast<double>(length - 1));
    }
  };
  if (name == "boxcar") {
    std::fill(window.begin(), window.end(), 1.0);
  } else if (name == "hamming" || name == "hamming_window") {
    cosine_window(0.54, 0.46);
  } else if (name == "hann" || name == "hann_window") {
    cosine_window(0.5, 0.5);
  } else if (name == "povey") {
    cosine_window(0.5, 0.5);
    for (double& w : window) w = std::pow(w, 0.85);
  } else {
    throw ValueError("Unknown window function '" + name + "'");
  }
  if (periodic) window.pop_back();
  at::Tensor out = at::tensor(window, at::kDouble);
  if (!frame_length) return out;
  if (window_length > *frame_length)
    throw ValueError("Length of the window (" + std::to_string(window_length) + ") may not be larger than frame_length (" +
                     std::to_string(*frame_length) + ")");
  at::Tensor padded_window = at::zeros({*frame_length}, at::kDouble);
  int64_t offset = center ? (*frame_length - window_length) / 2 : 0;
  padded_window.narrow(0, offset, window_length).copy_(out);
  return padded_window;
}

at::Tensor spectrogram(const at::Tensor& waveform_in, const at::Tensor& window_in, int64_t frame_length,
                       int64_t hop_length, double power, const at::Tensor& mel_filters, double mel_floor) {
  int64_t fft_length = frame_length;
  if (window_in.dim() != 1 || window_in.size(0) != frame_length)
    throw ValueError("Length of the window (" + std::to_string(window_in.numel()) + ") must equal frame_length (" +
                     std::to_string(frame_length) + ")");
  if (hop_length <= 0) throw ValueError("hop_length must be greater than zero");
  if (waveform_in.dim() != 1)
    throw ValueError("Input waveform must have only one dimension, shape is " + c10::str(waveform_in.sizes()));
  if (waveform_in.is_complex()) throw ValueError("Complex-valued input waveforms are not currently supported");

  // center pad the waveform; promote to float64, since np.fft uses float64 internally
  at::Tensor waveform = reflect_pad(waveform_in.to(at::kDouble).contiguous(), frame_length / 2);
  at::Tensor window = window_in.to(at::kDouble);

  // split waveform into frames of frame_length size
  int64_t num_frames = 1 + static_cast<int64_t>(std::floor(static_cast<double>(waveform.size(0) - frame_length) /
                                                           static_cast<double>(hop_length)));
  if (num_frames < 1)
    throw ValueError("waveform of " + std::to_string(waveform_in.size(0)) + " samples is too short for one frame of " +
                     std::to_string(frame_length));
  at::Tensor frames = waveform.narrow(0, 0, (num_frames - 1) * hop_length + frame_length).unfold(0, frame_length, hop_length);
  // np.fft.rfft per frame, stored in a complex64 array
  at::Tensor spec = at::fft_rfft(frames * window, fft_length, -1).to(at::kComplexFloat);
  // np.abs(spectrogram, dtype=np.float64) ** power
  at::Tensor result = spec.to(at::kComplexDouble).abs();
  if (power != 1.0) result = result.pow(power);
  result = result.t();
  if (mel_filters.defined()) {
    if (mel_filters.dim() != 2 || mel_filters.size(0) != result.size(0))
      throw ValueError("mel_filters must be [" + std::to_string(result.size(0)) + " frequency bins, mel filters], got " +
                       c10::str(mel_filters.sizes()));
    result = at::clamp_min(at::matmul(mel_filters.to(at::kDouble).t(), result), mel_floor);
  }
  return result;
}

}  // namespace audio_utils

// ---- ClvpFeatureExtractor ----

ClvpFeatureExtractor::ClvpFeatureExtractor() { init_derived(); }

void ClvpFeatureExtractor::init_derived() {
  n_samples = chunk_length * sampling_rate;
  nb_max_frames = hop_length > 0 ? n_samples / hop_length : 0;
  mel_filters = audio_utils::mel_filter_bank(1 + (n_fft / 2), feature_size, 0.0, 8000.0, sampling_rate, "slaney", "htk");
}

ClvpFeatureExtractor ClvpFeatureExtractor::from_dict(const json& dict_in, const std::string& source) {
  if (!dict_in.is_object()) throw ConfigError(source + ": expected a JSON object");
  json dict = dict_in;
  ClvpFeatureExtractor fe;
  ConfigVisitor v(ConfigVisitor::Mode::kRead, dict, source);
  v("feature_size", fe.feature_size);
  v("sampling_rate", fe.sampling_rate);
  v("default_audio_length", fe.default_audio_length);
  v("hop_length", fe.hop_length);
  v("chunk_length", fe.chunk_length);
  v("n_fft", fe.n_fft);
  v("padding_value", fe.padding_value);
  v("mel_norms", fe.mel_norms);
  v("return_attention_mask", fe.return_attention_mask);
  v("padding_side", fe.padding_side);
  if (fe.feature_size <= 0 || fe.sampling_rate <= 0 || fe.hop_length <= 0 || fe.n_fft < 2)
    throw ConfigError(source + ": feature_size, sampling_rate, hop_length must be positive and n_fft >= 2");
  if (fe.padding_side != "right" && fe.padding_side != "left")
    throw ConfigError(source + ": key 'padding_side' must be 'right' or 'left', got '" + fe.padding_side + "'");
  if (fe.mel_norms && static_cast<int64_t>(fe.mel_norms->size()) != fe.feature_size)
    throw ConfigError(source + ": key 'mel_norms' must hold feature_size (" + std::to_string(fe.feature_size) +
                      ") values, got " + std::to_string(fe.mel_norms->size()));
  // n_samples and nb_max_frames are recomputed, as ClvpFeatureExtractor.__init__ does after setting the kwargs.
  for (auto& [key, value] : dict.items())
    if (!v.seen().count(key) && key != "n_samples" && key != "nb_max_frames" && key != "feature_extractor_type")
      fe.extra[key] = value;
  fe.init_derived();
  return fe;
}

ClvpFeatureExtractor ClvpFeatureExtractor::from_pretrained(const std::string& path) {
  std::string file = fs::is_directory(path) ? (fs::path(path) / "preprocessor_config.json").string() : path;
  return from_dict(read_json_file(file, "preprocessor config"), file);
}

json ClvpFeatureExtractor::to_dict() const {
  json out = extra;
  out["feature_extractor_type"] = "ClvpFeatureExtractor";
  out["feature_size"] = feature_size;
  out["sampling_rate"] = sampling_rate;
  out["default_audio_length"] = default_audio_length;
  out["hop_length"] = hop_length;
  out["chunk_length"] = chunk_length;
  out["n_fft"] = n_fft;
  out["padding_value"] = padding_value;
  out["mel_norms"] = mel_norms;
  out["return_attention_mask"] = return_attention_mask;
  out["padding_side"] = padding_side;
  out["n_samples"] = n_samples;
  out["nb_max_frames"] = nb_max_frames;
  return out;
}

void ClvpFeatureExtractor::save_pretrained(const std::string& dir) const {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw ConfigError("cannot create directory " + dir + ": " + ec.message());
  write_json_file(to_dict(), (fs::path(dir) / "preprocessor_config.json").string());
}

at::Tensor ClvpFeatureExtractor::load_wav(const std::string& path) const {
  WavData wav = read_wav(path);
  if (wav.info.sampling_rate != sampling_rate)
    throw ValueError(path + ": sampled at " + std::to_string(wav.info.sampling_rate) + " Hz, but this "
                     "ClvpFeatureExtractor expects " + std::to_string(sampling_rate) + " Hz (resample it first)");
  return wav.samples.size(0) == 1 ? wav.samples[0] : wav.samples.mean(0);
}

at::Tensor ClvpFeatureExtractor::_np_extract_fbank_features(const at::Tensor& waveform) const {
  at::Tensor log_spec = audio_utils::spectrogram(waveform, audio_utils::window_function(n_fft, "hann"), n_fft,
                                                 hop_length, 2.0, mel_filters);
  log_spec = at::log(at::clamp_min(log_spec, 1e-5));
  if (mel_norms) log_spec = log_spec / at::tensor(*mel_norms, at::kDouble).unsqueeze(1);
  return log_spec;
}

std::map<std::string, at::Tensor> ClvpFeatureExtractor::operator()(const std::vector<at::Tensor>& raw_speech,
                                                                   const CallOptions& options) const {
  if (options.sampling_rate && *options.sampling_rate != sampling_rate)
    throw ValueError("The model corresponding to this feature extractor: ClvpFeatureExtractor was trained using a "
                     "sampling rate of " + std::to_string(sampling_rate) + ". Please make sure that the provided "
                     "`raw_speech` input was sampled with " + std::to_string(sampling_rate) + " and not " +
                     std::to_string(*options.sampling_rate) + ".");
  if (raw_speech.empty()) throw ValueError("ClvpFeatureExtractor: raw_speech is empty");
  std::vector<at::Tensor> speech;
  for (const auto& s : raw_speech) {
    if (!s.defined() || s.dim() != 1)
      throw ValueError("Only mono-channel audio is supported for input to ClvpFeatureExtractor: each waveform must be "
                       "1-D [samples] (average the channels first, as load_wav does)");
    speech.push_back(s.to(at::kFloat));
  }

  // SequenceFeatureExtractor.pad
  enum class Padding { kLongest, kMaxLength, kDoNotPad };
  Padding strategy;
  if (options.padding == "max_length") strategy = Padding::kMaxLength;
  else if (options.padding == "longest") strategy = Padding::kLongest;
  else if (options.padding == "do_not_pad") strategy = Padding::kDoNotPad;
  else throw ValueError("padding must be 'max_length', 'longest' or 'do_not_pad', got '" + options.padding + "'");
  int64_t max_length = options.max_length.value_or(default_audio_length * sampling_rate);
  auto round_up = [&](int64_t length) {
    if (options.pad_to_multiple_of && *options.pad_to_multiple_of > 0 && length % *options.pad_to_multiple_of != 0)
      length = (length / *options.pad_to_multiple_of + 1) * *options.pad_to_multiple_of;
    return length;
  };
  // _truncate
  if (options.truncation) {
    int64_t limit = round_up(max_length);
    for (auto& s : speech)
      if (s.size(0) > limit) s = s.narrow(0, 0, limit);
  }
  if (strategy == Padding::kLongest) {
    max_length = 0;
    for (const auto& s : speech) max_length = std::max(max_length, s.size(0));
    strategy = Padding::kMaxLength;
  }
  // _pad
  std::vector<at::Tensor> padded, masks;
  for (const auto& s : speech) {
    int64_t target = round_up(max_length);
    at::Tensor mask = at::ones({s.size(0)}, at::kInt);
    at::Tensor wave = s;
    if (strategy != Padding::kDoNotPad && s.size(0) < target) {
      int64_t difference = target - s.size(0);
      std::vector<int64_t> pad = padding_side == "right" ? std::vector<int64_t>{0, difference}
                                                         : std::vector<int64_t>{difference, 0};
      mask = at::constant_pad_nd(mask, pad, 0);
      wave = at::constant_pad_nd(wave, pad, padding_value);
    }
    padded.push_back(wave);
    masks.push_back(mask);
  }
  for (const auto& w : padded)
    if (w.size(0) != padded.front().size(0))
      throw ValueError("ClvpFeatureExtractor: waveforms of different lengths (" + std::to_string(w.size(0)) + " vs " +
                       std::to_string(padded.front().size(0)) + ") cannot be batched without padding");

  std::vector<at::Tensor> features;
  for (const auto& w : padded) features.push_back(_np_extract_fbank_features(w).to(at::kFloat));
  std::map<std::string, at::Tensor> out;
  out["input_features"] = at::stack(features);
  if (options.return_attention_mask) out["attention_mask"] = at::stack(masks);
  return out;
}

}  // namespace transformers
