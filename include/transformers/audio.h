// WAV files (RIFF/WAVE): write a waveform as 16-bit PCM or 32-bit IEEE float, read one back.
// The layout is what scipy.io.wavfile writes: a 16-byte `fmt ` chunk for PCM; for float an 18-byte `fmt ` chunk
// (cbSize = 0) followed by a `fact` chunk, as the WAVE spec asks of non-PCM formats.
#pragma once

#include "transformers/errors.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

namespace transformers {

// Unreadable, malformed or unsupported WAV files; write failures.
class AudioError : public Error {
 public:
  using Error::Error;
};

enum class WavFormat {
  kPcm16,    // 16-bit signed PCM: samples clipped to [-1, 1], scaled by 32767 and rounded
  kFloat32,  // 32-bit IEEE float, samples as they are
};

struct WavWriteOptions {
  int64_t sampling_rate = 16000;  // SeamlessM4TConfig.sampling_rate
  WavFormat format = WavFormat::kPcm16;
};

// Writes `waveform` ([samples] mono, or [channels, samples]) to `path` atomically: a temporary file in the same folder,
// renamed over `path` once complete. AudioError on bad shapes or I/O failures (nothing is left behind).
void write_wav(const std::string& path, const at::Tensor& waveform, const WavWriteOptions& options = {});

struct WavInfo {
  int64_t audio_format = 0;  // 1 = PCM, 3 = IEEE float (WAVE_FORMAT_EXTENSIBLE resolves to its sub-format)
  int64_t num_channels = 0;
  int64_t sampling_rate = 0;
  int64_t byte_rate = 0;
  int64_t block_align = 0;
  int64_t bits_per_sample = 0;
  int64_t num_frames = 0;  // samples per channel
};

struct WavData {
  WavInfo info;
  at::Tensor samples;  // float32 [channels, frames]; PCM scaled to [-1, 1) (int16 / 32768)
};

// Reads PCM 8/16/24/32-bit and IEEE float 32/64-bit files. AudioError naming the file and the problem otherwise.
WavData read_wav(const std::string& path);
// Only the header (no sample conversion).
WavInfo read_wav_info(const std::string& path);

}  // namespace transformers
