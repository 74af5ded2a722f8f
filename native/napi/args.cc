#include "napi/args.h"

#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

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

void Holds::abandon() {
  for (auto& r : refs_) r.SuppressDestruct();
  for (auto& st : staged_) st.target.SuppressDestruct();
}

namespace {
// Async ops run one at a time on a thread of the addon's own, not on libuv's pool. libuv wakes its idle threads in
// turn, so each op ran on the thread that had waited longest, cold in cache and in the scheduler's placement (the
// MNIST MLP's 2:4 forward at 64 rows on Zen 4: median 1.03-1.14 ms and p90 1.8-2.0 ms on libuv's 4 threads, 0.94-1.03
// and 1.1-1.4 with UV_THREADPOOL_SIZE=1), and a long op held a libuv thread that fs and dns requests wait for. One at
// a time costs no throughput: each op runs on the whole CPU thread pool. The result goes back to the op's
// environment (the main thread's or a worker thread's) through a thread-safe function.
struct Envs;
struct Task {
  Holds holds;
  std::function<void()> work;
  Napi::Promise::Deferred deferred;
  Envs* home;
  bool ok = true;
  std::string code, message;  // when not ok
};

void settle(Napi::Env env, Napi::Function, Envs* e, Task* t);
using Tsfn = Napi::TypedThreadSafeFunction<Envs, Task, settle>;

// Per environment: the way back to it, and how many of its ops are not settled yet (JS thread only).
struct Envs {
  napi_env env;
  Tsfn tsfn;
  int pending = 0;
};

class OpThread {
 public:
  static OpThread& get() {
    static auto* t = new OpThread();  // never destroyed: it may run while static destructors do, at exit
    return *t;
  }
  void post(Task* t) {
    {
      std::lock_guard<std::mutex> g(mu_);
      queue_.push_back(t);
    }
    cv_.notify_one();
  }
  // Blocks until no op of `home` is queued or running; the queued ones are handed back (the environment is going).
  std::vector<Task*> drain(Envs* home) {
    std::unique_lock<std::mutex> g(mu_);
    std::vector<Task*> mine;
    for (auto it = queue_.begin(); it != queue_.end();) {
      if ((*it)->home == home) {
        mine.push_back(*it);
        it = queue_.erase(it);
      } else {
        ++it;
      }
    }
    idle_cv_.wait(g, [&] { return running_home_ != home; });
    return mine;
  }

 private:
  OpThread() { std::thread([this] { loop(); }).detach(); }
  void loop() {
    std::unique_lock<std::mutex> g(mu_);
    for (;;) {
      cv_.wait(g, [&] { return !queue_.empty(); });
      Task* t = queue_.front();
      queue_.pop_front();
      running_home_ = t->home;  // not the Task: its environment may settle and free it before this clears
      g.unlock();
      execute(t);
      // Queued back to its environment before running_home_ clears, so that drain() returns only once it is there.
      if (t->home->tsfn.NonBlockingCall(t) != napi_ok) {  // the environment is closing
        t->holds.abandon();
        delete t;
      }
      g.lock();
      running_home_ = nullptr;
      idle_cv_.notify_all();
    }
  }
  static void execute(Task* t) {
    try {
      t->work();
    } catch (const Error& e) {
      t->ok = false, t->code = e.code, t->message = e.what();
    } catch (const std::bad_alloc&) {
      t->ok = false, t->code = "E_OOM", t->message = "out of host memory";
    } catch (const std::exception& e) {
      t->ok = false, t->code = "E_INTERNAL", t->message = e.what();
    } catch (...) {
      t->ok = false, t->code = "E_INTERNAL", t->message = "an async op threw an unknown exception";
    }
  }
  std::mutex mu_;
  std::condition_variable cv_, idle_cv_;
  std::deque<Task*> queue_;
  Envs* running_home_ = nullptr;  // the environment of the task running now
};

// On the op's JS thread: copied outputs go back into what the TypedArrays hold now, and the promise settles. Without
// an env (the thread-safe function is torn down with its environment) the task is only freed.
void settle(Napi::Env env, Napi::Function, Envs* e, Task* t) {
  std::unique_ptr<Task> own(t);
  if (env == nullptr) {
    t->holds.abandon();
    return;
  }
  if (--e->pending == 0) e->tsfn.Unref(env);
  if (!t->ok) {
    t->deferred.Reject(to_js_error(env, t->code, t->message).Value());
    return;
  }
  for (const auto& st : t->holds.staged()) {
    Buf dst = buffer_of(st.target.Value());
    if (dst.bytes < st.bytes) {
      t->deferred.Reject(to_js_error(env, "E_DISPOSED", "the output's buffer was detached or resized while the async op ran").Value());
      return;
    }
    std::memcpy(dst.data, st.copy.get(), st.bytes);
  }
  t->deferred.Resolve(env.Undefined());
}

std::mutex g_envs_mu;
std::map<napi_env, Envs*> g_envs;

// This environment's Envs, made at its first async op: a thread-safe function that keeps the loop alive only while
// an op is pending, and a cleanup hook that waits for its ops before the environment goes.
Envs* envs_of(Napi::Env env) {
  {
    std::lock_guard<std::mutex> g(g_envs_mu);
    auto it = g_envs.find(env);
    if (it != g_envs.end()) return it->second;
  }
  auto* e = new Envs{env, {}, 0};
  e->tsfn = Tsfn::New(env, "nmsparse", 0, 1, e);
  e->tsfn.Unref(env);
  {
    std::lock_guard<std::mutex> g(g_envs_mu);
    g_envs[env] = e;
  }
  env.AddCleanupHook([e] {
    for (Task* t : OpThread::get().drain(e)) {
      t->holds.abandon();
      delete t;
    }
    {
      std::lock_guard<std::mutex> g(g_envs_mu);
      g_envs.erase(e->env);
    }
    e->tsfn.Abort();  // what is still queued back to the environment is freed with env == nullptr
  });
  return e;
}
}  // namespace

Napi::Value run(Napi::Env env, Holds holds, std::function<void()> work) {
  if (!holds.async()) {
    work();
    return env.Undefined();
  }
  OpThread& ops = OpThread::get();
  Envs* e = envs_of(env);
  auto t = std::make_unique<Task>(Task{std::move(holds), std::move(work), Napi::Promise::Deferred::New(env), e, true, {}, {}});
  Napi::Promise p = t->deferred.Promise();
  ops.post(t.get());  // may throw (bad_alloc): nothing is counted yet
  t.release();
  if (e->pending++ == 0) e->tsfn.Ref(env);
  return p;
}

}  // namespace nms::napi
