#include "napi/args.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>

namespace nms::napi {

static std::string at(size_t i, const char* name) { return std::string(name) + " (argument " + std::to_string(i) + ")"; }

// The bytes a TypedArray or ArrayBuffer holds now (data null, bytes 0 when it is neither, or detached).
static Buf buffer_of(Napi::Value v, bool* shared = nullptr) {
  Buf b;
  napi_env env = v.Env();
  bool is = false;
  if (napi_is_typedarray(env, v, &is) == napi_ok && is) {
    napi_value ab;
    size_t length = 0, offset = 0;
    napi_typedarray_type type;
    void* data = nullptr;
    // Fails for a TypedArray on a SharedArrayBuffer (N-API has no shared buffers).
    if (napi_get_typedarray_info(env, v, &type, &length, &data, &ab, &offset) != napi_ok) {
      if (shared) *shared = true;
      return b;
    }
    b.data = data;
    b.bytes = v.As<Napi::TypedArray>().ByteLength();
    b.owner = v.As<Napi::Object>();
  } else if (v.IsArrayBuffer()) {
    auto ab = v.As<Napi::ArrayBuffer>();
    b.data = ab.Data();
    b.bytes = ab.ByteLength();
    b.owner = ab;
  }
  return b;
}

// The readers of one value, shared by the positional and the named forms; `where` names it in errors.
static Buf buffer_value(Napi::Value v, const std::string& where) {
  bool shared = false;
  Buf b = buffer_of(v, &shared);
  if (shared) fail("E_TYPE", where + ": expected a TypedArray on a plain ArrayBuffer, got one on a SharedArrayBuffer");
  if (b.owner.IsEmpty()) fail("E_TYPE", where + ": expected a TypedArray or ArrayBuffer");
  return b;
}

static Buf optional_buffer_value(Napi::Value v, const std::string& where) {
  if (v.IsNull() || v.IsUndefined()) return Buf{};
  return buffer_value(v, where);
}

static double number_value(Napi::Value v, const std::string& where) {
  if (!v.IsNumber()) fail("E_TYPE", where + ": expected a number" + (v.IsUndefined() ? ", got undefined" : ""));
  return v.As<Napi::Number>().DoubleValue();
}

static int64_t int_value(Napi::Value v, const std::string& where) {
  const double d = number_value(v, where);
  if (!std::isfinite(d) || d != std::floor(d) || std::fabs(d) > 9007199254740991.0)
    fail("E_VALUE", where + ": expected an integer, got " + std::to_string(d));
  return static_cast<int64_t>(d);
}

static bool bool_value(Napi::Value v, const std::string& where) {
  if (!v.IsBoolean()) fail("E_TYPE", where + ": expected a boolean" + (v.IsUndefined() ? ", got undefined" : ""));
  return v.As<Napi::Boolean>().Value();
}

static DType dtype_value(Napi::Value v, const std::string& where) {
  const int64_t d = int_value(v, where);
  if (d < 0 || d >= kNumDTypes) fail("E_DTYPE", where + ": unknown dtype code " + std::to_string(d));
  return static_cast<DType>(d);
}

Buf buffer_arg(const Napi::CallbackInfo& info, size_t i, const char* name) { return buffer_value(info[i], at(i, name)); }
Buf optional_buffer_arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  return optional_buffer_value(info[i], at(i, name));
}
double number_arg(const Napi::CallbackInfo& info, size_t i, const char* name) { return number_value(info[i], at(i, name)); }
int64_t int_arg(const Napi::CallbackInfo& info, size_t i, const char* name) { return int_value(info[i], at(i, name)); }
bool bool_arg(const Napi::CallbackInfo& info, size_t i, const char* name) { return bool_value(info[i], at(i, name)); }
DType dtype_arg(const Napi::CallbackInfo& info, size_t i, const char* name) { return dtype_value(info[i], at(i, name)); }

Options::Options(const Napi::CallbackInfo& info, size_t i, const char* fn) : Options(info[i], fn, "options") {}

Options::Options(const Napi::Value& v, const std::string& fn, const std::string& path) : fn_(fn), path_(path) {
  if (!v.IsObject() || v.IsArray() || v.IsFunction() || v.IsTypedArray() || v.IsArrayBuffer())
    fail("E_TYPE", fn_ + (path_ == "options" ? "(options)" : ": " + path_) + ": expected an options object");
  o_ = v.As<Napi::Object>();
}

std::string Options::where(const char* key) const { return fn_ + ": " + path_ + "." + key; }

Napi::Value Options::get(const char* key) {
  read_.emplace_back(key);
  return o_.Get(key);
}

bool Options::given(const char* key) {
  const Napi::Value v = get(key);
  return !v.IsNull() && !v.IsUndefined();
}

Buf Options::buffer(const char* key) { return buffer_value(get(key), where(key)); }
Buf Options::optional_buffer(const char* key) { return optional_buffer_value(get(key), where(key)); }
int64_t Options::integer(const char* key) { return int_value(get(key), where(key)); }
double Options::number(const char* key) { return number_value(get(key), where(key)); }
bool Options::boolean(const char* key) { return bool_value(get(key), where(key)); }
DType Options::dtype(const char* key) { return dtype_value(get(key), where(key)); }

void Options::done() const {
  const Napi::Array keys = o_.GetPropertyNames();
  for (uint32_t i = 0; i < keys.Length(); ++i) {
    const std::string k = keys.Get(i).ToString().Utf8Value();
    bool known = false;
    for (const std::string& r : read_) known = known || r == k;
    if (!known) fail("E_VALUE", fn_ + ": " + path_ + "." + k + ": unknown option");
  }
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

std::shared_ptr<void> Holds::own(Buf& b) {
  if (!async_ || !b.data) return nullptr;
  if (std::shared_ptr<void> pin = pin_block(b.data, b.bytes)) {
    pins_.push_back(pin);
    return nullptr;
  }
  std::shared_ptr<void> copy(std::malloc(b.bytes == 0 ? 1 : b.bytes), std::free);
  if (!copy) fail("E_OOM", "cannot allocate " + std::to_string(b.bytes) + " bytes to copy an argument of an async op");
  std::memcpy(copy.get(), b.data, b.bytes);
  pins_.push_back(copy);
  b.data = copy.get();
  return copy;
}

void Holds::input(Buf& b) { own(b); }

void Holds::output(Buf& b) {
  if (std::shared_ptr<void> copy = own(b)) staged_.push_back({Napi::Persistent(b.owner), copy, b.bytes});
}

void Holds::keep(Napi::Object o) { refs_.push_back(Napi::Persistent(o)); }

namespace {
class Worker : public Napi::AsyncWorker {
 public:
  Worker(Napi::Env env, Holds holds, std::function<void()> work)
      : Napi::AsyncWorker(env, "nmsparse"), deferred_(Napi::Promise::Deferred::New(env)), holds_(std::move(holds)),
        work_(std::move(work)) {}
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
  void OnOK() override {
    // Copied outputs go back now, on the JS thread, into what the TypedArray holds at this moment.
    for (const auto& s : holds_.staged()) {
      Buf dst = buffer_of(s.target.Value());
      if (dst.bytes < s.bytes) {
        deferred_.Reject(to_js_error(Env(), "E_DISPOSED", "the output's buffer was detached or resized while the async op ran").Value());
        return;
      }
      std::memcpy(dst.data, s.copy.get(), s.bytes);
    }
    deferred_.Resolve(Env().Undefined());
  }
  void OnError(const Napi::Error& e) override {
    deferred_.Reject(to_js_error(Env(), code_, e.Message()).Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  Holds holds_;
  std::function<void()> work_;
  std::string code_ = "E_INTERNAL";
};
}  // namespace

Napi::Value run(Napi::Env env, Holds holds, std::function<void()> work) {
  if (!holds.async()) {
    work();
    return env.Undefined();
  }
  auto* w = new Worker(env, std::move(holds), std::move(work));
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

}  // namespace nms::napi
