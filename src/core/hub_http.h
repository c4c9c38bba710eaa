// Internal: libcurl requests for the Hub client (hub.cpp, hub_upload.cpp), and hf_raise_for_status.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace transformers::hub::detail {

struct HttpResponse {
  long status = 0;
  std::map<std::string, std::string> headers;  // lowercase names; the final response's (after redirects)
  std::string body;                            // unless streamed to a sink
  std::string url;                             // the request url (the last one when redirects were followed)
  std::string header(const std::string& lowercase_name) const {
    auto it = headers.find(lowercase_name);
    return it == headers.end() ? "" : it->second;
  }
  bool has_header(const std::string& lowercase_name) const { return headers.count(lowercase_name) > 0; }
  bool ok() const { return status >= 200 && status < 300; }
};

struct HttpRequest {
  std::string method = "GET";
  std::string url;
  std::map<std::string, std::string> headers;
  std::string body;                  // POST/PUT body from memory
  std::FILE* upload_file = nullptr;  // PUT body from a file (upload_size bytes from its current position)
  int64_t upload_size = 0;
  bool follow_redirects = false;
  long timeout_s = 10;  // connect timeout, and the low-speed limit window
  // Called with the body of a 2xx response (streamed); return false to abort. Non-2xx bodies go to `body`.
  std::function<bool(const char*, size_t)> sink;
};

// Performs the request. HubConnectionError when no response came back (refused, DNS, timeout, connection dropped);
// the sink may have received part of the body then.
HttpResponse perform(const HttpRequest& request);

// huggingface_hub's hf_raise_for_status: nothing for 2xx, else the typed HubHTTPError subclass.
void raise_for_status(const HttpResponse& response, const std::string& endpoint_name = "");

// headers: authorization (token) and user-agent, as build_hf_headers.
std::map<std::string, std::string> build_hf_headers(const std::optional<std::string>& token,
                                                    bool is_write_action = false);

std::string url_quote(const std::string& text, const std::string& safe = "/");
std::string base64_encode(const std::string& bytes);

}  // namespace transformers::hub::detail
