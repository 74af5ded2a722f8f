// N-API binding of float dtype conversion on the GPU (native/cuda/convert.cu): the CUDA twin of convert
// (native/napi/convert.cc), with CudaBuffers for src and dst.
#ifdef NMSPARSE_WITH_CUDA
#include "cuda/ops.h"
#include "napi/args.h"
#include "napi/cuda_handles.h"
#include "napi/registry.h"

namespace nms::napi {
namespace {

void RegisterCudaConvert(Napi::Env env, Napi::Object exports) {
  // cudaConvert(src, srcDtype, dst, dstDtype, count): float32 / float16 / bfloat16 only
  define(env, exports, "cudaConvert", [](const Napi::CallbackInfo& info) -> Napi::Value {
    CudaBuffer* src = CudaBuffer::Arg(info, 0, "src");
    const DType sd = dtype_arg(info, 1, "srcDtype");
    CudaBuffer* dst = CudaBuffer::Arg(info, 2, "dst");
    const DType dd = dtype_arg(info, 3, "dstDtype");
    const int64_t count = int_arg(info, 4, "count");
    if (count < 0) fail("E_SHAPE", "cudaConvert: negative count");
    src->require(count, sd, "src");
    dst->require(count, dd, "dst");
    if (count > 0 && src->ptr() == dst->ptr()) fail("E_VALUE", "cudaConvert: src and dst must not be the same buffer");
    cuda::convert(src->ptr(), sd, dst->ptr(), dd, count);
    return info.Env().Undefined();
  });
}

}  // namespace
NMS_NAPI_FAMILY(cuda_convert, RegisterCudaConvert);
}  // namespace nms::napi
#endif  // NMSPARSE_WITH_CUDA
