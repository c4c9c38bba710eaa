// transformers.utils.logging (include/transformers/logging.h).
#include "transformers/logging.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <set>
#include <string_view>

namespace transformers::logging {
namespace {

int level_from_env() {
  const char* env = std::getenv("TRANSFORMERS_VERBOSITY");
  if (!env || !*env) return WARNING;
  const std::string_view name(env);
  if (name == "debug") return DEBUG;
  if (name == "info") return INFO;
  if (name == "warning") return WARNING;
  if (name == "error") return ERROR;
  if (name == "critical") return CRITICAL;
  std::fprintf(stderr, "Unknown option TRANSFORMERS_VERBOSITY=%s, has to be one of: debug, info, warning, error, "
                       "critical\n", env);
  return WARNING;
}

std::atomic<int>& verbosity() {
  static std::atomic<int> level{level_from_env()};
  return level;
}

std::mutex& mutex() {
  static std::mutex m;
  return m;
}

Handler& handler() {
  static Handler h;
  return h;
}

void emit(int level, const std::string& message) {
  if (level < verbosity().load()) return;
  std::lock_guard<std::mutex> lock(mutex());
  if (handler()) {
    handler()(level, message);
    return;
  }
  std::fprintf(stderr, "%s\n", message.c_str());
}

}  // namespace

int get_verbosity() { return verbosity().load(); }
void set_verbosity(int level) { verbosity().store(level); }

void set_handler(Handler h) {
  std::lock_guard<std::mutex> lock(mutex());
  handler() = std::move(h);
}

void debug(const std::string& message) { emit(DEBUG, message); }
void info(const std::string& message) { emit(INFO, message); }
void warning(const std::string& message) { emit(WARNING, message); }

void warning_once(const std::string& message) {
  static std::mutex seen_mutex;
  static std::set<std::string> seen;
  {
    std::lock_guard<std::mutex> lock(seen_mutex);
    if (!seen.insert(message).second) return;
  }
  emit(WARNING, message);
}

}  // namespace transformers::logging
