"""Writes a randomly initialised Llama checkpoint (seed 0) for a bench config, for the peer comparison with llama.cpp.

    /usr/bin/python3 bench/make_peer_model.py bench/configs/llama-110m /work/peer/llama-110m

The folder gets config.json, generation_config.json, model.safetensors (float32) and stories260K's tokenizer.model:
llama.cpp's convert_hf_to_gguf.py needs a tokenizer, and pads a smaller sentencepiece vocabulary up to vocab_size
with [PAD] tokens (the bench never tokenizes text). Needs the oracle (transformers 4.40.2, /work/shared/oracle).
"""
import os
import shutil
import sys

sys.path.insert(0, "/work/shared/oracle")
import oracle_env  # noqa: E402

oracle_env.setup()

import torch  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402


def main():
    config_dir, out = sys.argv[1], sys.argv[2]
    here = os.path.dirname(os.path.abspath(__file__))
    config = LlamaConfig.from_pretrained(config_dir)
    config.bos_token_id, config.eos_token_id = 1, 2
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(out, safe_serialization=True)
    shutil.copy(os.path.join(here, "..", "models", "stories260K", "tokenizer.model"), out)
    print(out, sum(p.numel() for p in model.parameters()) / 1e6, "M parameters")


if __name__ == "__main__":
    main()
