// Weight-only int8 / int4 kernels: quantize, pack, dequantize, and the quantized Linear forward.
// One row (decode): the integer GEMV of src/kernels/qgemv.cpp (a float loop for int4 group sizes it does not take).
// More rows: the integer GEMM of src/kernels/qgemm.cpp; when autograd records (or for int4 group sizes it does not
// take), blocks of output rows dequantized into an fp32 tile, then sgemm (the tile stays in cache; no full float
// weight is built).
#include "pch.h"

#include "transformers/errors.h"
#include "transformers/kernels.h"
#include "transformers/quantization.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <immintrin.h>

#include <algorithm>
#include <cmath>

namespace transformers {

std::pair<at::Tensor, at::Tensor> quantize_int8_per_channel(const at::Tensor& weight) {
  at::NoGradGuard no_grad;
  at::Tensor w = weight.to(at::kFloat);
  at::Tensor scale = w.abs().amax(1) / 127.0;  // [out]
  at::Tensor safe = at::where(scale > 0, scale, at::ones_like(scale));
  at::Tensor q = at::round(w / safe.unsqueeze(1)).clamp_(-127, 127).to(at::kChar);
  return {q.contiguous(), scale.contiguous()};
}

at::Tensor pack_int4(const at::Tensor& codes) {
  TORCH_CHECK(codes.dim() == 2 && codes.scalar_type() == at::kByte, "pack_int4: uint8 [out, in] codes expected");
  at::Tensor c = codes;
  if (c.size(1) % 2) c = at::constant_pad_nd(c, {0, 1}, 0);
  at::Tensor pairs = c.view({c.size(0), c.size(1) / 2, 2});
  return (pairs.select(2, 0).bitwise_and(15) | pairs.select(2, 1).bitwise_and(15).__lshift__(4)).contiguous();
}

at::Tensor unpack_int4(const at::Tensor& packed, int64_t in_features) {
  TORCH_CHECK(packed.dim() == 2 && packed.scalar_type() == at::kByte, "unpack_int4: uint8 [out, bytes] expected");
  at::Tensor lo = packed.bitwise_and(15), hi = packed.__rshift__(4);
  return at::stack({lo, hi}, 2).view({packed.size(0), packed.size(1) * 2}).narrow(1, 0, in_features);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> quantize_int4_groupwise(const at::Tensor& weight, int64_t group_size) {
  at::NoGradGuard no_grad;
  const int64_t out = weight.size(0), in = weight.size(1);
  const int64_t groups = (in + group_size - 1) / group_size;
  at::Tensor w = weight.to(at::kFloat);
  if (groups * group_size != in) w = at::constant_pad_nd(w, {0, groups * group_size - in}, 0);
  at::Tensor g = w.view({out, groups, group_size});
  // The range always holds 0 (as GPTQ's find_params), so zero padding of a partial group changes nothing.
  at::Tensor lo = g.amin(2).clamp_max(0), hi = g.amax(2).clamp_min(0);
  at::Tensor scale = (hi - lo) / 15.0;
  scale = at::where(scale > 0, scale, at::ones_like(scale));
  at::Tensor zero = at::round(-lo / scale).clamp_(0, 15);
  at::Tensor q = (at::round(g / scale.unsqueeze(2)) + zero.unsqueeze(2)).clamp_(0, 15).view({out, groups * group_size});
  q = q.narrow(1, 0, in).to(at::kByte);
  return {pack_int4(q), scale.contiguous(), zero.to(at::kByte).contiguous()};
}

at::Tensor dequantize_linear_weight(const nn::Linear& layer, c10::ScalarType dtype) {
  at::NoGradGuard no_grad;
  if (layer.quant_bits == 8) return (layer.weight.to(at::kFloat) * layer.weight_scale.unsqueeze(1)).to(dtype);
  if (layer.quant_bits == 4) {
    const int64_t in = layer.in_features, gs = layer.quant_group_size;
    at::Tensor q = unpack_int4(layer.weight, in).to(at::kFloat);
    at::Tensor scale = layer.weight_scale.repeat_interleave(gs, 1).narrow(1, 0, in);
    at::Tensor zero = layer.weight_zero.to(at::kFloat).repeat_interleave(gs, 1).narrow(1, 0, in);
    return ((q - zero) * scale).to(dtype);
  }
  return layer.weight.to(dtype);
}

namespace {

// ---- int4 group dot: sum_i code[i] * x[i] over inputs [i0, i1) (i0 even) ----
float dot_u4_scalar(const uint8_t* packed, const float* x, int64_t i0, int64_t i1) {
  float acc = 0;
  for (int64_t i = i0; i < i1; ++i) {
    const uint8_t b = packed[i / 2];
    acc += static_cast<float>((i % 2) ? (b >> 4) : (b & 15)) * x[i];
  }
  return acc;
}

// Rows per thread chunk: small weights stay on the calling thread (kernels::min_parallel_bytes, as the float GEMV).
int64_t gemv_grain(int64_t rows, int64_t row_bytes) {
  return rows * row_bytes < kernels::min_parallel_bytes() ? rows + 1 : 16;
}

void gemv_int4(const nn::Linear& l, const float* x, float* y, const float* bias) {
  const int64_t in = l.in_features, out = l.out_features, gs = l.quant_group_size;
  const int64_t groups = (in + gs - 1) / gs, row_bytes = l.weight.size(1);
  const uint8_t* packed = l.weight.data_ptr<uint8_t>();
  const float* scale = l.weight_scale.data_ptr<float>();
  const uint8_t* zero = l.weight_zero.data_ptr<uint8_t>();
  std::vector<float> xsum(groups, 0.0f);
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t i = g * gs; i < std::min(in, (g + 1) * gs); ++i) xsum[g] += x[i];
  at::parallel_for(0, out, gemv_grain(out, row_bytes), [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o) {
      const uint8_t* row = packed + o * row_bytes;
      float acc = 0;
      for (int64_t g = 0; g < groups; ++g) {
        const int64_t i0 = g * gs, i1 = std::min(in, i0 + gs);
        const float d = dot_u4_scalar(row, x, i0, i1);
        acc += scale[o * groups + g] * (d - static_cast<float>(zero[o * groups + g]) * xsum[g]);
      }
      y[o] = acc + (bias ? bias[o] : 0.0f);
    }
  });
}

// Rows [r0, r0 + rows) of the float weight, scale (and zero) folded in: [rows, in] fp32, one pass over the codes.
at::Tensor dequantize_rows(const nn::Linear& l, int64_t r0, int64_t rows) {
  const int64_t in = l.in_features;
  at::Tensor tile = at::empty({rows, in}, at::kFloat);
  float* out = tile.data_ptr<float>();
  const float* scale = l.weight_scale.data_ptr<float>();
  if (l.quant_bits == 8) {
    const int8_t* q = l.weight.data_ptr<int8_t>();
    at::parallel_for(0, rows, 8, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const int8_t* src = q + (r0 + r) * in;
        const float s = scale[r0 + r];
        float* dst = out + r * in;
        for (int64_t i = 0; i < in; ++i) dst[i] = static_cast<float>(src[i]) * s;
      }
    });
    return tile;
  }
  const int64_t gs = l.quant_group_size, groups = (in + gs - 1) / gs, row_bytes = l.weight.size(1);
  const uint8_t* packed = l.weight.data_ptr<uint8_t>();
  const uint8_t* zero = l.weight_zero.data_ptr<uint8_t>();
  at::parallel_for(0, rows, 8, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const uint8_t* src = packed + (r0 + r) * row_bytes;
      float* dst = out + r * in;
      for (int64_t g = 0; g < groups; ++g) {
        const float s = scale[(r0 + r) * groups + g], z = static_cast<float>(zero[(r0 + r) * groups + g]);
        const int64_t i0 = g * gs, i1 = std::min(in, i0 + gs);  // i0 even: group_size is even
        int64_t i = i0;
        for (; i + 1 < i1; i += 2) {
          const uint8_t b = src[i / 2];
          dst[i] = (static_cast<float>(b & 15) - z) * s;
          dst[i + 1] = (static_cast<float>(b >> 4) - z) * s;
        }
        if (i < i1) dst[i] = (static_cast<float>(src[i / 2] & 15) - z) * s;
      }
    }
  });
  return tile;
}

}  // namespace

at::Tensor nn::quantized_linear_forward(const nn::Linear& l, const at::Tensor& input) {
  const c10::ScalarType out_dtype = input.scalar_type();
  at::Tensor x = input.to(at::kFloat).reshape({-1, l.in_features}).contiguous();
  const int64_t m = x.size(0);
  std::vector<int64_t> shape(input.sizes().begin(), input.sizes().end());
  shape.back() = l.out_features;
  at::Tensor bias = l.bias.defined() ? l.bias.to(at::kFloat).contiguous() : at::Tensor();
  const float* bias_ptr = bias.defined() ? bias.data_ptr<float>() : nullptr;
  const bool differentiable = at::GradMode::is_enabled() && input.requires_grad();
  if (m <= 2 && !differentiable) {
    at::Tensor y = at::empty({m, l.out_features}, x.options());
    const int64_t in = l.in_features, out = l.out_features;
    const float* xp = x.data_ptr<float>();
    float* yp = y.data_ptr<float>();
    for (int64_t r = 0; r < m; ++r) {
      // Integer dot products on the codes, activations quantized per block (kernels.h); other int4 group sizes
      // take the float loop.
      if (l.quant_bits == 8)
        kernels::raw::gemv_q8(l.weight.data_ptr<int8_t>(), l.weight_scale.data_ptr<float>(), xp + r * in,
                              yp + r * out, bias_ptr, out, in, /*accumulate=*/false);
      else if (kernels::q4_group_supported(l.quant_group_size))
        kernels::raw::gemv_q4(l.weight.data_ptr<uint8_t>(), l.weight_scale.data_ptr<float>(),
                              l.weight_zero.data_ptr<uint8_t>(), l.quant_group_size, xp + r * in, yp + r * out,
                              bias_ptr, out, in, /*accumulate=*/false);
      else
        gemv_int4(l, xp + r * in, yp + r * out, bias_ptr);
    }
    return y.view(shape).to(out_dtype);
  }
  // Several rows without autograd: integer GEMM on the codes with the activations quantized per block (kernels.h).
  if (!differentiable && (l.quant_bits == 8 || kernels::q4_group_supported(l.quant_group_size)) &&
      l.weight.is_contiguous() && l.weight_scale.scalar_type() == at::kFloat && l.weight_scale.is_contiguous() &&
      (l.quant_bits == 8 || l.weight_zero.is_contiguous())) {
    at::Tensor y = at::empty({m, l.out_features}, x.options());
    kernels::qgemm(l.quant_bits, l.weight.data_ptr(), l.weight_scale.data_ptr<float>(),
                   l.quant_bits == 4 ? l.weight_zero.data_ptr<uint8_t>() : nullptr, l.quant_group_size,
                   x.data_ptr<float>(), y.data_ptr<float>(), bias_ptr, m, l.out_features, l.in_features);
    return y.view(shape).to(out_dtype);
  }
  // y^T [out, m], filled by blocks of output rows: tile [rows, in] x x^T [in, m]. Tiles of up to 64 MB: one sgemm
  // for most layers (many small tiles cost more in BLAS calls than they save in cache misses).
  const int64_t block = std::max<int64_t>(32, (int64_t{1} << 24) / std::max<int64_t>(1, l.in_features));
  at::Tensor xt = x.t();
  std::vector<at::Tensor> parts;
  for (int64_t r0 = 0; r0 < l.out_features; r0 += block) {
    const int64_t rows = std::min(block, l.out_features - r0);
    at::Tensor tile;
    {
      at::NoGradGuard no_grad;
      tile = dequantize_rows(l, r0, rows);
    }
    parts.push_back(at::mm(tile, xt));
  }
  at::Tensor y = at::cat(parts, 0).t();
  if (bias.defined()) y = y + bias;
  return y.reshape(shape).to(out_dtype);
}

}  // namespace transformers
