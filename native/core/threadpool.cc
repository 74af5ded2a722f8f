#include "core/threadpool.h"

#include <algorithm>
#if defined(__linux__)
#include <sched.h>
#endif
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace nms {
namespace {

// A sleeping thread takes tens of microseconds to wake on the VMs we measure (a futex wake is an IPI there), as
// long as a 784x1024 product at one row: a forward's layers, or a training step's ops, come back to back. So a
// worker that runs out of work, and a caller waiting for its job's last chunk, spin this long before sleeping.
constexpr auto kSpin = std::chrono::microseconds(100);

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::this_thread::yield();
#endif
}

// Spins until done() or kSpin has passed; whether done() held.
template <class F>
bool spin_until(F done) {
  const auto end = std::chrono::steady_clock::now() + kSpin;
  for (;;) {
    for (int i = 0; i < 32; ++i) {
      if (done()) return true;
      cpu_relax();
    }
    if (std::chrono::steady_clock::now() >= end) return done();
  }
}

struct Job {
  const std::function<void(int64_t, int64_t)>* fn;
  int64_t n, chunk, chunks;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
  std::mutex m;
  std::condition_variable cv;
  std::exception_ptr error;
  std::atomic<int> users{0};  // pool workers currently inside this job; raised only under the pool's mutex

  // Takes and runs one chunk; false when none is left to take.
  bool run_one() {
    const int64_t c = next.fetch_add(1);
    if (c >= chunks) return false;
    const int64_t b = c * chunk, e = std::min(n, b + chunk);
    try {
      (*fn)(b, e);
    } catch (...) {
      std::lock_guard<std::mutex> g(m);
      if (!error) error = std::current_exception();
    }
    if (done.fetch_add(1) + 1 == chunks) {
      std::lock_guard<std::mutex> g(m);
      cv.notify_all();
    }
    return true;
  }
};

class Pool {
 public:
  Pool() { resize(default_threads()); }
  ~Pool() { stop_workers(); }

  int size() {
    std::lock_guard<std::mutex> g(mu_);
    return static_cast<int>(workers_.size()) + 1;
  }

  void resize(int n) {
    // One resize at a time: two interleaved ones could clear stopping_ under the other's join, which then waited for
    // workers that had gone back to sleep.
    std::lock_guard<std::mutex> r(resize_mu_);
    stop_workers();
    std::lock_guard<std::mutex> g(mu_);
    stopping_ = false;
    for (int i = 0; i < n - 1; ++i) workers_.emplace_back([this] { work(); });
  }

  void run(Job& job) {
    {
      std::lock_guard<std::mutex> g(mu_);
      queue_.push_back(&job);
      posted_.fetch_add(1);
    }
    // A worker counts itself in sleepers_ under mu_ before it sleeps, so one that missed the job is counted here.
    // Only as many as the job has chunks for besides the caller's (each one woken then spins after it).
    for (int64_t i = std::min<int64_t>(sleepers_.load(), job.chunks - 1); i > 0; --i) cv_.notify_one();
    while (job.run_one()) {
    }
    const auto finished = [&] { return job.done.load() == job.chunks; };
    if (!spin_until(finished)) {
      std::unique_lock<std::mutex> g(job.m);
      job.cv.wait(g, finished);
    }
    {
      std::lock_guard<std::mutex> g(mu_);
      queue_.erase(std::remove(queue_.begin(), queue_.end(), &job), queue_.end());
    }
    // The job lives on the caller's stack: wait until no worker still holds it before returning (a worker leaves
    // it right after its last chunk; none can join once it is off the queue).
    if (!spin_until([&] { return job.users.load() == 0; })) {
      std::unique_lock<std::mutex> g(mu_);
      idle_cv_.wait(g, [&] { return job.users.load() == 0; });
    }
  }

 private:
  // The CPUs this process may run on (a container's cpuset, taskset), else the machine's: more threads than that
  // only time-share, and a spinning one then takes a core from the rest.
  static int default_threads() {
    unsigned n = std::thread::hardware_concurrency();
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0) n = static_cast<unsigned>(CPU_COUNT(&set));
#endif
    return n == 0 ? 1 : static_cast<int>(std::min(n, 64u));
  }

  void stop_workers() {
    std::vector<std::thread> old;
    {
      std::lock_guard<std::mutex> g(mu_);
      stopping_ = true;
      old.swap(workers_);
    }
    cv_.notify_all();
    for (auto& t : old) t.join();
  }

  void work() {
    std::unique_lock<std::mutex> g(mu_);
    for (;;) {
      if (!stopping_ && !has_work()) {
        // Spin (without the lock) for a job posted after the last one, then sleep.
        const uint64_t seen = posted_.load();
        g.unlock();
        spin_until([&] { return posted_.load() != seen; });
        g.lock();
        ++sleepers_;
        cv_.wait(g, [&] { return stopping_ || has_work(); });
        --sleepers_;
      }
      if (stopping_) return;
      Job* job = nullptr;
      for (Job* j : queue_)
        if (j->next.load() < j->chunks) { job = j; break; }
      if (!job) continue;
      job->users.fetch_add(1);
      g.unlock();
      while (job->run_one()) {
      }
      const bool last = job->users.fetch_sub(1) == 1;
      g.lock();
      if (last) idle_cv_.notify_all();
    }
  }

  bool has_work() const {
    for (Job* j : queue_)
      if (j->next.load() < j->chunks) return true;
    return false;
  }

  std::mutex resize_mu_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable idle_cv_;
  std::deque<Job*> queue_;
  std::atomic<uint64_t> posted_{0};  // jobs ever queued
  std::atomic<int> sleepers_{0};     // workers waiting on cv_ (changed under mu_)
  std::vector<std::thread> workers_;
  bool stopping_ = false;
};

Pool& pool() {
  static Pool* p = new Pool();  // never destroyed: workers may outlive static destruction at process exit
  return *p;
}

}  // namespace

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int threads = pool().size();
  if (threads == 1 || n <= grain) {
    fn(0, n);
    return;
  }
  // About 4 chunks per thread balances uneven chunks without much scheduling overhead.
  int64_t chunks = std::min<int64_t>((n + grain - 1) / grain, static_cast<int64_t>(threads) * 4);
  Job job;
  job.fn = &fn;
  job.n = n;
  job.chunk = (n + chunks - 1) / chunks;
  job.chunks = (n + job.chunk - 1) / job.chunk;
  pool().run(job);
  if (job.error) std::rethrow_exception(job.error);
}

int num_threads() { return pool().size(); }
void set_num_threads(int n) { pool().resize(std::max(1, std::min(n, 256))); }

}  // namespace nms
