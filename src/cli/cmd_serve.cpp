// tfcpp serve: an OpenAI-compatible HTTP server (include/transformers/server.h) over a causal LM.
#include "cli/commands.h"

#include "transformers/errors.h"
#include "transformers/server.h"
#include "transformers/tokenizer.h"

#include <pthread.h>
#include <signal.h>

#include <fstream>
#include <iostream>
#include <sstream>

namespace tfcpp {

using namespace transformers;

namespace {

int cmd_serve(const LoadFlags& flags, ServerOptions options, const std::string& chat_template_file, bool no_batch) {
  // SIGINT / SIGTERM are taken by sigwait below: block them before any thread (OpenMP, HTTP) starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  setup_threads(flags.threads);
  if (!chat_template_file.empty()) {
    std::ifstream in(chat_template_file, std::ios::binary);
    if (!in) throw ValueError("--chat-template: cannot read " + chat_template_file);
    std::ostringstream text;
    text << in.rdbuf();
    options.chat_template = text.str();
  }
  options.batched_decode = !no_batch;
  double load_s = 0;
  std::shared_ptr<PreTrainedModel> model = flags.load("causal-lm", &load_s);
  auto tokenizer = std::make_shared<const Tokenizer>(Tokenizer::from_pretrained(flags.model));
  Server server(model, tokenizer, options, flags.model);
  server.start();
  std::fprintf(stderr, "tfcpp serve: %s (%s, loaded in %.2f s) on http://%s:%d  [max batch %lld, queue %lld%s]\n",
               server.options().model_id.c_str(), model->class_name.c_str(), load_s, options.host.c_str(),
               server.port(), static_cast<long long>(options.max_batch), static_cast<long long>(options.max_queue),
               options.api_key.empty() ? "" : ", API key required");
  int sig = 0;
  sigwait(&signals, &sig);
  std::fprintf(stderr, "tfcpp serve: signal %d, shutting down\n", sig);
  server.stop();
  return 0;
}

std::function<int()> setup_serve(CLI::App* cmd) {
  auto flags = std::make_shared<LoadFlags>();
  auto options = std::make_shared<ServerOptions>();
  auto chat_template = std::make_shared<std::string>();
  auto no_batch = std::make_shared<bool>(false);
  flags->add(cmd);
  cmd->add_option("--host", options->host, "Address to bind (default 127.0.0.1: this machine only)");
  cmd->add_option("--port", options->port, "Port (default 8080; 0 = any free port)");
  cmd->add_option("--max-batch", options->max_batch, "Sequences decoded together per step (default 8)");
  cmd->add_option("--max-queue", options->max_queue, "Requests that may wait for a slot; more get 429 (default 64)");
  cmd->add_option("--api-key", options->api_key, "Require 'Authorization: Bearer KEY' (default: TFCPP_API_KEY)");
  cmd->add_option("--max-tokens", options->max_tokens, "Largest max_tokens a request may ask for (default 2048)");
  cmd->add_option("--max-body", options->max_body_bytes, "Largest request body in bytes; more get 413 (default 1 MiB)");
  cmd->add_option("--model-id", options->model_id, "Model name in /v1/models and responses (default: folder name)");
  cmd->add_option("--chat-template", *chat_template, "Jinja chat template file for tokenizers without one");
  cmd->add_option("--http-threads", options->http_threads, "HTTP worker threads (default max-batch + max-queue + 4)");
  cmd->add_flag("--no-batch", *no_batch, "Step each running request alone instead of one batched forward");
  return [flags, options, chat_template, no_batch] {
    if (options->api_key.empty())
      if (const char* key = std::getenv("TFCPP_API_KEY")) options->api_key = key;
    return cmd_serve(*flags, *options, *chat_template, *no_batch);
  };
}

}  // namespace

TFCPP_CLI_COMMAND("serve", "OpenAI-compatible HTTP server (/v1/completions, /v1/chat/completions, streaming)",
                  setup_serve);

}  // namespace tfcpp
