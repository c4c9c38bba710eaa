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

// The Hub (hub.h), as huggingface_hub's utils/_errors.py; every message says what to do.
// An HTTP error from the Hub or its CDN (status and server message in the text).
class HubHTTPError : public HubError {
 public:
  using HubError::HubError;
};
// 401/404 with X-Error-Code RepoNotFound: no such repo, or private and no (valid) token.
class RepositoryNotFoundError : public HubHTTPError {
 public:
  using HubHTTPError::HubHTTPError;
};
// 403 / X-Error-Code GatedRepo: the repo exists but this token has not been granted access.
class GatedRepoError : public RepositoryNotFoundError {
 public:
  using RepositoryNotFoundError::RepositoryNotFoundError;
};
class RevisionNotFoundError : public HubHTTPError {
 public:
  using HubHTTPError::HubHTTPError;
};
// The file is not in the repo at that revision (recorded under .no_exist/ in the cache).
class EntryNotFoundError : public HubHTTPError {
 public:
  using HubHTTPError::HubHTTPError;
};
// Offline (or the Hub unreachable) and the file is not in the cache.
class LocalEntryNotFoundError : public EntryNotFoundError {
 public:
  using EntryNotFoundError::EntryNotFoundError;
};
// No connection to the endpoint (DNS, refused, timeout, dropped).
class HubConnectionError : public HubError {
 public:
  using HubError::HubError;
};

// A caller passed arguments that cannot work together (wrong shapes, unsupported option for this model).
class ValueError : public Error {
 public:
  using Error::Error;
};

// Distributed inference (distributed.h): a rank that died, did not join the rendezvous or did not answer a collective
// within the timeout; the message names the operation, this rank and the world size.
class DistributedError : public Error {
 public:
  using Error::Error;
};

// Chat templates (chat_template.h): a Jinja syntax error, an unsupported construct, a runtime error while rendering,
// or the template's raise_exception(message) (jinja2's TemplateError in transformers).
class ChatTemplateError : public Error {
 public:
  using Error::Error;
};

}  // namespace transformers
