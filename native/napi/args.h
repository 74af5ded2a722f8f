// The small toolkit every N-API family file uses: argument readers that fail with typed errors, a wrapper that
// turns C++ exceptions into JS errors carrying `code`, and run() for the sync / Promise (thread pool) forms.
// lib/native.ts validates arguments first with the user-facing messages; these checks are the last line that
// keeps a bad call from reaching a kernel.
#pragma once
#include <napi.h>

#include <functional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"

namespace nms::napi {

struct Buf {
  void* data = nullptr;
  size_t bytes = 0;
  Napi::Object owner;  // the TypedArray / ArrayBuffer, kept alive by async work
};

Buf buffer_arg(const Napi::CallbackInfo& info, size_t i, const char* name);
Buf optional_buffer_arg(const Napi::CallbackInfo& info, size_t i, const char* name);  // null/undefined → empty
int64_t int_arg(const Napi::CallbackInfo& info, size_t i, const char* name);
double number_arg(const Napi::CallbackInfo& info, size_t i, const char* name);
bool bool_arg(const Napi::CallbackInfo& info, size_t i, const char* name);
DType dtype_arg(const Napi::CallbackInfo& info, size_t i, const char* name);

// Checks that `b` holds at least `count` elements of `d`.
void require_elems(const Buf& b, int64_t count, DType d, const char* name);

// E_VALUE "<what> must not overlap" when the byte ranges [a, a+na) and [b, b+nb) share a byte (kernels read
// their inputs while writing their outputs).
void require_disjoint(const void* a, int64_t na, const void* b, int64_t nb, const char* what);

// Like require_disjoint, but also accepts the very same range: for kernels that may run in place (each element,
// or each N:M group, is read before it is written), never on a shifted view that overlaps.
void require_same_or_disjoint(const void* a, int64_t na, const void* b, int64_t nb, const char* what);

using Callback = std::function<Napi::Value(const Napi::CallbackInfo&)>;
// exports[name] = fn, with nms::Error → JS Error {code}, std::bad_alloc → E_OOM, other exceptions → E_INTERNAL.
void define(Napi::Env env, Napi::Object exports, const char* name, Callback fn);

// Runs `work` now and returns undefined, or (async) on a libuv worker thread and returns a Promise that settles
// when it is done. `keep` holds the JS objects whose memory `work` touches until then.
Napi::Value run(Napi::Env env, bool async, std::vector<Napi::Object> keep, std::function<void()> work);

Napi::Error to_js_error(Napi::Env env, const std::string& code, const std::string& message);

}  // namespace nms::napi
