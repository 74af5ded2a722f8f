// Argument readers shared by the training bindings (napi/elementwise.cc, optim.cc, attention.cc, cuda_train.cc):
// float32, int32 and uint8 buffers checked for their element count, and sizes, as positional arguments or as
// fields of an options object (the calls with many numbers, whose order is easy to get wrong).
#pragma once
#include <string>

#include "napi/args.h"

namespace nms::napi {

// `b` checked to hold `count` elements of T: float32 tensors, int32 labels and indices (4 bytes), uint8 masks (1 byte).
template <typename T>
T* elems_of(const Buf& b, int64_t count, const std::string& name) {
  require_elems(b, count, sizeof(T) == 4 ? DType::F32 : DType::U8, name.c_str());
  return static_cast<T*>(b.data);
}
inline float* f32_arg(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t count) {
  return elems_of<float>(buffer_arg(info, i, name), count, name);
}
template <typename T>
T* typed_arg(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t count) {
  return elems_of<T>(buffer_arg(info, i, name), count, name);
}
// E_SHAPE unless v is a size (>= 0); `where` names it.
inline int64_t require_size(int64_t v, const std::string& where) {
  if (v < 0) fail("E_SHAPE", where + ": got " + std::to_string(v) + ", expected a size >= 0");
  return v;
}
inline int64_t size_arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  return require_size(int_arg(info, i, name), name);
}

// The options-object forms of the readers above: an error names "<fn>: options.<key>".
inline int64_t size_option(Options& o, const char* key) { return require_size(o.integer(key), o.where(key)); }
inline float* f32_option(Options& o, const char* key, int64_t count) {
  return elems_of<float>(o.buffer(key), count, o.where(key));
}
// null/undefined/absent → nullptr.
inline float* optional_f32_option(Options& o, const char* key, int64_t count) {
  Buf b = o.optional_buffer(key);
  return b.data ? elems_of<float>(b, count, o.where(key)) : nullptr;
}
template <typename T>
T* typed_option(Options& o, const char* key, int64_t count) {
  return elems_of<T>(o.buffer(key), count, o.where(key));
}

// options {batch, h, w, c, kh, kw, strideH, strideW, padH, padW}, checked, with oh and ow computed: any struct with
// those int64 fields (cpu::Window2d; a GPU backend's own window type).
template <class Window>
Window window_option(Options& o) {
  Window g{};
  g.batch = size_option(o, "batch");
  g.h = size_option(o, "h");
  g.w = size_option(o, "w");
  g.c = size_option(o, "c");
  g.kh = size_option(o, "kh");
  g.kw = size_option(o, "kw");
  g.stride_h = size_option(o, "strideH");
  g.stride_w = size_option(o, "strideW");
  g.pad_h = size_option(o, "padH");
  g.pad_w = size_option(o, "padW");
  if (g.kh < 1 || g.kw < 1 || g.stride_h < 1 || g.stride_w < 1)
    fail("E_VALUE", o.fn() + ": options.kh, kw, strideH and strideW must be >= 1");
  if (g.h + 2 * g.pad_h < g.kh || g.w + 2 * g.pad_w < g.kw)
    fail("E_SHAPE", o.fn() + ": a " + std::to_string(g.kh) + "x" + std::to_string(g.kw) + " kernel does not fit a padded " +
                        std::to_string(g.h + 2 * g.pad_h) + "x" + std::to_string(g.w + 2 * g.pad_w) + " input");
  g.oh = (g.h + 2 * g.pad_h - g.kh) / g.stride_h + 1;
  g.ow = (g.w + 2 * g.pad_w - g.kw) / g.stride_w + 1;
  return g;
}

// options {batch, t, heads, headDim, p, seed, offset}, checked: any struct with those fields (cpu::AttentionShape,
// cuda::AttentionShape).
template <class Shape>
Shape attention_option(Options& o) {
  Shape s{};
  s.batch = size_option(o, "batch");
  s.t = size_option(o, "t");
  s.heads = size_option(o, "heads");
  s.hd = size_option(o, "headDim");
  if (s.t < 1 || s.heads < 1 || s.hd < 1) fail("E_SHAPE", o.fn() + ": options.t, heads and headDim must be >= 1");
  const double p = o.number("p");
  if (!(p >= 0 && p < 1)) fail("E_VALUE", o.where("p") + ": expected 0 <= p < 1");
  s.p = static_cast<float>(p);
  s.seed = static_cast<uint64_t>(o.integer("seed"));
  s.offset = static_cast<uint64_t>(size_option(o, "offset"));
  return s;
}

}  // namespace nms::napi
