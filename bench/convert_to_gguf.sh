#!/bin/sh
# llama.cpp's convert_hf_to_gguf.py under the oracle's Python (bench/README.md, peer comparison):
#   LLAMACPP_SRC=/work/llamacpp-src bench/convert_to_gguf.sh MODEL_DIR OUT.gguf f32|bf16|f16|q8_0
# torch 1.13 lacks the float8/uint16 dtype names the script references (stubbed, unused for these models), and the
# oracle's pure-Python safetensors reads eagerly (--no-lazy).
SRC=${LLAMACPP_SRC:-/work/llamacpp-src}
export PYTHONPATH=$SRC/gguf-py:$PYTHONPATH
exec /usr/bin/python3 -c "
import sys; sys.path.insert(0, '/work/shared/oracle'); import oracle_env; oracle_env.setup()
import torch
for name in ('float8_e4m3fn', 'float8_e5m2', 'uint16', 'uint32', 'uint64'):
    if not hasattr(torch, name): setattr(torch, name, torch.uint8)
sys.argv = ['convert_hf_to_gguf.py', '$1', '--outfile', '$2', '--outtype', '$3', '--no-lazy']
import runpy; runpy.run_path('$SRC/convert_hf_to_gguf.py', run_name='__main__')
"
