"""Plain PyTorch eager (Python transformers 4.40.2 on Debian's torch 1.13, OpenBLAS) on the same model shape as
`tfcpp bench`, for the side-by-side ratio issue #10 asks for (bench/README.md). Runs under the oracle environment:

    OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/pytorch_bench.py bench/configs/llama-110m [-p 128] [-n 64] [-t 1,2] [-r 3]

pp N: one forward over N random tokens (transformers 4.40 computes the logits of every position);
tg N: N greedy steps of one token with the KV cache from an empty context, as tfcpp bench's tg.
"""
import argparse
import ctypes
import os
import statistics
import sys
import time

sys.path.insert(0, "/work/shared/oracle")
import oracle_env  # noqa: E402

oracle_env.setup()
import torch  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("model")
parser.add_argument("-p", type=int, default=128)
parser.add_argument("-n", type=int, default=64)
parser.add_argument("-t", default="1,2")
parser.add_argument("-r", type=int, default=3)
args = parser.parse_args()

torch.manual_seed(0)
has_weights = any(f.endswith((".safetensors", ".bin")) for f in os.listdir(args.model))
if has_weights:
    model = AutoModelForCausalLM.from_pretrained(args.model)
else:
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(args.model))
model.eval()
vocab = model.config.vocab_size


def set_blas_threads(threads):
    # Debian's default OpenBLAS is the pthread build: torch.set_num_threads does not reach it.
    for name in (None, "libblas.so.3", "libopenblas.so.0"):
        try:
            ctypes.CDLL(name).openblas_set_num_threads(threads)
            return True
        except (OSError, AttributeError):
            continue
    return False


def rate(tokens, fn):
    fn()
    runs = []
    for _ in range(max(1, args.r)):
        start = time.perf_counter()
        fn()
        runs.append(tokens / (time.perf_counter() - start))
    return statistics.mean(runs), (statistics.stdev(runs) if len(runs) > 1 else 0.0)


print("| engine | threads | test | t/s |\n|---|---:|---|---:|")
with torch.inference_mode():
    for threads in [int(t) for t in args.t.split(",")]:
        torch.set_num_threads(threads)
        if not set_blas_threads(threads):
            print("warning: could not set OpenBLAS's thread count", file=sys.stderr)
        if args.p > 0:
            prompt = torch.randint(3, vocab, (1, args.p))
            mean, sd = rate(args.p, lambda: model(input_ids=prompt, use_cache=False))
            print(f"| PyTorch {torch.__version__} eager float32 | {threads} | pp{args.p} | {mean:.2f} ± {sd:.2f} |")
        if args.n > 0:
            first = torch.randint(3, vocab, (1, 1))

            def decode():
                past, token = None, first
                for _ in range(args.n):
                    out = model(input_ids=token, past_key_values=past, use_cache=True)
                    past, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)

            mean, sd = rate(args.n, decode)
            print(f"| PyTorch {torch.__version__} eager float32 | {threads} | tg{args.n} | {mean:.2f} ± {sd:.2f} |")
        sys.stdout.flush()
