// The small toolkit every N-API family file uses: argument readers that fail with typed errors, a wrapper that
// turns C++ exceptions into JS errors carrying `code`, and run() for the sync / Promise (thread pool) forms.
// The lib/ op files validate arguments first, with the user-facing messages; these checks are the last line that
// keeps a bad call from reaching a kernel.
#pragma once
#include <napi.h>

#include <functional>
#include <memory>
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

// Positional arguments: an error names "<name> (argument i)".
Buf buffer_arg(const Napi::CallbackInfo& info, size_t i, const char* name);
Buf optional_buffer_arg(const Napi::CallbackInfo& info, size_t i, const char* name);  // null/undefined → empty
int64_t int_arg(const Napi::CallbackInfo& info, size_t i, const char* name);
double number_arg(const Napi::CallbackInfo& info, size_t i, const char* name);
bool bool_arg(const Napi::CallbackInfo& info, size_t i, const char* name);
DType dtype_arg(const Napi::CallbackInfo& info, size_t i, const char* name);

// The fields of an options object (a long call's only argument, as sharp's pipeline(options)), each read by name
// with its type; an error names "<fn>: options.<key>". A missing required key reads as undefined (E_TYPE).
// done() rejects every key that was not read (E_VALUE), so a misspelt or stale field fails instead of being
// ignored: call it after the last read.
class Options {
 public:
  Options(const Napi::CallbackInfo& info, size_t i, const char* fn);
  // A nested options object (an element of an array option): an error names "<fn>: <path>.<key>".
  Options(const Napi::Value& v, const std::string& fn, const std::string& path);
  Napi::Value get(const char* key);  // the raw value, marked as read
  bool given(const char* key);       // present and neither null nor undefined (marked as read)
  std::string where(const char* key) const;
  const std::string& fn() const { return fn_; }
  Buf buffer(const char* key);
  Buf optional_buffer(const char* key);  // null/undefined/absent → empty
  int64_t integer(const char* key);
  double number(const char* key);
  bool boolean(const char* key);
  DType dtype(const char* key);
  void done() const;

 private:
  Napi::Object o_;
  std::string fn_, path_;
  std::vector<std::string> read_;
};

// Checks that `b` holds at least `count` elements of `d`.
void require_elems(const Buf& b, int64_t count, DType d, const char* name);

// E_VALUE "<what> must not overlap" when the byte ranges [a, a+na) and [b, b+nb) share a byte (kernels read
// their inputs while writing their outputs).
void require_disjoint(const void* a, int64_t na, const void* b, int64_t nb, const char* what);

// Like require_disjoint, but also accepts the very same range: for kernels that may run in place (each element,
// or each N:M group, is read before it is written), never on a shifted view that overlaps.
void require_same_or_disjoint(const void* a, int64_t na, const void* b, int64_t nb, const char* what);

// The Block of native tensor memory (napi/storage.cc, allocBuffer) that holds [data, data + bytes), shared with
// the caller so the bytes outlive whatever JavaScript does to the ArrayBuffer; null when it came from elsewhere.
std::shared_ptr<void> pin_block(const void* data, size_t bytes);

// What an async op keeps until it finishes. input()/output() point b.data at memory the op owns: the pinned
// Block when b lies in one (no copy), else a native copy of b (an output's copy goes back into b when the op
// succeeds, unless b was detached meanwhile: then the op fails with E_DISPOSED). Sync ops need none of this.
class Holds {
 public:
  explicit Holds(bool async) : async_(async) {}
  void input(Buf& b);
  void output(Buf& b);
  void keep(Napi::Object o);  // a JS object the op needs alive (an ObjectWrap handle)
  bool async() const { return async_; }

  struct Staged {
    Napi::ObjectReference target;  // the output's TypedArray
    std::shared_ptr<void> copy;
    size_t bytes;
  };
  const std::vector<Staged>& staged() const { return staged_; }
  // Lets go of the JS references without touching JS: for an op whose environment is gone.
  void abandon();

 private:
  std::shared_ptr<void> own(Buf& b);
  bool async_;
  std::vector<std::shared_ptr<void>> pins_;
  std::vector<Staged> staged_;
  std::vector<Napi::ObjectReference> refs_;
};

using Callback = std::function<Napi::Value(const Napi::CallbackInfo&)>;
// exports[name] = fn, with nms::Error → JS Error {code}, std::bad_alloc → E_OOM, other exceptions → E_INTERNAL.
void define(Napi::Env env, Napi::Object exports, const char* name, Callback fn);

// Runs `work` now and returns undefined, or (holds.async()) on the addon's op thread (one for the process, ops in
// order) and returns a Promise that settles when it is done; `holds` is released then.
Napi::Value run(Napi::Env env, Holds holds, std::function<void()> work);

Napi::Error to_js_error(Napi::Env env, const std::string& code, const std::string& message);

}  // namespace nms::napi
