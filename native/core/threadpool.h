// The CPU thread pool every heavy kernel runs on. One pool per process, sized to the cores (setNumThreads
// changes it). parallel_for may be called from several threads at once (JS threads, and the addon's op thread running
// async ops): each call is a job whose chunks any idle worker, and the caller itself, take in turn.
#pragma once
#include <cstdint>
#include <functional>

namespace nms {

// Runs fn(begin, end) over [0, n) in chunks of at least `grain` items, on up to num_threads() threads;
// returns when all chunks are done. The first exception thrown by a chunk is rethrown here.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

int num_threads();
void set_num_threads(int n);  // n >= 1

}  // namespace nms
