// WAV writer and reader (RIFF/WAVE, little-endian): 16-bit PCM and 32-bit float out; PCM 8-32 and float 32/64 in.
#include "transformers/audio.h"

#include <ATen/ATen.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <vector>

namespace fs = std::filesystem;

namespace transformers {

namespace {

constexpr uint16_t kWaveFormatPcm = 1;
constexpr uint16_t kWaveFormatIeeeFloat = 3;
constexpr uint16_t kWaveFormatExtensible = 0xFFFE;

void put_u16(std::vector<uint8_t>& out, uint16_t v) {
  out.push_back(static_cast<uint8_t>(v));
  out.push_back(static_cast<uint8_t>(v >> 8));
}

void put_u32(std::vector<uint8_t>& out, uint32_t v) {
  for (int shift = 0; shift < 32; shift += 8) out.push_back(static_cast<uint8_t>(v >> shift));
}

void put_tag(std::vector<uint8_t>& out, const char* tag) { out.insert(out.end(), tag, tag + 4); }

uint32_t get_u32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 | static_cast<uint32_t>(p[2]) << 16 |
         static_cast<uint32_t>(p[3]) << 24;
}

uint16_t get_u16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | p[1] << 8); }

// Writes all of `bytes` to `fd`; false on error (errno set).
bool write_all(int fd, const uint8_t* bytes, size_t size) {
  while (size > 0) {
    ssize_t n = ::write(fd, bytes, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    bytes += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

struct ParsedWav {
  WavInfo info;
  size_t data_offset = 0;
  size_t data_size = 0;
};

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw AudioError(path + ": cannot open WAV file: " + std::strerror(errno));
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

ParsedWav parse_wav(const std::vector<uint8_t>& file, const std::string& path) {
  auto fail = [&](const std::string& what) { throw AudioError(path + ": not a valid WAV file: " + what); };
  if (file.size() < 12 || std::memcmp(file.data(), "RIFF", 4) != 0 || std::memcmp(file.data() + 8, "WAVE", 4) != 0)
    fail("missing the RIFF/WAVE header");
  ParsedWav out;
  bool have_fmt = false, have_data = false;
  size_t pos = 12;
  while (pos + 8 <= file.size()) {
    const uint8_t* chunk = file.data() + pos;
    const size_t size = get_u32(chunk + 4);
    const size_t body = pos + 8;
    if (std::memcmp(chunk, "fmt ", 4) == 0) {
      if (size < 16 || body + size > file.size()) fail("truncated 'fmt ' chunk");
      const uint8_t* f = file.data() + body;
      WavInfo& info = out.info;
      info.audio_format = get_u16(f);
      info.num_channels = get_u16(f + 2);
      info.sampling_rate = get_u32(f + 4);
      info.byte_rate = get_u32(f + 8);
      info.block_align = get_u16(f + 12);
      info.bits_per_sample = get_u16(f + 14);
      if (info.audio_format == kWaveFormatExtensible) {
        if (size < 40) fail("WAVE_FORMAT_EXTENSIBLE 'fmt ' chunk shorter than 40 bytes");
        info.audio_format = get_u16(f + 24);  // first two bytes of the sub-format GUID
      }
      have_fmt = true;
    } else if (std::memcmp(chunk, "data", 4) == 0) {
      if (body + size > file.size()) fail(fmt::format("'data' chunk declares {} bytes, the file holds {}", size,
                                                      file.size() - body));
      out.data_offset = body;
      out.data_size = size;
      have_data = true;
    }
    pos = body + size + (size & 1);  // chunks are padded to even sizes
  }
  if (!have_fmt) fail("no 'fmt ' chunk");
  if (!have_data) fail("no 'data' chunk");
  WavInfo& info = out.info;
  const bool pcm = info.audio_format == kWaveFormatPcm, ieee = info.audio_format == kWaveFormatIeeeFloat;
  const int64_t bits = info.bits_per_sample;
  if (!(pcm && (bits == 8 || bits == 16 || bits == 24 || bits == 32)) && !(ieee && (bits == 32 || bits == 64)))
    throw AudioError(fmt::format("{}: unsupported WAV sample format {} with {} bits per sample (supported: PCM "
                                 "8/16/24/32-bit, IEEE float 32/64-bit)",
                                 path, info.audio_format, bits));
  if (info.num_channels < 1) fail("zero channels");
  if (info.block_align != info.num_channels * bits / 8)
    fail(fmt::format("block_align {} is not channels ({}) x bytes per sample ({})", info.block_align,
                     info.num_channels, bits / 8));
  info.num_frames = static_cast<int64_t>(out.data_size / info.block_align);
  return out;
}

}  // namespace

void write_wav(const std::string& path, const at::Tensor& waveform, const WavWriteOptions& options) {
  if (!waveform.defined() || (waveform.dim() != 1 && waveform.dim() != 2))
    throw AudioError(path + ": write_wav expects a waveform of shape [samples] or [channels, samples]");
  if (waveform.dim() == 2 && (waveform.size(0) < 1 || waveform.size(0) > 65535))
    throw AudioError(fmt::format("{}: a WAV file holds 1 to 65535 channels, got {}", path, waveform.size(0)));
  if (options.sampling_rate <= 0 || options.sampling_rate > std::numeric_limits<uint32_t>::max())
    throw AudioError(fmt::format("{}: invalid sampling rate {}", path, options.sampling_rate));
  const bool pcm = options.format == WavFormat::kPcm16;
  const uint16_t channels = static_cast<uint16_t>(waveform.dim() == 1 ? 1 : waveform.size(0));
  const uint16_t bits = pcm ? 16 : 32;
  const uint16_t block_align = channels * bits / 8;

  // Interleaved frames: [samples, channels].
  at::Tensor frames = (waveform.dim() == 1 ? waveform.unsqueeze(1) : waveform.t()).to(at::kFloat).contiguous();
  const uint64_t data_size = static_cast<uint64_t>(frames.numel()) * (bits / 8);
  const uint64_t header_size = pcm ? 44 : 58;
  if (header_size - 8 + data_size > std::numeric_limits<uint32_t>::max())
    throw AudioError(fmt::format("{}: {} bytes of samples exceed the 4 GiB limit of a WAV file", path, data_size));

  std::vector<uint8_t> bytes;
  bytes.reserve(header_size + data_size);
  put_tag(bytes, "RIFF");
  put_u32(bytes, static_cast<uint32_t>(header_size - 8 + data_size));
  put_tag(bytes, "WAVE");
  put_tag(bytes, "fmt ");
  put_u32(bytes, pcm ? 16 : 18);
  put_u16(bytes, pcm ? kWaveFormatPcm : kWaveFormatIeeeFloat);
  put_u16(bytes, channels);
  put_u32(bytes, static_cast<uint32_t>(options.sampling_rate));
  put_u32(bytes, static_cast<uint32_t>(options.sampling_rate) * block_align);
  put_u16(bytes, block_align);
  put_u16(bytes, bits);
  if (!pcm) {
    put_u16(bytes, 0);  // cbSize
    put_tag(bytes, "fact");
    put_u32(bytes, 4);
    put_u32(bytes, static_cast<uint32_t>(frames.size(0)));
  }
  put_tag(bytes, "data");
  put_u32(bytes, static_cast<uint32_t>(data_size));
  if (pcm) {
    at::Tensor scaled = at::round(at::nan_to_num(frames, 0.0, 1.0, -1.0).clamp(-1.0, 1.0) * 32767.0).to(at::kShort);
    const int16_t* s = scaled.data_ptr<int16_t>();
    for (int64_t i = 0; i < scaled.numel(); ++i) put_u16(bytes, static_cast<uint16_t>(s[i]));
  } else {
    const float* s = frames.data_ptr<float>();
    for (int64_t i = 0; i < frames.numel(); ++i) {
      uint32_t v;
      std::memcpy(&v, &s[i], sizeof v);
      put_u32(bytes, v);
    }
  }

  // Atomic: a temporary file next to the target, renamed over it once complete.
  fs::path target(path);
  fs::path folder = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::string tmp = (folder / ("." + target.filename().string() + ".tmp-XXXXXX")).string();
  int fd = ::mkstemp(tmp.data());
  if (fd < 0) throw AudioError(path + ": cannot create a temporary file in " + folder.string() + ": " + std::strerror(errno));
  auto abandon = [&](const std::string& what) {
    int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    throw AudioError(path + ": " + what + ": " + std::strerror(err));
  };
  if (::fchmod(fd, 0644) != 0) abandon("cannot set permissions");
  if (!write_all(fd, bytes.data(), bytes.size())) abandon("write failed");
  if (::fsync(fd) != 0) abandon("fsync failed");
  if (::close(fd) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    throw AudioError(path + ": close failed: " + std::strerror(err));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    throw AudioError(path + ": cannot rename the temporary file into place: " + std::strerror(err));
  }
}

WavInfo read_wav_info(const std::string& path) { return parse_wav(read_file(path), path).info; }

WavData read_wav(const std::string& path) {
  std::vector<uint8_t> file = read_file(path);
  ParsedWav parsed = parse_wav(file, path);
  const WavInfo& info = parsed.info;
  const int64_t channels = info.num_channels, frames = info.num_frames, bytes = info.bits_per_sample / 8;
  at::Tensor samples = at::empty({frames, channels}, at::kFloat);
  float* out = samples.data_ptr<float>();
  const uint8_t* p = file.data() + parsed.data_offset;
  for (int64_t i = 0; i < frames * channels; ++i, p += bytes) {
    if (info.audio_format == kWaveFormatIeeeFloat) {
      if (bytes == 4) {
        uint32_t v = get_u32(p);
        float f;
        std::memcpy(&f, &v, sizeof f);
        out[i] = f;
      } else {
        uint64_t v = static_cast<uint64_t>(get_u32(p)) | static_cast<uint64_t>(get_u32(p + 4)) << 32;
        double d;
        std::memcpy(&d, &v, sizeof d);
        out[i] = static_cast<float>(d);
      }
    } else if (bytes == 1) {
      out[i] = (static_cast<int>(p[0]) - 128) / 128.0f;  // 8-bit PCM is unsigned
    } else if (bytes == 2) {
      out[i] = static_cast<int16_t>(get_u16(p)) / 32768.0f;
    } else if (bytes == 3) {
      int32_t v = static_cast<int32_t>(static_cast<uint32_t>(p[0]) << 8 | static_cast<uint32_t>(p[1]) << 16 |
                                       static_cast<uint32_t>(p[2]) << 24) >> 8;
      out[i] = static_cast<float>(v / 8388608.0);
    } else {
      out[i] = static_cast<float>(static_cast<int32_t>(get_u32(p)) / 2147483648.0);
    }
  }
  return {info, samples.t().contiguous()};
}

}  // namespace transformers
