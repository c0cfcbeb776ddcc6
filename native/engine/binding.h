// The engine object JS sees (electron/dataplane/block/engine.ts): one class for the three aio modes. It
// reads the options, keeps the registered buffers, decodes each submission batch (batch.h) into
// the request core (core.h) with one native call per batch, and delivers completions to JS once
// per wake-up, through preallocated arrays, from a uv_poll on the eventfd the core signals.
#pragma once
#include <napi.h>
#include <uv.h>
#include <memory>
#include <string>
#include <vector>
#include "batch.h"
#include "buffers.h"
#include "core.h"
#include "counters.h"

namespace spindle {

class Engine : public Napi::ObjectWrap<Engine> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit Engine(const Napi::CallbackInfo& info);
  ~Engine() override;

 private:
  Napi::Value Submit(const Napi::CallbackInfo& info);
  Napi::Value RegisterBuffer(const Napi::CallbackInfo& info);
  Napi::Value UnregisterBuffer(const Napi::CallbackInfo& info);
  Napi::Value SetNowait(const Napi::CallbackInfo& info);
  Napi::Value Destroy(const Napi::CallbackInfo& info);
  Napi::Value GetInFlight(const Napi::CallbackInfo& info);
  Napi::Value GetKind(const Napi::CallbackInfo& info);
  Napi::Value GetBounceStats(const Napi::CallbackInfo& info);
  Napi::Value GetFeatures(const Napi::CallbackInfo& info);

  void OnReadable();
  void RetryWhenStuck();
  void Deliver();
  void Release();
  static void CleanupHook(void* arg);

  std::string kind_;
  Napi::Env env_;
  int efd_ = -1;
  uv_poll_t* poll_ = nullptr;
  uv_timer_t* timer_ = nullptr;
  std::unique_ptr<Core> core_;
  bool destroyed_ = false, keep_alive_ = false, in_cleanup_ = false;
  bool fixed_buffers_ = false;  // io_uring: pin large registered buffers (guest RAM) as fixed buffers
  static constexpr size_t kFixedBufferMin = 1 << 20;

  std::unique_ptr<counters::Counters> own_counters_;  // when the caller passes none
  Napi::Reference<Napi::Value> counters_ref_, tags_ref_, results_ref_;
  uint32_t* ctags_ = nullptr;
  int32_t* cresults_ = nullptr;
  size_t ccap_ = 0;
  Napi::FunctionReference on_complete_;
  std::unique_ptr<Napi::AsyncContext> async_;

  Buffers buffers_;
  std::vector<Completion> delivering_;
};

}  // namespace spindle
