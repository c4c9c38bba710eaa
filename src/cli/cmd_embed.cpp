// tfcpp embed: a sentence embedding from AutoModel's last_hidden_state (transformers' FeatureExtractionPipeline
// gives the per-token features; pooling as sentence-transformers does it): mean over the tokens the attention mask
// keeps, the first ([CLS]) token, or the last kept token; optionally L2-normalised.
#include "cli/commands.h"

#include "transformers/auto.h"
#include "transformers/errors.h"
#include "transformers/tokenizer.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <sstream>

namespace fs = std::filesystem;

namespace tfcpp {

using namespace transformers;

namespace {

struct EmbedOptions {
  LoadFlags flags;
  std::string ids, type_ids, mask, text, pooling = "mean";
  bool normalize = false, as_json = false;
};

int run_embed(EmbedOptions opt, const CLI::App* cmd) {
  if (opt.ids.empty() == opt.text.empty()) {
    std::fprintf(stderr, "error: embed needs exactly one of --ids or --text\n%s", cmd->help().c_str());
    return 2;
  }
  if (opt.pooling != "mean" && opt.pooling != "cls" && opt.pooling != "last")
    throw ValueError("--pooling must be mean, cls or last, got '" + opt.pooling + "'");
  setup_threads(opt.flags.threads);
  auto config = AutoConfig::from_pretrained(opt.flags.model);
  if (config->is_encoder_decoder)
    throw ValueError("embed runs encoder-only and decoder-only models; " + opt.flags.model +
                     " is an encoder-decoder model (config.is_encoder_decoder is true)");
  // AutoModel: the base model, whatever architectures config.json lists.
  if (opt.flags.class_name.empty()) opt.flags.class_name = class_for_task(config->model_type(), tasks::kBase);

  std::vector<int64_t> ids, type_ids, attention_mask;
  if (!opt.text.empty()) {
    if (!fs::exists(fs::path(opt.flags.model) / "tokenizer.json"))
      throw TokenizerError("--text needs a tokenizer, but " + opt.flags.model +
                           " has no tokenizer.json; pass token ids with --ids instead");
    Encoding encoding = Tokenizer::from_pretrained(opt.flags.model).encode_plus(opt.text);
    ids = encoding.ids;
    type_ids = encoding.type_ids;
    attention_mask = encoding.attention_mask;
  } else {
    ids = parse_id_list(opt.ids, "--ids");
    attention_mask.assign(ids.size(), 1);
  }
  if (!opt.type_ids.empty()) type_ids = parse_id_list(opt.type_ids, "--type-ids");
  if (!opt.mask.empty()) attention_mask = parse_id_list(opt.mask, "--attention-mask");
  if (!type_ids.empty() && type_ids.size() != ids.size())
    throw ValueError(fmt::format("--type-ids has {} values for {} tokens", type_ids.size(), ids.size()));
  if (attention_mask.size() != ids.size())
    throw ValueError(fmt::format("--attention-mask has {} values for {} tokens", attention_mask.size(), ids.size()));
  if (std::none_of(attention_mask.begin(), attention_mask.end(), [](int64_t m) { return m != 0; }))
    throw ValueError("the attention mask keeps no token");

  auto model = opt.flags.load(tasks::kBase);
  if (!opt.text.empty() && opt.type_ids.empty() && !returns_token_type_ids(opt.flags.model, *model->config))
    type_ids.clear();
  if (auto embeddings = model->get_input_embeddings()) {
    for (int64_t id : ids)
      if (id >= embeddings->num_embeddings)
        throw ValueError(fmt::format("token id {} is out of range: the model's vocabulary has {} ids", id,
                                     embeddings->num_embeddings));
  }

  at::Tensor hidden;  // [T, H]
  {
    c10::InferenceMode guard;
    ModelInputs in;
    in.input_ids = at::tensor(ids, at::kLong).unsqueeze(0);
    in.attention_mask = at::tensor(attention_mask, at::kLong).unsqueeze(0);
    if (!type_ids.empty()) in.token_type_ids = at::tensor(type_ids, at::kLong).unsqueeze(0);
    ModelOutput out = model->forward(in);
    if (!out.last_hidden_state.defined())
      throw ValueError(model->class_name + " returned no last_hidden_state; embed needs a base model (AutoModel)");
    hidden = out.last_hidden_state[0].to(at::kDouble);
  }
  at::Tensor mask = at::tensor(attention_mask, at::kLong).ne(0).to(at::kDouble);  // [T]
  at::Tensor pooled;
  if (opt.pooling == "mean") {
    pooled = (hidden * mask.unsqueeze(1)).sum(0) / mask.sum().clamp_min(1e-9);
  } else if (opt.pooling == "cls") {
    pooled = hidden[0];
  } else {
    int64_t last = static_cast<int64_t>(attention_mask.size()) - 1;
    while (last > 0 && attention_mask[static_cast<size_t>(last)] == 0) --last;
    pooled = hidden[last];
  }
  if (opt.normalize) pooled = pooled / pooled.norm().clamp_min(1e-12);  // torch.nn.functional.normalize
  pooled = pooled.contiguous();
  std::vector<double> values(pooled.data_ptr<double>(), pooled.data_ptr<double>() + pooled.numel());

  if (opt.as_json) {
    nlohmann::ordered_json result = {{"pooling", opt.pooling},
                                     {"normalized", opt.normalize},
                                     {"dim", values.size()},
                                     {"tokens", ids.size()},
                                     {"embedding", values}};
    std::cout << result.dump() << std::endl;
    return 0;
  }
  std::cout << fmt::format("{}-dim {} pooling{} over {} tokens:\n", values.size(), opt.pooling,
                           opt.normalize ? ", normalized" : "", ids.size());
  for (size_t i = 0; i < values.size(); ++i) std::cout << fmt::format("{}{:.6f}", i ? " " : "", values[i]);
  std::cout << "\n";
  return 0;
}

std::function<int()> embed_setup(CLI::App* cmd) {
  auto opt = std::make_shared<EmbedOptions>();
  opt->flags.add(cmd);
  cmd->add_option("--ids", opt->ids, "Token ids, e.g. \"2 15 74 3\" (special tokens included)");
  cmd->add_option("--text", opt->text, "Text to embed (needs tokenizer.json in the model folder)");
  cmd->add_option("--type-ids", opt->type_ids, "token_type_ids (segment ids), e.g. \"0 0 1 1\"");
  cmd->add_option("--attention-mask", opt->mask, "Attention mask for --ids, e.g. \"1 1 1 0\" (default: all ones)");
  cmd->add_option("--pooling", opt->pooling, "mean (over the tokens the mask keeps), cls or last (default mean)");
  cmd->add_flag("--normalize", opt->normalize, "L2-normalise the pooled embedding");
  cmd->add_flag("--json", opt->as_json, "Print {\"pooling\", \"normalized\", \"dim\", \"tokens\", \"embedding\"} as JSON");
  return [opt, cmd] { return run_embed(*opt, cmd); };
}

}  // namespace

TFCPP_CLI_COMMAND("embed", "Sentence embedding from a base model (AutoModel): mean, cls or last pooling",
                  embed_setup);

}  // namespace tfcpp
