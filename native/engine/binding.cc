#include "binding.h"
#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <cstring>
#include <stdexcept>
#include <string>
#include <system_error>
#include "clock.h"
#include "spindle.h"

namespace spindle {

namespace c = counters;

// Data pointer and length of an ArrayBuffer, SharedArrayBuffer or typed array / DataView.
static bool MemoryOf(Napi::Value v, uint8_t** data, size_t* len) {
  if (v.IsTypedArray()) {
    auto ta = v.As<Napi::TypedArray>();
    napi_typedarray_type type;
    size_t length, byte_offset;
    void* ptr;
    napi_value ab;
    if (napi_get_typedarray_info(v.Env(), ta, &type, &length, &ptr, &ab, &byte_offset) != napi_ok)
      return false;
    *data = static_cast<uint8_t*>(ptr);
    *len = ta.ByteLength();
    return true;
  }
  if (v.IsArrayBuffer()) {
    auto ab = v.As<Napi::ArrayBuffer>();
    *data = static_cast<uint8_t*>(ab.Data());
    *len = ab.ByteLength();
    return true;
  }
  return false;
}

static Napi::Error EngineError(Napi::Env env, int err, const std::string& msg) {
  Napi::Error e = ErrnoError(env, err, "engine");
  e.Set("message", Napi::String::New(env, msg));
  return e;
}

Napi::Function Engine::Define(Napi::Env env) {
  const std::initializer_list<PropertyDescriptor> properties = {
      InstanceMethod<&Engine::Submit>("submit"),
      InstanceMethod<&Engine::RegisterBuffer>("registerBuffer"),
      InstanceMethod<&Engine::UnregisterBuffer>("unregisterBuffer"),
      InstanceMethod<&Engine::SetNowait>("setNowait"),
      InstanceMethod<&Engine::Destroy>("destroy"),
      InstanceAccessor<&Engine::GetInFlight>("inFlight"),
      InstanceAccessor<&Engine::GetKind>("kind"),
      InstanceAccessor<&Engine::GetBounceStats>("bounceStats"),
      InstanceAccessor<&Engine::GetFeatures>("features"),
  };
  return DefineClass(env, "Engine", properties);
}

Engine::Engine(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Engine>(info), env_(info.Env()) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) throw Napi::TypeError::New(env, "Engine: options object expected");
  Napi::Object o = info[0].As<Napi::Object>();
  auto num = [&](const char* k, double d) {
    Napi::Value v = o.Get(k);
    return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : d;
  };
  auto flag = [&](const char* k) {
    Napi::Value v = o.Get(k);
    return v.IsBoolean() && v.As<Napi::Boolean>().Value();
  };

  CoreOptions co;
  kind_ = o.Get("kind").IsString() ? o.Get("kind").As<Napi::String>().Utf8Value() : "";
  if (kind_ == "threads") co.kind = Kind::kThreads;
  else if (kind_ == "native") co.kind = Kind::kLinuxAio;
  else if (kind_ == "io_uring") co.kind = Kind::kIoUring;
  else throw Napi::TypeError::New(env, "Engine: kind must be 'threads', 'native' or 'io_uring'");
  Target& t = co.target;
  t.fd = static_cast<int>(num("fd", -1));
  t.is_block = flag("isBlock");
  t.alignment = static_cast<uint32_t>(num("alignment", 512));
  if (t.alignment < 512 || (t.alignment & (t.alignment - 1)))
    throw Napi::RangeError::New(env, "Engine: alignment must be a power of two >= 512");
  int fl = fcntl(t.fd, F_GETFL);
  if (fl < 0) throw ErrnoError(env, errno, "fcntl(F_GETFL)");
  t.direct = (fl & O_DIRECT) != 0;
  co.dsync = (fl & O_DSYNC) == O_DSYNC;
  if (co.kind == Kind::kLinuxAio && !t.direct)
    throw EngineError(env, EINVAL,
                      "aio 'native' needs a file opened with O_DIRECT (cache 'none' or 'directsync'): Linux "
                      "AIO is only asynchronous with O_DIRECT");
  co.read_only = flag("readOnly") || (fl & O_ACCMODE) == O_RDONLY;
  co.flush_noop = flag("flushNoop");
  co.nowait_read = flag("nowaitRead") && co.kind != Kind::kThreads;
  co.nowait_write = flag("nowaitWrite") && co.kind != Kind::kThreads;
  // The page-cache fast path (core.h): on by default for the threads engine on a page-cache fd.
  Napi::Value fp = o.Get("fastPath");
  const bool fast_path = co.kind == Kind::kThreads && !(fp.IsBoolean() && !fp.As<Napi::Boolean>().Value());
  co.inline_read = co.inline_write = fast_path;
  // io_uring: where the setup fallback starts ('defer', 'coop', 'plain'; tests and comparisons).
  // coop by default: under defer-taskrun a served disk lost completions for good (uring_setup.h).
  std::string setup =
      o.Get("uringSetup").IsString() ? o.Get("uringSetup").As<Napi::String>().Utf8Value() : "";
  co.uring_first_setup = setup == "defer" ? 0 : setup == "plain" ? 2 : 1;
  fixed_buffers_ = flag("fixedBuffers") && co.kind == Kind::kIoUring;
  co.extent_map = flag("extentMap") && co.kind == Kind::kLinuxAio && !t.is_block;
  co.alloc_chunk = static_cast<uint64_t>(num("allocChunk", 1 << 20));
  if (co.alloc_chunk < 4096 || co.alloc_chunk > (1ull << 30) || (co.alloc_chunk & (co.alloc_chunk - 1)))
    throw Napi::RangeError::New(env, "Engine: allocChunk must be a power of two from 4 KiB to 1 GiB");
  co.queue_depth = static_cast<int>(num("queueDepth", 128));
  co.max_workers = static_cast<int>(num("maxWorkers", 64));
  co.idle_ms = static_cast<int>(num("idleMs", 5000));
  if (co.queue_depth < 1 || co.queue_depth > 65536)
    throw Napi::RangeError::New(env, "Engine: queueDepth must be 1..65536");
  if (co.max_workers < 1 || co.max_workers > 1024)
    throw Napi::RangeError::New(env, "Engine: maxWorkers must be 1..1024");

  c::Counters* counters;
  Napi::Value cv = o.Get("counters");
  if (cv.IsTypedArray() && cv.As<Napi::TypedArray>().TypedArrayType() == napi_float64_array) {
    uint8_t* d;
    size_t len;
    if (!MemoryOf(cv, &d, &len) || len < sizeof(c::Counters))
      throw Napi::RangeError::New(env, "Engine: counters array too small");
    counters = reinterpret_cast<c::Counters*>(d);
    counters_ref_ = Napi::Persistent(cv);
  } else {
    own_counters_ = std::make_unique<c::Counters>();
    counters = own_counters_.get();
  }

  Napi::Value tv = o.Get("tags"), rv = o.Get("results"), fn = o.Get("onComplete");
  if (!tv.IsTypedArray() || tv.As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array ||
      !rv.IsTypedArray() || rv.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array ||
      !fn.IsFunction())
    throw Napi::TypeError::New(
        env, "Engine: tags (Uint32Array), results (Int32Array) and onComplete (function) are required");
  ctags_ = tv.As<Napi::Uint32Array>().Data();
  cresults_ = rv.As<Napi::Int32Array>().Data();
  ccap_ = std::min(tv.As<Napi::Uint32Array>().ElementLength(), rv.As<Napi::Int32Array>().ElementLength());
  if (ccap_ == 0) throw Napi::RangeError::New(env, "Engine: completion arrays are empty");
  tags_ref_ = Napi::Persistent(tv);
  results_ref_ = Napi::Persistent(rv);
  on_complete_ = Napi::Persistent(fn.As<Napi::Function>());
  async_ = std::make_unique<Napi::AsyncContext>(env, "spindle:engine");

  efd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (efd_ < 0) throw ErrnoError(env, errno, "eventfd");
  try {
    core_ = std::make_unique<Core>(co, efd_, counters);
  } catch (const std::system_error& e) {
    close(efd_);
    efd_ = -1;
    throw ErrnoError(env, e.code().value(), e.what());
  }

  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  poll_ = new uv_poll_t;
  uv_poll_init(loop, poll_, efd_);
  poll_->data = this;
  uv_poll_start(poll_, UV_READABLE, [](uv_poll_t* h, int status, int) {
    if (status >= 0) static_cast<Engine*>(h->data)->OnReadable();
  });
  uv_unref(reinterpret_cast<uv_handle_t*>(poll_));  // idle engines do not keep the process alive
  timer_ = new uv_timer_t;
  uv_timer_init(loop, timer_);
  timer_->data = this;
  uv_unref(reinterpret_cast<uv_handle_t*>(timer_));
  napi_add_env_cleanup_hook(env, CleanupHook, this);
}

Engine::~Engine() {
  if (!destroyed_) Release();
  if (!in_cleanup_) napi_remove_env_cleanup_hook(env_, CleanupHook, this);
}

// The thread's environment is going away (worker exit) with the engine still open:
// wait for the kernel and the pool before anything they write into is freed.
void Engine::CleanupHook(void* arg) {
  Engine* self = static_cast<Engine*>(arg);
  self->in_cleanup_ = true;
  if (!self->destroyed_) self->Release();
}

Napi::Value Engine::Submit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (destroyed_) throw EngineError(env, EBADF, "engine is closed");
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
      !info[1].IsNumber())
    throw Napi::TypeError::New(env, "submit(queue: Float64Array, count)");
  auto sq = info[0].As<Napi::Float64Array>();
  const double* w = sq.Data();
  const size_t n = sq.ElementLength();
  const double count_d = info[1].As<Napi::Number>().DoubleValue();
  if (!batch::WholeBelow(count_d, batch::k2p32))
    throw Napi::RangeError::New(env, "submit: the request count must be a whole number from 0 to 2^32-1");
  const uint32_t count = static_cast<uint32_t>(count_d);
  std::string framing = batch::CheckFraming(w, n, count);
  if (!framing.empty()) throw Napi::RangeError::New(env, framing);
  auto find = [this](uint32_t id) { return buffers_.Find(id); };
  const uint64_t now = MonoNs();
  size_t p = 0;
  for (uint32_t i = 0; i < count; i++) {
    Req* r = core_->Alloc();
    r->start_ns = now;
    const int64_t err = batch::DecodeRequest(w, p, r, find);  // anything wrong fails just this request
    if (core_->in_flight() == 0 && !keep_alive_) {
      // Keep the JS object (and the memory it references) alive while the kernel may write to it.
      Ref();
      keep_alive_ = true;
      uv_ref(reinterpret_cast<uv_handle_t*>(poll_));
    }
    core_->Start(r, err);
  }
  core_->EndBatch(now);
  RetryWhenStuck();
  return env.Undefined();
}

// The kernel refused with EAGAIN and nothing in flight will wake us: try again shortly.
void Engine::RetryWhenStuck() {
  if (!core_->Stuck() || uv_is_active(reinterpret_cast<uv_handle_t*>(timer_))) return;
  uv_timer_start(
      timer_,
      [](uv_timer_t* t) {
        Engine* self = static_cast<Engine*>(t->data);
        self->core_->FlushBackend();
        self->RetryWhenStuck();
      },
      1, 0);
}

void Engine::OnReadable() {
  if (destroyed_) return;
  core_->OnWake();
  RetryWhenStuck();
  Deliver();
}

void Engine::Deliver() {
  core_->UpdateGauges();
  if (core_->in_flight() == 0) buffers_.Drained();
  core_->TakeCompleted(delivering_);
  if (delivering_.empty()) return;
  bool release = core_->in_flight() == 0 && keep_alive_;
  if (release) {
    keep_alive_ = false;
    uv_unref(reinterpret_cast<uv_handle_t*>(poll_));
  }
  Napi::Env env = env_;
  Napi::HandleScope scope(env);
  for (size_t i = 0; i < delivering_.size() && !in_cleanup_;) {
    size_t k = std::min(ccap_, delivering_.size() - i);
    for (size_t j = 0; j < k; j++) {
      ctags_[j] = delivering_[i + j].tag;
      cresults_[j] = delivering_[i + j].result;
    }
    i += k;
    napi_value count = Napi::Number::New(env, double(k));
    // False: the worker's environment is being torn down; the cleanup hook drains what is left.
    if (!CallFromLoop(env, *async_, Value(), on_complete_.Value(), 1, &count)) break;
  }
  delivering_.clear();
  if (release) Unref();  // last: the object may be collected after this
}

// Waits for everything in flight (the kernel and the pool may still write into registered
// memory), then releases the backend, the pool, the uv handles and the eventfd.
void Engine::Release() {
  core_->Drain();
  destroyed_ = true;
  core_->Shutdown(!in_cleanup_);
  if (poll_) {
    uv_poll_stop(poll_);
    uv_close(reinterpret_cast<uv_handle_t*>(poll_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    poll_ = nullptr;
  }
  if (timer_) {
    uv_timer_stop(timer_);
    uv_close(reinterpret_cast<uv_handle_t*>(timer_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    timer_ = nullptr;
  }
  if (efd_ >= 0) close(efd_);
  efd_ = -1;
  if (!in_cleanup_) buffers_.Clear();
  if (keep_alive_ && !in_cleanup_) {
    keep_alive_ = false;
    Unref();
  }
}

Napi::Value Engine::RegisterBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (destroyed_) throw EngineError(env, EBADF, "engine is closed");
  uint32_t id = info[0].As<Napi::Number>().Uint32Value();
  batch::Span span;
  if (!MemoryOf(info[1], &span.data, &span.length))
    throw Napi::TypeError::New(env, "registerBuffer(id, ArrayBuffer | TypedArray)");
  if (!buffers_.Add(id, span, info[1]))
    throw Napi::Error::New(env, "registerBuffer: id " + std::to_string(id) + " is already registered");
  // Guest RAM regions (large, registered once per memory table) are pinned as io_uring fixed
  // buffers when asked; the promise API's small per-call buffers never are.
  if (fixed_buffers_ && span.length >= kFixedBufferMin) core_->RegisterMemory(span.data, span.length);
  return env.Undefined();
}

Napi::Value Engine::UnregisterBuffer(const Napi::CallbackInfo& info) {
  uint32_t id = info[0].As<Napi::Number>().Uint32Value();
  if (const batch::Span* span = buffers_.Find(id); span && fixed_buffers_)
    core_->UnregisterMemory(span->data);
  buffers_.Remove(id, core_->in_flight() != 0);
  return info.Env().Undefined();
}

Napi::Value Engine::SetNowait(const Napi::CallbackInfo& info) {
  bool supported = kind_ != "threads";
  core_->SetNowait(supported && info[0].ToBoolean().Value(), supported && info[1].ToBoolean().Value());
  return Napi::Boolean::New(info.Env(), supported);
}

Napi::Value Engine::Destroy(const Napi::CallbackInfo& info) {
  if (!destroyed_) Release();
  return info.Env().Undefined();
}

Napi::Value Engine::GetInFlight(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), double(core_->in_flight()));
}
Napi::Value Engine::GetKind(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), kind_); }
Napi::Value Engine::GetFeatures(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), core_ ? core_->features() : "");
}

// How often a bounced request had to allocate memory, and how often it reused a pooled buffer.
Napi::Value Engine::GetBounceStats(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("allocations", double(core_->bounce().allocations()));
  o.Set("reuses", double(core_->bounce().reuses()));
  return o;
}

// The counters' layout (counters.h) as JS sees it, checked against electron/dataplane/block/stats.ts by
// tests/native/counters-layout.test.ts.
static Napi::Object CountersLayout(Napi::Env env) {
  Napi::Object layout = Napi::Object::New(env);
  layout.Set("version", c::kCountersVersion);
  layout.Set("slots", double(c::kSlots));
  layout.Set("directions", c::kDirections);
  layout.Set("buckets", c::kBuckets);
  Napi::Object fields = Napi::Object::New(env);
  for (const c::Field& f : c::kFields)
    if (f.name) fields.Set(f.name, double(f.slot));
  layout.Set("fields", fields);
  return layout;
}

void InitEngine(Napi::Env env, Napi::Object exports) {
  exports.Set("Engine", Engine::Define(env));
  exports.Set("engineCountersLayout", CountersLayout(env));
}

}  // namespace spindle
