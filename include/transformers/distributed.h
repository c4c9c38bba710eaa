// Distributed inference on libtorch's c10d (Gloo on CPU): a process group started from torchrun's environment
// variables, the collectives tensor parallelism needs, and the tensor-parallel plan a family declares
// (transformers' base_model_tp_plan / _tp_plan), applied by from_pretrained(tp_plan = "auto").
// The c10d headers stay in src/distributed/process_group.cpp.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace torch::nn {
class Module;
}

namespace transformers {

class PreTrainedModel;

namespace distributed {

struct ProcessGroupOptions {
  int rank = 0, world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  // Every collective, the rendezvous and a rank waiting for a dead peer give up after this (DistributedError).
  double timeout_s = 60.0;
};

// torchrun's variables: RANK, WORLD_SIZE, MASTER_ADDR (default 127.0.0.1), MASTER_PORT (default 29500), and
// TFCPP_DIST_TIMEOUT (seconds, default 60). ValueError for malformed values; world_size 1 when WORLD_SIZE is unset.
ProcessGroupOptions options_from_env();
// True when WORLD_SIZE is set to more than 1.
bool env_requests_distributed();

// Rendezvous at master_addr:master_port (rank 0 serves the store) and start a Gloo process group.
// DistributedError when a rank does not arrive within the timeout.
void init_process_group(const ProcessGroupOptions& options);
void init_process_group_from_env();  // options_from_env()
bool is_initialized();
int get_rank();        // 0 when not initialized
int get_world_size();  // 1 when not initialized
void destroy_process_group();

// Collectives on CPU tensors, blocking; each throws DistributedError (naming the operation and the ranks) when a peer
// dies or the timeout passes. No-ops (or identity) when not initialized.
void all_reduce(at::Tensor& tensor);                        // sum, in place
at::Tensor all_gather(const at::Tensor& tensor, int64_t dim);  // every rank's tensor (same shape) concatenated
void broadcast(at::Tensor& tensor, int src);
void send(const at::Tensor& tensor, int dst);
void recv(at::Tensor& tensor, int src);
void barrier();

// ---- Tensor parallelism ----

// Head counts of one attention module (read from it and written back with this rank's share).
struct TPHeads {
  int64_t num_heads = 0, num_kv_heads = 0, head_dim = 0;
};

// An attention module whose heads the plan splits. Its column-parallel linears are split on head boundaries: those
// named in `kv` by key/value heads (GQA: replicated when there are fewer key/value heads than ranks), `fused_qkv`
// ([q | k | v] in one output, GPT-2's c_attn) by parts, every other by query heads; its row-parallel linear takes
// the query heads' inputs. `head_embeddings` are tables with one column per head (T5's relative_attention_bias).
struct TPAttentionPlan {
  std::string pattern;  // "layers.*.self_attn"
  std::vector<std::string> kv, fused_qkv, head_embeddings;
  std::function<TPHeads(torch::nn::Module&)> get_heads;
  std::function<void(torch::nn::Module&, const TPHeads&)> set_heads;
};

// ---- Pipeline parallelism ----

// A family's pipeline plan, as transformers' base_model_pp_plan: `layers` (a ModuleList) is cut into consecutive
// stages, one per rank. `input` (the embeddings) runs on the first rank; later ranks receive the previous stage's
// hidden states in its place. `output` (the final norm) runs on the last rank; earlier ranks send their hidden states
// to the next stage there. `head` (on the head model: lm_head) runs on the last rank and its logits are broadcast,
// so every rank's generate() takes the same next token. `set_stage` marks a layer kept (with its index in this
// rank's KV cache) or skipped.
struct PPPlan {
  std::string layers, input, output, head;
  std::function<void(torch::nn::Module& layer, bool kept, int64_t cache_index)> set_stage;
};

// Splits the model's declared pipeline plan over the ranks: the first rank's stage is layers [0, n/world), and so
// on. Skipped layers and modules of other stages hold empty weights (the loader reads nothing for them).
void apply_pp_plan(PreTrainedModel& model, const std::string& pp_plan);

// Where this rank's slice of `size` rows starts and how many it holds: the first size % world ranks get one more.
std::pair<int64_t, int64_t> balanced_slice(int64_t size, int rank, int world_size);

// Applies the model's declared plan (base_model_tp_plan with the base model prefix, _tp_plan, _tp_attention) for
// this rank: matched layers get their shard's shape and a tensor-parallel forward, attention modules their share of
// heads, and the model remembers each weight's slice so the loader reads only that part of the checkpoint.
// ValueError when the model declares no plan or its heads cannot be split over the ranks.
void apply_tp_plan(PreTrainedModel& model, const std::string& tp_plan);
// Narrows each checkpoint tensor the plan shards to this rank's slice (a copy, so the rest of the mmapped file is
// never kept). Keys not in the plan are left as they are.
void shard_checkpoint(const PreTrainedModel& model, std::vector<std::pair<std::string, at::Tensor>>& tensors);

// Bytes of the weights this rank holds (parameters and buffers, tied counted once).
int64_t rank_weight_bytes(const PreTrainedModel& model);

// ---- Launch ----

// Runs `argv` (argv[0] is replaced by /proc/self/exe) as `nproc` local ranks with RANK, WORLD_SIZE, LOCAL_RANK,
// MASTER_ADDR=127.0.0.1 and a free MASTER_PORT; ranks above 0 write stdout to /dev/null. Waits for all; when one
// fails the others are killed and a message naming the rank goes to stderr. Returns 0 or the first failure's status.
int launch_local(int nproc, const std::vector<std::string>& argv);
// This process's command line (/proc/self/cmdline) without `option VALUE` / `option=VALUE`.
std::vector<std::string> command_line_without(const std::string& option);

}  // namespace distributed
}  // namespace transformers
