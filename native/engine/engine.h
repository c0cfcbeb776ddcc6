// The engine object JS sees: one class for the three aio modes. It parses submission batches,
// bounces misaligned O_DIRECT memory, hands requests to its backend (libaio, io_uring) or its
// thread pool, continues short I/O, reroutes RWF_NOWAIT bounces to the pool, keeps the counters,
// and delivers completions to JS once per batch from a uv_poll on its eventfd.
#pragma once
#include <napi.h>
#include <uv.h>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>
#include "backend.h"
#include "bounce_pool.h"
#include "counters.h"
#include "request.h"
#include "thread_pool.h"

namespace spindle {

class Engine : public Napi::ObjectWrap<Engine> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit Engine(const Napi::CallbackInfo& info);
  ~Engine() override;

 private:
  struct Buf {
    uint8_t* data = nullptr;
    size_t length = 0;
    Napi::Reference<Napi::Value> ref;
    bool dead = false;  // unregistered while I/O was in flight: released once drained
  };

  Napi::Value Submit(const Napi::CallbackInfo& info);
  Napi::Value RegisterBuffer(const Napi::CallbackInfo& info);
  Napi::Value UnregisterBuffer(const Napi::CallbackInfo& info);
  Napi::Value SetNowait(const Napi::CallbackInfo& info);
  Napi::Value Destroy(const Napi::CallbackInfo& info);
  Napi::Value GetInFlight(const Napi::CallbackInfo& info);
  Napi::Value GetKind(const Napi::CallbackInfo& info);
  Napi::Value GetBounceStats(const Napi::CallbackInfo& info);

  Req* Alloc();
  void Recycle(Req* r);
  void Immediate(Req* r, int64_t res);
  void Dispatch(Req* r);
  void FlushBackend();
  void Collect(std::vector<Req*>& batch);
  void Finish(Req* r);
  void Written(Req* r);
  void IssueBarrier();
  void Complete(Req* r, int64_t res);
  void OnReadable();
  void Deliver();
  void DrainBlocking();
  void Release();
  void Signal();
  void PruneDeadBuffers();
  void Lock(Req* r);
  bool MustWait(const Req* r, size_t ahead) const;
  void Track(Req* r);
  void Untrack(Req* r);
  static void CleanupHook(void* arg);

  std::string kind_;
  Target target_;
  Napi::Env env_;
  int efd_ = -1;
  uv_poll_t* poll_ = nullptr;
  uv_timer_t* timer_ = nullptr;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<BouncePool> bounce_;
  std::unique_ptr<Backend> backend_;
  bool read_only_ = false, flush_noop_ = false, nowait_read_ = false, nowait_write_ = false;
  bool dsync_ = false;  // O_DSYNC fd: every write is durable already, FUA needs no barrier
  bool destroyed_ = false, keep_alive_ = false, in_cleanup_ = false;

  double* counters_ = nullptr;
  std::vector<double> own_counters_;
  Napi::Reference<Napi::Value> counters_ref_, tags_ref_, results_ref_;
  uint32_t* ctags_ = nullptr;
  int32_t* cresults_ = nullptr;
  size_t ccap_ = 0;
  Napi::FunctionReference on_complete_;
  std::unique_ptr<Napi::AsyncContext> async_;

  std::unordered_map<uint32_t, Buf> bufs_;
  bool have_dead_bufs_ = false;
  std::vector<Req*> free_, ready_, batch_;
  std::vector<std::pair<uint32_t, int32_t>> completed_, delivering_;
  // FUA writes done but not yet covered by an fdatasync. One barrier at a time (group commit):
  // writes finishing while it runs wait for the next one, so a burst costs a few flushes, not one each.
  std::vector<Req*> awaiting_flush_;
  bool barrier_in_flight_ = false;
  // Writes, write-zeroes and discards in flight (O_DIRECT or block device), and those parked
  // behind an overlapping read-modify-write, in arrival order.
  std::vector<Req*> tracked_, parked_;
  size_t serialising_ = 0;  // read-modify-writes among tracked_
  SubmitStats submit_stats_;
  uint64_t inflight_ = 0;
  uint64_t now_ns_ = 0;
};

}  // namespace spindle
