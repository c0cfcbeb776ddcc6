// The memory JS registered with an engine, by id: what the segments of a submission point into
// (batch.h). A buffer's JS object is held while it is registered; one unregistered while I/O is
// in flight stays, unusable, until the engine has drained, since the kernel may still be writing
// into it. Owning thread only.
#pragma once
#include <napi.h>
#include <cstdint>
#include <unordered_map>
#include "batch.h"

namespace spindle {

class Buffers {
 public:
  // False when `id` is registered already.
  bool Add(uint32_t id, batch::Span span, Napi::Value owner) {
    auto it = map_.find(id);
    if (it != map_.end() && !it->second.dead) return false;
    Entry& e = map_[id];
    e.span = span;
    e.owner = Napi::Persistent(owner);
    e.dead = false;
    return true;
  }

  // Forgets `id` now, or once the engine has drained when I/O is `in_flight`.
  void Remove(uint32_t id, bool in_flight) {
    auto it = map_.find(id);
    if (it == map_.end()) return;
    if (!in_flight) {
      map_.erase(it);
      return;
    }
    it->second.dead = true;
    have_dead_ = true;
  }

  // The memory of a registered buffer, or nullptr.
  const batch::Span* Find(uint32_t id) const {
    auto it = map_.find(id);
    return it == map_.end() || it->second.dead ? nullptr : &it->second.span;
  }

  // Nothing in flight: releases the buffers removed meanwhile.
  void Drained() {
    if (!have_dead_) return;
    for (auto it = map_.begin(); it != map_.end();) {
      if (it->second.dead) it = map_.erase(it);
      else ++it;
    }
    have_dead_ = false;
  }

  void Clear() { map_.clear(); }

 private:
  struct Entry {
    batch::Span span;
    Napi::Reference<Napi::Value> owner;
    bool dead = false;
  };
  std::unordered_map<uint32_t, Entry> map_;
  bool have_dead_ = false;
};

}  // namespace spindle
