// Argument readers shared by the training bindings (napi/elementwise.cc, napi/optim.cc): float32, int32 and uint8
// buffers checked for their element count, sizes, and disjointness where a kernel cannot work in place.
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
// Throws unless the byte ranges [a, a + na) and [b, b + nb) are disjoint.
inline void require_disjoint(const void* a, int64_t na, const void* b, int64_t nb, const char* what) {
  const char *pa = static_cast<const char*>(a), *pb = static_cast<const char*>(b);
  if (na > 0 && nb > 0 && pa < pb + nb && pb < pa + na) fail("E_VALUE", std::string(what) + " must not overlap");
}

}  // namespace nms::napi
