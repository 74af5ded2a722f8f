// The two native handles of the CUDA backend, shared by native/napi/cuda_*.cc:
//   CudaBuffer — device memory of a Tensor on 'cuda' (lib/device.ts DeviceStorage: bytes, disposed, dispose());
//   CudaSparse — the device form of a SparseTensor on 'cuda' (portable form + cuSPARSELt compressed buffer).
// Both free their memory in dispose() (idempotent) and in their finalizer, and report it to V8 with
// AdjustExternalMemory. The memory itself is stream-ordered and shared with in-flight work (cuda::DevPtr), so a
// dispose() while an op or a download still uses it is safe.
#pragma once
#ifdef NMSPARSE_WITH_CUDA
#include <napi.h>

#include <string>

#include "core/dtype.h"
#include "cuda/device.h"
#include "cuda/ops.h"

namespace nms::napi {

class CudaBuffer : public Napi::ObjectWrap<CudaBuffer> {
 public:
  static void Register(Napi::Env env, Napi::Object exports);
  // A new JS CudaBuffer owning `mem`, `bytes` long (the logical size; the allocation may be larger).
  static Napi::Object Wrap(Napi::Env env, cuda::DevPtr mem, size_t bytes);
  // The live buffer behind argument i (E_TYPE if it is not a CudaBuffer, E_DISPOSED after dispose()).
  static CudaBuffer* Arg(const Napi::CallbackInfo& info, size_t i, const char* name);
  // The same for any value (an options field); `where` names it in errors.
  static CudaBuffer* From(Napi::Value v, const std::string& where);
  static bool Is(Napi::Env env, Napi::Value v);

  explicit CudaBuffer(const Napi::CallbackInfo& info);
  ~CudaBuffer() override;

  const cuda::DevPtr& mem() const { return mem_; }
  void* ptr() const { return mem_ ? mem_->ptr() : nullptr; }
  size_t bytes() const { return bytes_; }
  // Throws E_SHAPE unless the buffer holds at least `count` elements of `d`.
  void require(int64_t count, DType d, const char* name) const;

 private:
  Napi::Value GetBytes(const Napi::CallbackInfo& info);
  Napi::Value GetDisposed(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  void Release();

  cuda::DevPtr mem_;
  size_t bytes_ = 0;
  int64_t reported_ = 0;
};

class CudaSparse : public Napi::ObjectWrap<CudaSparse> {
 public:
  static void Register(Napi::Env env, Napi::Object exports);
  static Napi::Object Wrap(Napi::Env env, cuda::SparsePtr s);
  static CudaSparse* Arg(const Napi::CallbackInfo& info, size_t i, const char* name);
  static CudaSparse* From(Napi::Value v, const std::string& where);

  explicit CudaSparse(const Napi::CallbackInfo& info);
  ~CudaSparse() override;

  const cuda::SparsePtr& matrix() const { return s_; }
  // Re-reads the bytes held (the dense copy made for the dispatch comes and goes) and tells V8.
  void Resync(Napi::Env env);

 private:
  Napi::Value GetBytes(const Napi::CallbackInfo& info);
  Napi::Value GetDisposed(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  void Release();

  cuda::SparsePtr s_;
  int64_t reported_ = 0;
};

// The output of a CUDA binding: `v` if it is given (a CudaBuffer checked to hold count × d; `where` names it),
// else a new allocation of that size. *out is set to the buffer; the JS object to return is returned.
inline Napi::Object out_value(Napi::Env env, Napi::Value v, const std::string& where, int64_t count, DType d, CudaBuffer** out) {
  if (!v.IsEmpty() && !v.IsNull() && !v.IsUndefined()) {
    *out = CudaBuffer::From(v, where);
    (*out)->require(count, d, where.c_str());
    return v.As<Napi::Object>();
  }
  const size_t bytes = static_cast<size_t>(count) * dtype_size(d);
  Napi::Object o = CudaBuffer::Wrap(env, cuda::alloc(bytes), bytes);
  *out = CudaBuffer::Unwrap(o);
  return o;
}

// out_value() for positional argument i.
inline Napi::Object out_arg(const Napi::CallbackInfo& info, size_t i, int64_t count, DType d, CudaBuffer** out) {
  return out_value(info.Env(), info[i], "out", count, d, out);
}

}  // namespace nms::napi
#endif
