// WebSocket client transport (Boost.Beast behind a pimpl; no Boost in this header).
//
// One ws_client owns one io thread and at most one connection at a time.
// All handlers run on that io thread, never concurrently with each other.
// Reconnecting is the caller's job: call connect() again after on_closed
// (calling it from inside on_closed is fine).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace spiderhub::net {

struct ws_client_options {
  std::string url;  // ws://host:port/path?query or wss://...  (http/https accepted as aliases); [v6] hosts ok
  std::chrono::milliseconds connect_timeout{10000};  // resolve + TCP + TLS + WS handshake (and close handshake)
  std::chrono::milliseconds idle_timeout{60000};     // nothing received for this long -> closed; pings at half; 0 = off
  std::size_t max_message_bytes = 64 << 20;          // larger incoming message -> closed ("message too large")
  bool tls_verify = true;
  std::string tls_ca_file;  // for wss; empty = system default verify paths
  std::vector<std::pair<std::string, std::string>> headers;  // extra handshake request headers (e.g. Authorization)
};

struct ws_client_handlers {
  std::function<void()> on_open;
  std::function<void(std::string text)> on_message;  // one complete message (text or binary)
  // Exactly once per connect() attempt that fails or per open connection that
  // ends; includes the HTTP status for refused upgrades, e.g.
  // "upgrade refused: HTTP 401: {body}". Not called from ~ws_client.
  std::function<void(std::string reason)> on_closed;
};

class ws_client {
 public:
  ws_client(ws_client_options opts, ws_client_handlers h);
  ~ws_client();  // closes (best effort close frame, bounded wait), joins; handlers are not called any more
  ws_client(const ws_client&) = delete;
  ws_client& operator=(const ws_client&) = delete;

  // Async. Ignored while a connection attempt or connection is active.
  // A malformed URL is reported through on_closed ("invalid url: ...").
  void connect();
  void send_text(std::string frame);  // thread-safe, queued, ordered; dropped if not open
  void close();                       // thread-safe; flushes queued writes, then close handshake; aborts a pending connect
  bool is_open() const;
  std::size_t queued_bytes() const;   // bytes waiting in the write queue

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace spiderhub::net
