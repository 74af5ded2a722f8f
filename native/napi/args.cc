#include "napi/args.h"

#include <cmath>
#include <new>

namespace nms::napi {

static std::string at(size_t i, const char* name) { return std::string(name) + " (argument " + std::to_string(i) + ")"; }

Buf buffer_arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = info[i];
  Buf b;
  if (v.IsTypedArray()) {
    auto ta = v.As<Napi::TypedArray>();
    b.data = static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    b.bytes = ta.ByteLength();
    b.owner = ta;
  } else if (v.IsArrayBuffer()) {
    auto ab = v.As<Napi::ArrayBuffer>();
    b.data = ab.Data();
    b.bytes = ab.ByteLength();
    b.owner = ab;
  } else {
    fail("E_TYPE", at(i, name) + ": expected a TypedArray or ArrayBuffer");
  }
  return b;
}

Buf optional_buffer_arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info[i].IsNull() || info[i].IsUndefined()) return Buf{};
  return buffer_arg(info, i, name);
}

double number_arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsNumber()) fail("E_TYPE", at(i, name) + ": expected a number");
  return info[i].As<Napi::Number>().DoubleValue();
}

int64_t int_arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  const double d = number_arg(info, i, name);
  if (!std::isfinite(d) || d != std::floor(d) || std::fabs(d) > 9007199254740991.0)
    fail("E_VALUE", at(i, name) + ": expected an integer, got " + std::to_string(d));
  return static_cast<int64_t>(d);
}

bool bool_arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsBoolean()) fail("E_TYPE", at(i, name) + ": expected a boolean");
  return info[i].As<Napi::Boolean>().Value();
}

DType dtype_arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  const int64_t d = int_arg(info, i, name);
  if (d < 0 || d >= kNumDTypes) fail("E_DTYPE", at(i, name) + ": unknown dtype code " + std::to_string(d));
  return static_cast<DType>(d);
}

void require_elems(const Buf& b, int64_t count, DType d, const char* name) {
  if (count < 0 || b.bytes < static_cast<size_t>(count) * dtype_size(d))
    fail("E_SHAPE", std::string(name) + ": buffer has " + std::to_string(b.bytes) + " bytes, needs " +
                        std::to_string(count) + " " + dtype_name(d) + " elements");
}

void require_disjoint(const void* a, int64_t na, const void* b, int64_t nb, const char* what) {
  const char *pa = static_cast<const char*>(a), *pb = static_cast<const char*>(b);
  if (pa && pb && na > 0 && nb > 0 && pa < pb + nb && pb < pa + na) fail("E_VALUE", std::string(what) + " must not overlap");
}

void require_same_or_disjoint(const void* a, int64_t na, const void* b, int64_t nb, const char* what) {
  const char *pa = static_cast<const char*>(a), *pb = static_cast<const char*>(b);
  if ((pa == pb && na == nb) || !pa || !pb || na <= 0 || nb <= 0 || pa >= pb + nb || pb >= pa + na) return;
  fail("E_VALUE", std::string(what) + " partly overlap (a view shifted into the other's memory): expected the same memory "
                  "(in place) or none in common");
}

Napi::Error to_js_error(Napi::Env env, const std::string& code, const std::string& message) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, code));
  return e;
}

void define(Napi::Env env, Napi::Object exports, const char* name, Callback fn) {
  exports.Set(name, Napi::Function::New(env, [fn](const Napi::CallbackInfo& info) -> Napi::Value {
    try {
      return fn(info);
    } catch (const Napi::Error&) {
      throw;
    } catch (const Error& e) {
      throw to_js_error(info.Env(), e.code, e.what());
    } catch (const std::bad_alloc&) {
      throw to_js_error(info.Env(), "E_OOM", "out of host memory");
    } catch (const std::exception& e) {
      throw to_js_error(info.Env(), "E_INTERNAL", e.what());
    }
  }, name));
}

namespace {
class Worker : public Napi::AsyncWorker {
 public:
  Worker(Napi::Env env, std::vector<Napi::Object> keep, std::function<void()> work)
      : Napi::AsyncWorker(env, "nmsparse"), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)) {
    for (auto& o : keep) refs_.push_back(Napi::Persistent(o));
  }
  Napi::Promise promise() { return deferred_.Promise(); }

  void Execute() override {
    try {
      work_();
    } catch (const Error& e) {
      code_ = e.code;
      SetError(e.what());
    } catch (const std::bad_alloc&) {
      code_ = "E_OOM";
      SetError("out of host memory");
    } catch (const std::exception& e) {
      code_ = "E_INTERNAL";
      SetError(e.what());
    }
  }
  void OnOK() override { deferred_.Resolve(Env().Undefined()); }
  void OnError(const Napi::Error& e) override {
    deferred_.Reject(to_js_error(Env(), code_, e.Message()).Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<void()> work_;
  std::vector<Napi::ObjectReference> refs_;
  std::string code_ = "E_INTERNAL";
};
}  // namespace

Napi::Value run(Napi::Env env, bool async, std::vector<Napi::Object> keep, std::function<void()> work) {
  if (!async) {
    work();
    return env.Undefined();
  }
  auto* w = new Worker(env, std::move(keep), std::move(work));
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

}  // namespace nms::napi
