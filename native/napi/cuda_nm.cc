// N-API bindings of the CUDA N:M family (native/cuda/mask.cu, compress.cu): the same argument order as the CPU
// bindings (native/napi/mask.cc, compress.cc), with CudaBuffers in place of TypedArrays. Outputs are optional:
// pass a CudaBuffer to write into it, or null to get a new one.
#ifdef NMSPARSE_WITH_CUDA
#include "core/nm_format.h"
#include "cuda/ops.h"
#include "napi/args.h"
#include "napi/cuda_handles.h"
#include "napi/registry.h"

namespace nms::napi {
namespace {

struct NmArgs {
  CudaBuffer* w;
  DType d;
  int64_t rows, cols;
  int n, m;
};

// (w, dtype, rows, cols, n, m) from argument i.
NmArgs nm_args(const Napi::CallbackInfo& info, size_t i) {
  NmArgs a{CudaBuffer::Arg(info, i, "w"), dtype_arg(info, i + 1, "dtype"), int_arg(info, i + 2, "rows"),
           int_arg(info, i + 3, "cols"), 0, 0};
  const int64_t n = int_arg(info, i + 4, "n"), m = int_arg(info, i + 5, "m");
  nm_validate(a.rows, a.cols, n, m);
  a.n = static_cast<int>(n);
  a.m = static_cast<int>(m);
  a.w->require(a.rows * a.cols, a.d, "w");
  return a;
}

void RegisterCudaNm(Napi::Env env, Napi::Object exports) {
  // cudaNmMask(w, dtype, rows, cols, n, m, out?) -> uint8 mask CudaBuffer
  define(env, exports, "cudaNmMask", [](const Napi::CallbackInfo& info) -> Napi::Value {
    NmArgs a = nm_args(info, 0);
    CudaBuffer* out;
    Napi::Object o = out_arg(info, 6, a.rows * a.cols, DType::U8, &out);
    cuda::SelectOut so;
    so.mask = static_cast<uint8_t*>(out->ptr());
    cuda::nm_select(a.w->ptr(), a.d, a.rows, a.cols, a.n, a.m, so);
    return o;
  });
  // cudaNmPrune(w, dtype, rows, cols, n, m, out?) -> pruned CudaBuffer (out may be w: in place)
  define(env, exports, "cudaNmPrune", [](const Napi::CallbackInfo& info) -> Napi::Value {
    NmArgs a = nm_args(info, 0);
    CudaBuffer* out;
    Napi::Object o = out_arg(info, 6, a.rows * a.cols, a.d, &out);
    cuda::SelectOut so;
    so.pruned = out->ptr();
    cuda::nm_select(a.w->ptr(), a.d, a.rows, a.cols, a.n, a.m, so);
    return o;
  });
  // cudaNmCheck(w, dtype, rows, cols, n, m) -> -1, or [group index, non-zeros in it] (waits for the GPU)
  define(env, exports, "cudaNmCheck", [](const Napi::CallbackInfo& info) -> Napi::Value {
    NmArgs a = nm_args(info, 0);
    int nz = 0;
    const int64_t g = cuda::nm_check(a.w->ptr(), a.d, a.rows, a.cols, a.n, a.m, &nz);
    if (g < 0) return Napi::Number::New(info.Env(), -1);
    Napi::Array r = Napi::Array::New(info.Env(), 2);
    r.Set(0u, Napi::Number::New(info.Env(), static_cast<double>(g)));
    r.Set(1u, Napi::Number::New(info.Env(), nz));
    return r;
  });
  // cudaTransposableMask(w, dtype, rows, cols, out?) -> uint8 mask CudaBuffer
  define(env, exports, "cudaTransposableMask", [](const Napi::CallbackInfo& info) -> Napi::Value {
    CudaBuffer* w = CudaBuffer::Arg(info, 0, "w");
    const DType d = dtype_arg(info, 1, "dtype");
    const int64_t rows = int_arg(info, 2, "rows"), cols = int_arg(info, 3, "cols");
    if (rows < 4 || cols < 4 || rows % 4 || cols % 4)
      fail("E_SHAPE", "w: got [" + std::to_string(rows) + ", " + std::to_string(cols) +
                          "], expected both dimensions to be positive multiples of 4");
    w->require(rows * cols, d, "w");
    CudaBuffer* out;
    Napi::Object o = out_arg(info, 4, rows * cols, DType::U8, &out);
    cuda::transposable_mask(w->ptr(), d, rows, cols, static_cast<uint8_t*>(out->ptr()));
    return o;
  });
  // cudaMaskSad(a, b, count) -> positions whose kept state differs (waits for the GPU)
  define(env, exports, "cudaMaskSad", [](const Napi::CallbackInfo& info) -> Napi::Value {
    CudaBuffer* a = CudaBuffer::Arg(info, 0, "a");
    CudaBuffer* b = CudaBuffer::Arg(info, 1, "b");
    const int64_t count = int_arg(info, 2, "count");
    a->require(count, DType::U8, "a");
    b->require(count, DType::U8, "b");
    return Napi::Number::New(info.Env(), static_cast<double>(cuda::mask_sad(static_cast<const uint8_t*>(a->ptr()),
                                                                           static_cast<const uint8_t*>(b->ptr()), count)));
  });
  // cudaNmCompress(w, dtype, rows, cols, n, m) -> CudaSparse (portable form + cuSPARSELt form where possible)
  define(env, exports, "cudaNmCompress", [](const Napi::CallbackInfo& info) -> Napi::Value {
    NmArgs a = nm_args(info, 0);
    return CudaSparse::Wrap(info.Env(), cuda::compress(a.w->ptr(), a.d, a.rows, a.cols, a.n, a.m));
  });
  // cudaNmFromPortable({values: TypedArray, positions: Uint8Array, dtype, rows, cols, n, m}) -> CudaSparse
  // (uploads a CPU SparseTensor's portable form and adds the cuSPARSELt form)
  define(env, exports, "cudaNmFromPortable", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Options o(info, 0, "cudaNmFromPortable");
    Buf values = o.buffer("values"), positions = o.buffer("positions");
    const DType d = o.dtype("dtype");
    const int64_t rows = o.integer("rows"), cols = o.integer("cols");
    const int64_t n = o.integer("n"), m = o.integer("m");
    o.done();
    nm_validate(rows, cols, n, m);
    const int64_t nv = rows * nm_kept_per_row(cols, static_cast<int>(n), static_cast<int>(m));
    const int64_t np = rows * nm_pos_row_bytes(cols, static_cast<int>(n), static_cast<int>(m));
    require_elems(values, nv, d, o.where("values").c_str());
    require_elems(positions, np, DType::U8, o.where("positions").c_str());
    cuda::DevPtr dv = cuda::alloc(static_cast<size_t>(nv) * dtype_size(d));
    cuda::DevPtr dp = cuda::alloc_zeroed(static_cast<size_t>(np));
    cuda::upload(dv->ptr(), values.data, static_cast<size_t>(nv) * dtype_size(d));
    cuda::upload(dp->ptr(), positions.data, static_cast<size_t>(np));
    return CudaSparse::Wrap(info.Env(), cuda::from_portable(std::move(dv), std::move(dp), d, rows, cols,
                                                            static_cast<int>(n), static_cast<int>(m)));
  });
  // cudaNmDecompress(sparse, out?) -> dense pruned CudaBuffer [rows, cols]
  define(env, exports, "cudaNmDecompress", [](const Napi::CallbackInfo& info) -> Napi::Value {
    CudaSparse* h = CudaSparse::Arg(info, 0, "sparse");
    const cuda::SparseMatrix& s = *h->matrix();
    CudaBuffer* out;
    Napi::Object o = out_arg(info, 1, s.rows * s.cols, s.dtype, &out);
    cuda::nm_decompress(s.values->ptr(), s.positions->as<uint8_t>(), s.dtype, s.rows, s.cols, s.n, s.m, out->ptr());
    return o;
  });
  // cudaNmDownloadPortable(sparse, values: TypedArray, positions: Uint8Array): the portable form to the host.
  define(env, exports, "cudaNmDownloadPortable", [](const Napi::CallbackInfo& info) -> Napi::Value {
    CudaSparse* h = CudaSparse::Arg(info, 0, "sparse");
    const cuda::SparseMatrix& s = *h->matrix();
    Buf values = buffer_arg(info, 1, "values"), positions = buffer_arg(info, 2, "positions");
    const int64_t nv = s.rows * nm_kept_per_row(s.cols, s.n, s.m);
    const int64_t np = s.rows * nm_pos_row_bytes(s.cols, s.n, s.m);
    require_elems(values, nv, s.dtype, "values");
    require_elems(positions, np, DType::U8, "positions");
    cuda::download(positions.data, s.positions->ptr(), static_cast<size_t>(np));
    cuda::download(values.data, s.values->ptr(), static_cast<size_t>(nv) * dtype_size(s.dtype));
    return info.Env().Undefined();
  });
}

}  // namespace
NMS_NAPI_FAMILY(cuda_nm, RegisterCudaNm);
}  // namespace nms::napi
#endif  // NMSPARSE_WITH_CUDA
