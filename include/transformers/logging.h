// transformers.utils.logging: a library logger with transformers' verbosity levels and warning_once.
// The level comes from TRANSFORMERS_VERBOSITY (debug, info, warning, error, critical; default warning) or
// set_verbosity. Messages go to stderr, or to a handler installed by the application (tests capture them).
#pragma once

#include <functional>
#include <string>

namespace transformers::logging {

enum Level { DEBUG = 10, INFO = 20, WARNING = 30, ERROR = 40, CRITICAL = 50 };

int get_verbosity();
void set_verbosity(int level);
// Receives every message at or above the verbosity; an empty function restores stderr.
using Handler = std::function<void(int level, const std::string& message)>;
void set_handler(Handler handler);

void debug(const std::string& message);
void info(const std::string& message);
void warning(const std::string& message);
// logger.warning_once: each distinct message once per process.
void warning_once(const std::string& message);

}  // namespace transformers::logging
