// Typed errors (STYLE.md habit 5): each names the file, the key and what to do.
#pragma once

#include <stdexcept>
#include <string>

namespace transformers {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// config.json / generation_config.json: missing file, bad JSON, wrong type for a key, unknown model_type.
class ConfigError : public Error {
 public:
  using Error::Error;
};

// Weights files: safetensors validation, missing weights file, shape mismatch, unsupported dtype.
class CheckpointError : public Error {
 public:
  using Error::Error;
};

class TokenizerError : public Error {
 public:
  using Error::Error;
};

class GenerationError : public Error {
 public:
  using Error::Error;
};

class HubError : public Error {
 public:
  using Error::Error;
};

// A caller passed arguments that cannot work together (wrong shapes, unsupported option for this model).
class ValueError : public Error {
 public:
  using Error::Error;
};

}  // namespace transformers
