#!/bin/sh
# Side-by-side tfcpp bench vs llama.cpp's llama-bench on the same weights, in one run (bench/README.md).
#   PEER=/work/peer LLAMA_BENCH=/work/llamacpp-build/bin/llama-bench bench/peer_compare.sh [reps]
# Expects in $PEER: llama-110m/ (bench/make_peer_model.py) and the GGUF files converted from it and from
# models/stories260K with llama.cpp's convert_hf_to_gguf.py / llama-quantize (see bench/README.md).
set -e
PEER=${PEER:-/work/peer}
LB=${LLAMA_BENCH:-/work/llamacpp-build/bin/llama-bench}
TF=${TFCPP:-./build/tfcpp}
R=${1:-3}
echo "## stories260K (float32)"
$LB -m "$PEER/stories260K-f32.gguf" -p 128 -n 64 -t 1,2 -r "$R"
$TF bench -m models/stories260K -p 128 -n 64 -t 1,2 -r "$R"
echo "## llama-110m (random weights, seed 0)"
for q in f32 bf16 f16 q8_0 q4_0; do
  [ -f "$PEER/llama-110m-$q.gguf" ] && $LB -m "$PEER/llama-110m-$q.gguf" -p 128 -n 64 -t 1,2 -r "$R"
done
$TF bench -m "$PEER/llama-110m" -p 128 -n 64 -t 1,2 -r "$R" --dtype f32,bf16 --quantize int8,int4
