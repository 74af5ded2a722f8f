// Argument readers shared by the training bindings (napi/elementwise.cc, optim.cc, attention.cc, cuda_train.cc):
// float32, int32 and uint8 buffers checked for their element count, sizes, and disjointness where a kernel cannot
// work in place.
#pragma once
#include <string>

#include "napi/args.h"

namespace nms::napi {

inline float* f32_arg(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t count) {
  Buf b = buffer_arg(info, i, name);
  require_elems(b, count, DType::F32, name);
  return static_cast<float*>(b.data);
}
// null/undefined → nullptr.
inline float* optional_f32_arg(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t count) {
  Buf b = optional_buffer_arg(info, i, name);
  if (!b.data) return nullptr;
  require_elems(b, count, DType::F32, name);
  return static_cast<float*>(b.data);
}
// A buffer of `count` elements of `elem_bytes` bytes (int32 labels and indices: 4; masks: 1).
template <typename T>
T* typed_arg(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t count) {
  Buf b = buffer_arg(info, i, name);
  require_elems(b, count, sizeof(T) == 4 ? DType::F32 : DType::U8, name);
  return static_cast<T*>(b.data);
}
inline int64_t size_arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  const int64_t v = int_arg(info, i, name);
  if (v < 0) fail("E_SHAPE", std::string(name) + ": got " + std::to_string(v) + ", expected a size >= 0");
  return v;
}
// (batch, h, w, c, kh, kw, stride_h, stride_w, pad_h, pad_w) starting at argument i, checked, with oh and ow
// computed: any struct with those int64 fields (cpu::Window2d; a GPU backend's own window type).
template <class Window>
Window window_arg(const Napi::CallbackInfo& info, size_t i) {
  Window g{};
  g.batch = size_arg(info, i, "batch");
  g.h = size_arg(info, i + 1, "h");
  g.w = size_arg(info, i + 2, "w");
  g.c = size_arg(info, i + 3, "c");
  g.kh = size_arg(info, i + 4, "kh");
  g.kw = size_arg(info, i + 5, "kw");
  g.stride_h = size_arg(info, i + 6, "strideH");
  g.stride_w = size_arg(info, i + 7, "strideW");
  g.pad_h = size_arg(info, i + 8, "padH");
  g.pad_w = size_arg(info, i + 9, "padW");
  if (g.kh < 1 || g.kw < 1 || g.stride_h < 1 || g.stride_w < 1)
    fail("E_VALUE", "window: kernel and stride must be >= 1");
  if (g.h + 2 * g.pad_h < g.kh || g.w + 2 * g.pad_w < g.kw)
    fail("E_SHAPE", "window: a " + std::to_string(g.kh) + "x" + std::to_string(g.kw) + " kernel does not fit a padded " +
                        std::to_string(g.h + 2 * g.pad_h) + "x" + std::to_string(g.w + 2 * g.pad_w) + " input");
  g.oh = (g.h + 2 * g.pad_h - g.kh) / g.stride_h + 1;
  g.ow = (g.w + 2 * g.pad_w - g.kw) / g.stride_w + 1;
  return g;
}

// (batch, t, heads, headDim, p, seed, offset) starting at argument i, checked: any struct with those fields
// (cpu::AttentionShape, cuda::AttentionShape).
template <class Shape>
Shape attention_arg(const Napi::CallbackInfo& info, size_t i) {
  Shape s{};
  s.batch = size_arg(info, i, "batch");
  s.t = size_arg(info, i + 1, "t");
  s.heads = size_arg(info, i + 2, "heads");
  s.hd = size_arg(info, i + 3, "headDim");
  if (s.t < 1 || s.heads < 1 || s.hd < 1) fail("E_SHAPE", "attention: t, heads and headDim must be >= 1");
  const double p = number_arg(info, i + 4, "p");
  if (!(p >= 0 && p < 1)) fail("E_VALUE", "p: expected 0 <= p < 1");
  s.p = static_cast<float>(p);
  s.seed = static_cast<uint64_t>(int_arg(info, i + 5, "seed"));
  s.offset = static_cast<uint64_t>(size_arg(info, i + 6, "offset"));
  return s;
}

}  // namespace nms::napi
