// Host memory for tensors, allocated here rather than by V8, so that async ops can own what they touch.
//
// Why: an async op runs on the addon's op thread while JavaScript goes on. Holding a napi reference to an ArrayBuffer
// keeps the object, not its bytes: JavaScript can still transfer the buffer to a Worker or structuredClone it
// with `transfer` (V8 then hands the backing store to the other side, which may free it), and a resizable
// ArrayBuffer can shrink and unmap its pages. V8 keeps a backing store alive for whoever holds its
// std::shared_ptr<BackingStore>, but N-API does not expose that. So tensor storage is a Block of native memory,
// reference-counted by std::shared_ptr: the ArrayBuffer JavaScript sees is an external view whose finalizer
// drops one reference, and an async op takes another (pin_block) that it drops when it finishes. Whatever
// happens to the ArrayBuffer meanwhile, the bytes stay mapped until both are gone. Buffers that did not come
// from here (ordinary tensors, a user's own TypedArray: lib/dtype.ts says which are pinned) are copied by the op instead
// (napi/args.cc, Holds).
#include <sys/mman.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <new>

#include "napi/args.h"
#include "napi/registry.h"

namespace nms::napi {
namespace {

struct Block {
  void* data;
  size_t bytes;
  bool mapped;  // from mmap (large), else calloc
};

// Large blocks come straight from mmap: zero pages for free. calloc would memset them whenever glibc serves
// the size from its heap (its mmap threshold rises after the first large free), which tripled the cost.
constexpr size_t kMapBytes = size_t{1} << 20;

// Every live Block by start address, to find the one a TypedArray lies in. Blocks may die on any thread (the
// last reference can be an async op's, or a transferred buffer's finalizer), hence the mutex.
std::mutex g_mu;
std::map<const char*, std::weak_ptr<Block>>& blocks() {
  static auto* m = new std::map<const char*, std::weak_ptr<Block>>();  // never destroyed: blocks outlive exit
  return *m;
}

std::shared_ptr<Block> new_block(size_t bytes) {
  const bool mapped = bytes >= kMapBytes;
  void* data = mapped ? mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
                      : std::calloc(bytes == 0 ? 1 : bytes, 1);
  if (data == (mapped ? MAP_FAILED : nullptr)) fail("E_OOM", "cannot allocate " + std::to_string(bytes) + " bytes of host memory");
  std::shared_ptr<Block> b(new Block{data, bytes, mapped}, [](Block* p) {
    {
      std::lock_guard<std::mutex> lock(g_mu);
      blocks().erase(static_cast<const char*>(p->data));
    }
    if (p->mapped) munmap(p->data, p->bytes);
    else std::free(p->data);
    delete p;
  });
  std::lock_guard<std::mutex> lock(g_mu);
  blocks()[static_cast<const char*>(data)] = b;
  return b;
}

void RegisterStorage(Napi::Env env, Napi::Object exports) {
  // allocBuffer(bytes) -> ArrayBuffer of `bytes` zeros in native memory that async ops can pin.
  define(env, exports, "allocBuffer", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const int64_t bytes = int_arg(info, 0, "bytes");
    if (bytes < 0) fail("E_VALUE", "allocBuffer: bytes: got " + std::to_string(bytes) + ", expected >= 0");
    auto ref = std::make_unique<std::shared_ptr<Block>>(new_block(static_cast<size_t>(bytes)));
    Block* b = ref->get();
    // A basic finalizer (it may run during GC, or on the thread a transferred buffer ended on): it only drops
    // the ArrayBuffer's reference and touches no JavaScript.
    Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(info.Env(), b->data, b->bytes,
                                                  [](Napi::BasicEnv, void*, std::shared_ptr<Block>* r) { delete r; }, ref.get());
    ref.release();
    return ab;
  });
  // trimHostMemory() -> whether any memory went back to the system. glibc keeps what a burst freed (tensor
  // storage, V8's buffers, HTTP bodies: its trim threshold rises with the mmap threshold, and free chunks inside a
  // heap are never trimmed), so a server that served a burst holds its high-water mark; malloc_trim(0) returns the
  // free pages of every arena. Elsewhere (musl, macOS) a no-op that says false.
  define(env, exports, "trimHostMemory", [](const Napi::CallbackInfo& info) -> Napi::Value {
#if defined(__GLIBC__)
    return Napi::Boolean::New(info.Env(), malloc_trim(0) != 0);
#else
    return Napi::Boolean::New(info.Env(), false);
#endif
  });
}

}  // namespace

std::shared_ptr<void> pin_block(const void* data, size_t bytes) {
  const char* p = static_cast<const char*>(data);
  std::lock_guard<std::mutex> lock(g_mu);
  auto it = blocks().upper_bound(p);
  if (it == blocks().begin()) return nullptr;
  --it;
  std::shared_ptr<Block> b = it->second.lock();
  if (!b || p + bytes > it->first + b->bytes) return nullptr;
  return b;
}

NMS_NAPI_FAMILY(storage, RegisterStorage);
}  // namespace nms::napi
