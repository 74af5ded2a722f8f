// N-API bindings of the CUDA runtime side: backend facts (cudaInfo), device memory (CudaBuffer), transfers,
// synchronisation and memory statistics. Compiled only in CUDA builds (CMake globs native/napi/*.cc for every
// build, node-gyp's CPU-only one included, so everything is inside NMSPARSE_WITH_CUDA).
#ifdef NMSPARSE_WITH_CUDA
#include <map>
#include <mutex>

#include "cuda/cublaslt.h"
#include "cuda/cusparselt.h"
#include "cuda/device.h"
#include "cuda/dynlib.h"
#include "cuda/ops.h"
#include "napi/args.h"
#include "napi/cuda_handles.h"
#include "napi/registry.h"

namespace nms::napi {
namespace {

// Constructors per environment (worker threads each have their own).
std::mutex g_ctor_mu;
std::map<napi_env, Napi::FunctionReference*> g_buffer_ctor, g_sparse_ctor;

void keep_ctor(Napi::Env env, std::map<napi_env, Napi::FunctionReference*>& m, Napi::Function f) {
  auto* ref = new Napi::FunctionReference(Napi::Persistent(f));
  {
    std::lock_guard<std::mutex> lock(g_ctor_mu);
    m[env] = ref;
  }
  env.AddCleanupHook([&m, env_key = static_cast<napi_env>(env), ref] {
    std::lock_guard<std::mutex> lock(g_ctor_mu);
    m.erase(env_key);
    delete ref;
  });
}

Napi::FunctionReference& ctor(Napi::Env env, std::map<napi_env, Napi::FunctionReference*>& m) {
  std::lock_guard<std::mutex> lock(g_ctor_mu);
  auto it = m.find(env);
  if (it == m.end()) fail("E_INTERNAL", "CUDA handle classes are not registered in this environment");
  return *it->second;
}

void adjust(Napi::Env env, int64_t delta) {
  if (delta) Napi::MemoryManagement::AdjustExternalMemory(env, delta);
}

}  // namespace

// ---- CudaBuffer ------------------------------------------------------------------------------------------------

void CudaBuffer::Register(Napi::Env env, Napi::Object exports) {
  Napi::Function f = DefineClass(env, "CudaBuffer",
                                 {InstanceAccessor<&CudaBuffer::GetBytes>("bytes"),
                                  InstanceAccessor<&CudaBuffer::GetDisposed>("disposed"),
                                  InstanceMethod<&CudaBuffer::Dispose>("dispose")});
  keep_ctor(env, g_buffer_ctor, f);
  exports.Set("CudaBuffer", f);
}

// The tag of the External a Wrap hands its constructor (one per payload type, its upper half the tag's address, as
// napi/mlp.cc's plan tag): `new CudaBuffer(x)` from JavaScript with any other External (an mlpPlan handle, another
// addon's) is E_TYPE instead of moving foreign memory out as a device pointer.
namespace {
template <class Payload>
const napi_type_tag* payload_tag() {
  static const napi_type_tag tag{0x6e6d7363756461ULL /* "nmscuda" */, reinterpret_cast<uintptr_t>(&tag)};
  return &tag;
}

// The constructor's payload, or E_TYPE (`what`: how the object is made) for anything else.
template <class Payload>
Payload* payload_arg(const Napi::CallbackInfo& info, const char* what) {
  if (info.Length() >= 1 && info[0].IsExternal()) {
    auto e = info[0].As<Napi::External<Payload>>();
    if (e.CheckTypeTag(payload_tag<Payload>())) return e.Data();
  }
  Napi::Error e = Napi::TypeError::New(info.Env(), what);
  e.Set("code", Napi::String::New(info.Env(), "E_TYPE"));
  throw e;
}

template <class Payload>
Napi::Object wrap_payload(Napi::Env env, std::map<napi_env, Napi::FunctionReference*>& ctors, Payload* payload) {
  auto e = Napi::External<Payload>::New(env, payload);
  e.TypeTag(payload_tag<Payload>());
  return ctor(env, ctors).New({e});
}

using BufferPayload = std::pair<cuda::DevPtr, size_t>;
}  // namespace

Napi::Object CudaBuffer::Wrap(Napi::Env env, cuda::DevPtr mem, size_t bytes) {
  BufferPayload payload(std::move(mem), bytes);  // the constructor moves from it
  return wrap_payload(env, g_buffer_ctor, &payload);
}

CudaBuffer::CudaBuffer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<CudaBuffer>(info) {
  auto* payload = payload_arg<BufferPayload>(info, "CudaBuffer is made by the CUDA backend (to('cuda'), ops), not by new");
  mem_ = std::move(payload->first);
  bytes_ = payload->second;
  reported_ = mem_ ? static_cast<int64_t>(mem_->bytes()) : 0;
  adjust(info.Env(), reported_);
}

CudaBuffer::~CudaBuffer() { Release(); }

void CudaBuffer::Release() {
  if (reported_) {
    adjust(Env(), -reported_);
    reported_ = 0;
  }
  mem_.reset();  // frees on the stream once work already enqueued has used it
}

bool CudaBuffer::Is(Napi::Env env, Napi::Value v) {
  return v.IsObject() && v.As<Napi::Object>().InstanceOf(ctor(env, g_buffer_ctor).Value());
}

CudaBuffer* CudaBuffer::Arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  return From(info[i], std::string(name) + " (argument " + std::to_string(i) + ")");
}

CudaBuffer* CudaBuffer::From(Napi::Value v, const std::string& where) {
  if (!Is(v.Env(), v)) fail("E_TYPE", where + ": expected a CudaBuffer (device memory)");
  CudaBuffer* b = Unwrap(v.As<Napi::Object>());
  if (!b->mem_) fail("E_DISPOSED", where + ": the tensor's device memory was disposed");
  return b;
}

void CudaBuffer::require(int64_t count, DType d, const char* name) const {
  if (count < 0 || bytes_ < static_cast<size_t>(count) * dtype_size(d))
    fail("E_SHAPE", std::string(name) + ": device buffer has " + std::to_string(bytes_) + " bytes, needs " +
                        std::to_string(count) + " " + dtype_name(d) + " elements");
}

Napi::Value CudaBuffer::GetBytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(bytes_));
}
Napi::Value CudaBuffer::GetDisposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !mem_); }
Napi::Value CudaBuffer::Dispose(const Napi::CallbackInfo& info) {
  Release();
  return info.Env().Undefined();
}

// ---- CudaSparse ------------------------------------------------------------------------------------------------

void CudaSparse::Register(Napi::Env env, Napi::Object exports) {
  Napi::Function f = DefineClass(env, "CudaSparse",
                                 {InstanceAccessor<&CudaSparse::GetBytes>("bytes"),
                                  InstanceAccessor<&CudaSparse::GetDisposed>("disposed"),
                                  InstanceMethod<&CudaSparse::Info>("info"),
                                  InstanceMethod<&CudaSparse::Dispose>("dispose")});
  keep_ctor(env, g_sparse_ctor, f);
  exports.Set("CudaSparse", f);
}

Napi::Object CudaSparse::Wrap(Napi::Env env, cuda::SparsePtr s) {
  cuda::SparsePtr payload(std::move(s));  // the constructor moves from it
  return wrap_payload(env, g_sparse_ctor, &payload);
}

CudaSparse::CudaSparse(const Napi::CallbackInfo& info) : Napi::ObjectWrap<CudaSparse>(info) {
  s_ = std::move(*payload_arg<cuda::SparsePtr>(info, "CudaSparse is made by nm.compress on 'cuda', not by new"));
  Resync(info.Env());
}

CudaSparse::~CudaSparse() { Release(); }

void CudaSparse::Release() {
  if (reported_) {
    adjust(Env(), -reported_);
    reported_ = 0;
  }
  s_.reset();
}

void CudaSparse::Resync(Napi::Env env) {
  const int64_t now = s_ ? s_->bytes() : 0;
  adjust(env, now - reported_);
  reported_ = now;
}

CudaSparse* CudaSparse::Arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  return From(info[i], std::string(name) + " (argument " + std::to_string(i) + ")");
}

CudaSparse* CudaSparse::From(Napi::Value v, const std::string& where) {
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(ctor(v.Env(), g_sparse_ctor).Value()))
    fail("E_TYPE", where + ": expected a CudaSparse handle");
  CudaSparse* s = Unwrap(v.As<Napi::Object>());
  if (!s->s_) fail("E_DISPOSED", where + ": the sparse tensor was disposed");
  return s;
}

Napi::Value CudaSparse::GetBytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(s_ ? s_->bytes() : 0));
}
Napi::Value CudaSparse::GetDisposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !s_); }
Napi::Value CudaSparse::Dispose(const Napi::CallbackInfo& info) {
  Release();
  return info.Env().Undefined();
}

Napi::Value CudaSparse::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!s_) {
    Napi::Error e = Napi::Error::New(env, "info: the sparse tensor was disposed");
    e.Set("code", Napi::String::New(env, "E_DISPOSED"));
    throw e;
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("dtype", static_cast<int>(s_->dtype));
  o.Set("rows", static_cast<double>(s_->rows));
  o.Set("cols", static_cast<double>(s_->cols));
  o.Set("n", s_->n);
  o.Set("m", s_->m);
  o.Set("cusparselt", s_->has_slt);
  if (s_->has_slt) {
    o.Set("paddedShape", [&] {
      Napi::Array a = Napi::Array::New(env, 2);
      a.Set(0u, static_cast<double>(s_->rows_pad));
      a.Set(1u, static_cast<double>(s_->cols_pad));
      return a;
    }());
    o.Set("compressedBytes", static_cast<double>(s_->slt_compressed ? s_->slt_compressed->bytes() : 0));
  } else {
    o.Set("reason", s_->slt_reason);
  }
  o.Set("portableBytes", static_cast<double>(s_->values->bytes() + s_->positions->bytes()));
  o.Set("bytes", static_cast<double>(s_->bytes()));
  return o;
}

namespace {

Napi::Object lib_object(Napi::Env env, const cuda::LibInfo& l) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("loaded", l.loaded);
  if (!l.path.empty()) o.Set("path", l.path);
  if (!l.version.empty()) o.Set("version", l.version);
  if (!l.error.empty()) o.Set("error", l.error);
  if (!l.note.empty()) o.Set("note", l.note);
  return o;
}

std::string version_text(int v) { return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10); }

void RegisterCudaDevice(Napi::Env env, Napi::Object exports) {
  CudaBuffer::Register(env, exports);
  CudaSparse::Register(env, exports);

  // cudaInfo() -> {usable, reason, runtimeVersion, driverVersion, deviceCount, device?, cusparselt, cublaslt}.
  // Never throws; probes once per process (driver, device, libraries), which needs no GPU.
  define(env, exports, "cudaInfo", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Napi::Env env = info.Env();
    const cuda::Status& s = cuda::status();
    Napi::Object o = Napi::Object::New(env);
    o.Set("usable", s.usable);
    o.Set("reason", s.usable ? env.Null() : Napi::String::New(env, s.reason));
    o.Set("runtimeVersion", version_text(s.runtime_version));
    o.Set("driverVersion", s.driver_version > 0 ? Napi::Value(Napi::String::New(env, version_text(s.driver_version)))
                                                : env.Null());
    o.Set("deviceCount", s.device_count);
    if (s.device >= 0 && !s.name.empty()) {
      Napi::Object d = Napi::Object::New(env);
      d.Set("index", s.device);
      d.Set("name", s.name);
      d.Set("sm", std::to_string(s.sm_major) + "." + std::to_string(s.sm_minor));
      d.Set("smCount", s.sm_count);
      d.Set("memoryBytes", static_cast<double>(s.memory_bytes));
      d.Set("driver", s.driver_version > 0 ? Napi::Value(Napi::String::New(env, version_text(s.driver_version))) : env.Null());
      d.Set("memoryPools", s.memory_pools);
      o.Set("device", d);
    }
    o.Set("cusparselt", lib_object(env, s.cusparselt));
    o.Set("cublaslt", lib_object(env, s.cublaslt));
    if (!s.sparse_reason.empty()) o.Set("sparseReason", s.sparse_reason);
    return o;
  });

  // cudaLibrarySearch() -> {cusparselt: string[], cublaslt: string[]}: the locations each library is looked for
  // in, in order (existing directories, and "(loader path)" for the plain soname). Needs no GPU.
  define(env, exports, "cudaLibrarySearch", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Napi::Env env = info.Env();
    auto list = [&](const std::vector<std::string>& v) {
      Napi::Array a = Napi::Array::New(env, v.size());
      for (size_t i = 0; i < v.size(); ++i) a.Set(static_cast<uint32_t>(i), v[i]);
      return a;
    };
    Napi::Object o = Napi::Object::New(env);
    o.Set("cusparselt", list(cuda::search_locations(cuda::slt::kWheelDirs)));
    o.Set("cublaslt", list(cuda::search_locations(cuda::blt::kWheelDirs)));
    return o;
  });

  // cudaAlloc(bytes, zero = false) -> CudaBuffer
  define(env, exports, "cudaAlloc", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const int64_t bytes = int_arg(info, 0, "bytes");
    if (bytes < 0) fail("E_VALUE", "bytes: got " + std::to_string(bytes) + ", expected >= 0");
    const bool zero = info.Length() > 1 && info[1].IsBoolean() && info[1].As<Napi::Boolean>().Value();
    cuda::DevPtr m = zero ? cuda::alloc_zeroed(static_cast<size_t>(bytes)) : cuda::alloc(static_cast<size_t>(bytes));
    return CudaBuffer::Wrap(info.Env(), std::move(m), static_cast<size_t>(bytes));
  });

  // cudaUpload(src: TypedArray | ArrayBuffer) -> CudaBuffer holding a copy
  define(env, exports, "cudaUpload", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Buf src = buffer_arg(info, 0, "src");
    cuda::DevPtr m = cuda::alloc(src.bytes);
    cuda::upload(m->ptr(), src.data, src.bytes);
    return CudaBuffer::Wrap(info.Env(), std::move(m), src.bytes);
  });

  // cudaDownload(buf, dst: TypedArray): waits for the GPU, then copies min(bytes) into dst.
  define(env, exports, "cudaDownload", [](const Napi::CallbackInfo& info) -> Napi::Value {
    CudaBuffer* b = CudaBuffer::Arg(info, 0, "buf");
    Buf dst = buffer_arg(info, 1, "dst");
    if (dst.bytes > b->bytes())
      fail("E_SHAPE", "dst: " + std::to_string(dst.bytes) + " bytes, but the device buffer has only " + std::to_string(b->bytes()));
    cuda::download(dst.data, b->ptr(), dst.bytes);
    return info.Env().Undefined();
  });

  // cudaDownloadAsync(buf, dst) -> Promise: the wait and the copy happen on a worker thread.
  define(env, exports, "cudaDownloadAsync", [](const Napi::CallbackInfo& info) -> Napi::Value {
    CudaBuffer* b = CudaBuffer::Arg(info, 0, "buf");
    Buf dst = buffer_arg(info, 1, "dst");
    if (dst.bytes > b->bytes())
      fail("E_SHAPE", "dst: " + std::to_string(dst.bytes) + " bytes, but the device buffer has only " + std::to_string(b->bytes()));
    cuda::DevPtr mem = b->mem();  // shared: a dispose() meanwhile cannot free it under the copy
    Holds holds(true);
    holds.output(dst);
    holds.keep(info[0].As<Napi::Object>());
    void* host = dst.data;
    const size_t bytes = dst.bytes;
    return run(info.Env(), std::move(holds), [mem, host, bytes] {
      cuda::download(host, mem->ptr(), bytes);
    });
  });

  // cudaCopy(src, dst, bytes): device-to-device, on the stream.
  define(env, exports, "cudaCopy", [](const Napi::CallbackInfo& info) -> Napi::Value {
    CudaBuffer* s = CudaBuffer::Arg(info, 0, "src");
    CudaBuffer* d = CudaBuffer::Arg(info, 1, "dst");
    const int64_t bytes = int_arg(info, 2, "bytes");
    if (bytes < 0 || static_cast<size_t>(bytes) > s->bytes() || static_cast<size_t>(bytes) > d->bytes())
      fail("E_SHAPE", "cudaCopy: " + std::to_string(bytes) + " bytes do not fit the buffers");
    cuda::copy_d2d(d->ptr(), s->ptr(), static_cast<size_t>(bytes));
    return info.Env().Undefined();
  });

  // cudaSynchronize(): waits for all enqueued work (surfaces asynchronous kernel errors).
  define(env, exports, "cudaSynchronize", [](const Napi::CallbackInfo& info) -> Napi::Value {
    cuda::sync();
    return info.Env().Undefined();
  });

  // cudaMemStats(trim = true) -> {liveBytes, liveBuffers, freeBytes, totalBytes, poolReserved, poolUsed}
  define(env, exports, "cudaMemStats", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const bool trim = !(info.Length() > 0 && info[0].IsBoolean() && !info[0].As<Napi::Boolean>().Value());
    const cuda::MemStats m = cuda::mem_stats(trim);
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("liveBytes", static_cast<double>(m.live_bytes));
    o.Set("liveBuffers", static_cast<double>(m.live_buffers));
    o.Set("freeBytes", static_cast<double>(m.free_bytes));
    o.Set("totalBytes", static_cast<double>(m.total_bytes));
    o.Set("poolReserved", static_cast<double>(m.pool_reserved));
    o.Set("poolUsed", static_cast<double>(m.pool_used));
    return o;
  });
}

}  // namespace
NMS_NAPI_FAMILY(cuda_device, RegisterCudaDevice);
}  // namespace nms::napi
#endif  // NMSPARSE_WITH_CUDA
