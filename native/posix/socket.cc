// Unix stream sockets with fd passing (SCM_RIGHTS) and peer credentials (SO_PEERCRED).
// All sockets are non-blocking and close-on-exec; recv/send never block the event loop.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <vector>
#include "spindle.h"

namespace spindle {

static constexpr int kMaxFds = 32;  // per message; vhost-user sends at most 8 (SET_MEM_TABLE)

static int FdArg(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || !info[i].IsNumber())
    throw Napi::TypeError::New(info.Env(), "fd must be a number");
  return info[i].As<Napi::Number>().Int32Value();
}

// Arguments (buffer: Uint8Array, offset, length) from index 1: the bytes they name, checked.
static iovec RangeArg(const Napi::CallbackInfo& info, const char* fn) {
  Napi::Uint8Array buf = info[1].As<Napi::Uint8Array>();
  size_t offset = info[2].As<Napi::Number>().Uint32Value();
  size_t length = info[3].As<Napi::Number>().Uint32Value();
  if (offset > buf.ByteLength() || length > buf.ByteLength() - offset)
    throw Napi::RangeError::New(info.Env(), std::string(fn) + ": range outside the buffer");
  return iovec{buf.Data() + offset, length};
}

static sockaddr_un UnixAddr(Napi::Env env, const std::string& path, socklen_t* len) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path)
    throw ErrnoError(env, ENAMETOOLONG, "socket path", path);
  std::memcpy(addr.sun_path, path.data(), path.size());
  *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
  return addr;
}

// listenUnix(path, backlog = 4) -> fd. The caller removes a stale socket file first.
static Napi::Value ListenUnix(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>().Utf8Value();
  int backlog = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : 4;
  socklen_t len;
  sockaddr_un addr = UnixAddr(env, path, &len);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw ErrnoError(env, errno, "socket");
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    int e = errno;
    close(fd);
    throw ErrnoError(env, e, "bind", path);
  }
  if (listen(fd, backlog) != 0) {
    int e = errno;
    close(fd);
    throw ErrnoError(env, e, "listen", path);
  }
  return Napi::Number::New(env, fd);
}

// acceptUnix(listenFd) -> fd, or -1 when no connection is pending.
static Napi::Value AcceptUnix(const Napi::CallbackInfo& info) {
  int lfd = FdArg(info, 0);
  int fd;
  do fd = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    if (errno == EAGAIN || errno == ECONNABORTED) return Napi::Number::New(info.Env(), -1);
    throw ErrnoError(info.Env(), errno, "accept4");
  }
  return Napi::Number::New(info.Env(), fd);
}

// connectUnix(path) -> fd (non-blocking after connecting).
static Napi::Value ConnectUnix(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>().Utf8Value();
  socklen_t len;
  sockaddr_un addr = UnixAddr(env, path, &len);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw ErrnoError(env, errno, "socket");
  int r;
  do r = connect(fd, reinterpret_cast<sockaddr*>(&addr), len);
  while (r != 0 && errno == EINTR);
  if (r != 0) {
    int e = errno;
    close(fd);
    throw ErrnoError(env, e, "connect", path);
  }
  return Napi::Number::New(env, fd);
}

// recvMsg(fd, buffer: Uint8Array, offset, length) -> { bytes, fds: number[] } or null when nothing
// is pending (EAGAIN). bytes 0 means the peer closed. Received fds are close-on-exec; if the
// kernel truncated the fd list, every received fd is closed and EMSGSIZE is thrown.
static Napi::Value RecvMsg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0);
  iovec iov = RangeArg(info, "recvMsg");
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN) return env.Null();
    throw ErrnoError(env, errno, "recvmsg");
  }
  std::vector<int> fds;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const int* p = reinterpret_cast<const int*>(CMSG_DATA(c));
    for (size_t i = 0; i < count; i++) {
      int rfd;
      std::memcpy(&rfd, p + i, sizeof rfd);
      fds.push_back(rfd);
    }
  }
  if (msg.msg_flags & MSG_CTRUNC) {
    for (int f : fds) close(f);
    throw ErrnoError(env, EMSGSIZE, "recvmsg (too many file descriptors in one message)");
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("bytes", Napi::Number::New(env, static_cast<double>(n)));
  Napi::Array arr = Napi::Array::New(env, fds.size());
  for (size_t i = 0; i < fds.size(); i++) arr.Set(static_cast<uint32_t>(i), Napi::Number::New(env, fds[i]));
  out.Set("fds", arr);
  return out;
}

// sendMsg(fd, buffer: Uint8Array, offset, length, fds?: number[]) -> bytes sent, or -1 when the
// socket buffer is full (EAGAIN). Fds ride with the first byte sent.
static Napi::Value SendMsg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0);
  iovec iov = RangeArg(info, "sendMsg");
  std::vector<int> fds;
  if (info.Length() > 4 && info[4].IsArray()) {
    Napi::Array arr = info[4].As<Napi::Array>();
    if (arr.Length() > kMaxFds) throw Napi::RangeError::New(env, "sendMsg: too many file descriptors");
    for (uint32_t i = 0; i < arr.Length(); i++) fds.push_back(arr.Get(i).As<Napi::Number>().Int32Value());
  }
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (!fds.empty()) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t n;
  do n = sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN) return Napi::Number::New(env, -1);
    throw ErrnoError(env, errno, "sendmsg");
  }
  return Napi::Number::New(env, static_cast<double>(n));
}

// peerCred(fd) -> { pid, uid, gid } of the process at the other end (as of connect()).
static Napi::Value PeerCred(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0);
  ucred cred{};
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
    throw ErrnoError(env, errno, "getsockopt(SO_PEERCRED)");
  Napi::Object out = Napi::Object::New(env);
  out.Set("pid", Napi::Number::New(env, cred.pid));
  out.Set("uid", Napi::Number::New(env, cred.uid));
  out.Set("gid", Napi::Number::New(env, cred.gid));
  return out;
}

// socketPair() -> [fd, fd]: a connected unix stream pair (tests and in-process peers).
static Napi::Value SocketPair(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
    throw ErrnoError(env, errno, "socketpair");
  Napi::Array arr = Napi::Array::New(env, 2);
  arr.Set(0u, Napi::Number::New(env, sv[0]));
  arr.Set(1u, Napi::Number::New(env, sv[1]));
  return arr;
}

void InitPosixSocket(Napi::Env env, Napi::Object exports) {
  exports.Set("listenUnix", Napi::Function::New(env, ListenUnix, "listenUnix"));
  exports.Set("acceptUnix", Napi::Function::New(env, AcceptUnix, "acceptUnix"));
  exports.Set("connectUnix", Napi::Function::New(env, ConnectUnix, "connectUnix"));
  exports.Set("recvMsg", Napi::Function::New(env, RecvMsg, "recvMsg"));
  exports.Set("sendMsg", Napi::Function::New(env, SendMsg, "sendMsg"));
  exports.Set("peerCred", Napi::Function::New(env, PeerCred, "peerCred"));
  exports.Set("socketPair", Napi::Function::New(env, SocketPair, "socketPair"));
}

}  // namespace spindle
