// libcurl transport for the Hub client, and huggingface_hub's utils/_errors.py hf_raise_for_status and
// utils/_headers.py build_hf_headers.
#include "core/hub_http.h"

#include "transformers/errors.h"
#include "transformers/hub.h"

#include <curl/curl.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <mutex>

namespace transformers::hub::detail {

namespace {

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Transfer {
  const HttpRequest* request;
  HttpResponse* response;
  CURL* curl;
  bool aborted = false;
};

size_t on_header(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string line(data, size * count);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
  if (line.rfind("HTTP/", 0) == 0) {
    t->response->headers.clear();  // a new response (after a redirect or a 100 Continue)
    return size * count;
  }
  auto colon = line.find(':');
  if (colon == std::string::npos) return size * count;
  std::string name = line.substr(0, colon), value = line.substr(colon + 1);
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
  size_t b = value.find_first_not_of(" \t");
  value = b == std::string::npos ? "" : value.substr(b);
  t->response->headers[name] = value;
  return size * count;
}

size_t on_body(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  long status = 0;
  curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
  if (t->request->sink && status >= 200 && status < 300) {
    if (!t->request->sink(data, size * count)) {
      t->aborted = true;
      return 0;
    }
  } else if (t->response->body.size() < (64u << 20)) {
    t->response->body.append(data, size * count);
  }
  return size * count;
}

size_t on_read(char* buffer, size_t size, size_t count, void* user) {
  return std::fread(buffer, 1, size * count, static_cast<std::FILE*>(user));
}

std::string server_message(const HttpResponse& r) {
  std::string message = r.header("x-error-message");
  if (!message.empty()) return message;
  try {
    auto j = nlohmann::json::parse(r.body);
    if (j.is_object() && j.contains("error") && j["error"].is_string()) return j["error"].get<std::string>();
    if (j.is_object() && j.contains("error") && j["error"].is_array()) return j["error"].dump();
  } catch (const std::exception&) {
  }
  return "";
}

}  // namespace

HttpResponse perform(const HttpRequest& request) {
  global_init();
  HttpResponse response;
  response.url = request.url;
  CURL* curl = curl_easy_init();
  if (!curl) throw HubConnectionError("could not initialise libcurl");
  Transfer transfer{&request, &response, curl};
  curl_slist* headers = nullptr;
  for (const auto& [k, v] : request.headers) headers = curl_slist_append(headers, (k + ": " + v).c_str());
  // No "Expect: 100-continue" round trip for uploads.
  headers = curl_slist_append(headers, "Expect:");
  curl_easy_setopt(curl, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, request.follow_redirects ? 1L : 0L);
  curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, request.timeout_s);
  // A transfer that stalls below 1 byte/s for timeout_s seconds is a timeout (requests' read timeout).
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, request.timeout_s);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &transfer);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &transfer);
  // Respect http(s)_proxy / no_proxy from the environment (libcurl's default).
  if (request.method == "HEAD") {
    curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  } else if (request.method == "GET") {
    curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
  } else if (request.upload_file) {
    curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(curl, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(curl, CURLOPT_READDATA, request.upload_file);
    curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(request.upload_size));
    if (request.method != "PUT") curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  } else {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, request.body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
    if (request.method != "POST") curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  }
  CURLcode code = curl_easy_perform(curl);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &response.status);
  char* effective = nullptr;
  if (curl_easy_getinfo(curl, CURLINFO_EFFECTIVE_URL, &effective) == CURLE_OK && effective) response.url = effective;
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  if (code != CURLE_OK && !(transfer.aborted && code == CURLE_WRITE_ERROR))
    throw HubConnectionError(request.method + " " + request.url + " failed: " + curl_easy_strerror(code) +
                             ". Check your connection, proxy settings and HF_ENDPOINT" +
                             (request.url.empty() ? "" : "") + ".");
  return response;
}

void raise_for_status(const HttpResponse& r, const std::string& endpoint_name) {
  if (r.ok()) return;
  const std::string code = r.header("x-error-code"), error_message = r.header("x-error-message");
  const std::string status = std::to_string(r.status);
  std::string server = server_message(r);
  auto with_server = [&](std::string message) {
    if (!server.empty() && message.find(server) == std::string::npos) message += "\n" + server;
    std::string request_id = r.header("x-request-id");
    if (!request_id.empty()) message += " (Request ID: " + request_id + ")";
    return message;
  };
  if (code == "RevisionNotFound")
    throw RevisionNotFoundError(with_server(status + " Client Error.\n\nRevision Not Found for url: " + r.url + "."));
  if (code == "EntryNotFound")
    throw EntryNotFoundError(with_server(status + " Client Error.\n\nEntry Not Found for url: " + r.url + "."));
  if (code == "GatedRepo")
    throw GatedRepoError(with_server(status + " Client Error.\n\nCannot access gated repo for url " + r.url +
                                     ".\nAsk for access on the repo's page, then pass a token that has been granted "
                                     "access (HF_TOKEN, $HF_HOME/token or the token option)."));
  if (error_message == "Access to this resource is disabled.")
    throw RepositoryNotFoundError(status + " Client Error.\n\nCannot access repository for url " + r.url +
                                  ".\nAccess to this resource is disabled.");
  const bool repo_url = r.url.find("/api/models/") != std::string::npos ||
                        r.url.find("/api/datasets/") != std::string::npos ||
                        r.url.find("/api/spaces/") != std::string::npos || r.url.find("/resolve/") != std::string::npos;
  if (code == "RepoNotFound" || (r.status == 401 && repo_url))
    throw RepositoryNotFoundError(with_server(
        status + " Client Error.\n\nRepository Not Found for url: " + r.url +
        ".\nPlease make sure you specified the correct `repo_id` and `repo_type`.\nIf you are trying to access a "
        "private or gated repo, make sure you are authenticated (HF_TOKEN, $HF_HOME/token or the token option)."));
  if (r.status == 400)
    throw HubHTTPError(with_server(endpoint_name.empty() ? "400 Bad request for " + r.url
                                                         : "400 Bad request for " + endpoint_name + " endpoint: " + r.url));
  if (r.status == 403)
    throw HubHTTPError(with_server("403 Forbidden: " + error_message + ".\nCannot access content at: " + r.url +
                                   ".\nIf you are trying to create or update content, make sure you have a token with "
                                   "the `write` role."));
  throw HubHTTPError(with_server(status + (r.status >= 500 ? " Server Error" : " Client Error") + " for url: " + r.url));
}

std::map<std::string, std::string> build_hf_headers(const std::optional<std::string>& token, bool is_write_action) {
  std::map<std::string, std::string> headers{{"user-agent", "tfcpp/0.1.0; hf_hub/0.22.2; transformers/4.40.2"}};
  std::optional<std::string> to_send = token;
  if (!to_send) {
    const char* disable = std::getenv("HF_HUB_DISABLE_IMPLICIT_TOKEN");
    std::string d = disable ? disable : "";
    std::transform(d.begin(), d.end(), d.begin(), [](unsigned char c) { return std::toupper(c); });
    if (!(d == "1" || d == "ON" || d == "YES" || d == "TRUE")) to_send = get_token();
  }
  if (to_send && !to_send->empty()) {
    if (is_write_action && to_send->rfind("api_org", 0) == 0)
      throw HubError("You must use your personal account token for write-access methods, not an organization token.");
    headers["authorization"] = "Bearer " + *to_send;
  } else if (is_write_action) {
    throw HubError("Token is required for write access, but no token was found. Set HF_TOKEN, write it to "
                   "$HF_HOME/token (huggingface-cli login) or pass the token option.");
  }
  return headers;
}

std::string url_quote(const std::string& text, const std::string& safe) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '_' || c == '.' || c == '-' || c == '~' || safe.find(static_cast<char>(c)) != std::string::npos) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::string base64_encode(const std::string& bytes) {
  static const char* table = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    uint32_t v = (uint8_t(bytes[i]) << 16) | (uint8_t(bytes[i + 1]) << 8) | uint8_t(bytes[i + 2]);
    out += table[(v >> 18) & 63];
    out += table[(v >> 12) & 63];
    out += table[(v >> 6) & 63];
    out += table[v & 63];
  }
  if (i + 1 == bytes.size()) {
    uint32_t v = uint8_t(bytes[i]) << 16;
    out += table[(v >> 18) & 63];
    out += table[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == bytes.size()) {
    uint32_t v = (uint8_t(bytes[i]) << 16) | (uint8_t(bytes[i + 1]) << 8);
    out += table[(v >> 18) & 63];
    out += table[(v >> 12) & 63];
    out += table[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

}  // namespace transformers::hub::detail
