// HTTP + WebSocket server transport (Boost.Beast behind a pimpl).
//
// This header is deliberately free of Boost includes so that the rest of the
// project compiles fast; Beast lives only in net/http_server.cpp and
// net/ws_client.cpp.
//
// Threading model
//   * All I/O of one connection runs on that connection's strand, on one of
//     `server_options::io_threads` threads owned by the server.
//   * Callbacks (on_http, on_upgrade, on_ws_open, ws_handlers::on_message,
//     ws_handlers::on_closed) run on the connection's strand: calls for one
//     connection never overlap, calls for different connections may run in
//     parallel when io_threads > 1. Callbacks must not block.
//   * http_responder::reply and all ws_connection methods are thread-safe.
//   * A ws_ptr / responder held after the connection (or the server) is gone
//     is harmless: its methods become no-ops. Do not call them concurrently
//     with the destruction of the http_server itself.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace spiderhub::net {

struct http_request {
  std::string method;                          // "GET", "POST", ...
  std::string target;                          // raw target, path + query
  std::string path;                            // percent-decoded path without query
  std::map<std::string, std::string> query;    // percent-decoded ('+' = space); first occurrence wins
  std::map<std::string, std::string> headers;  // lower-case names; repeated headers joined with ", "
  std::string body;
  std::string remote_ip;

  // Header value by lower-case name, or `fallback`.
  std::string header(const std::string& lower_name, std::string fallback = {}) const;
  // Query parameter value, or `fallback`.
  std::string param(const std::string& name, std::string fallback = {}) const;
};

struct http_response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers
};

// Builds `{"error":{"code":"<code>","message":"<message>"}}` with the given status.
http_response make_json_error(int status, std::string_view code, std::string_view message);

// Percent-decoding. Malformed escapes ("%", "%4", "%zz") are kept literally.
std::string percent_decode(std::string_view s, bool plus_as_space);
// Parses "a=1&b=x+y&c" (no leading '?'); keys and values are percent-decoded
// with '+' as space; a key without '=' gets an empty value; first occurrence wins.
std::map<std::string, std::string> parse_query(std::string_view query);
// JSON string escaping (without the surrounding quotes).
std::string json_escape(std::string_view s);

class http_responder {  // one pending HTTP response
 public:
  virtual ~http_responder() = default;
  // Thread-safe, callable from any thread, exactly once; later calls are ignored.
  // A responder destroyed without reply() answers 500 {"error":{"code":"no_response",...}}.
  virtual void reply(http_response r) = 0;
};

class ws_connection {  // handle to one upgraded WebSocket connection
 public:
  virtual ~ws_connection() = default;
  // Thread-safe; queued in one write queue per connection; written in order.
  // Dropped once the connection is closing/closed. If the queue grows over
  // server_options::max_write_queue_bytes the connection is dropped.
  virtual void send_text(std::string frame) = 0;
  // Thread-safe; flushes queued writes, then performs the WebSocket close
  // handshake (code 1000, `reason`). on_closed receives `reason` (or "closed").
  virtual void close(std::string reason) = 0;
  virtual std::uint64_t id() const = 0;  // unique per server
  virtual const http_request& upgrade_request() const = 0;
  virtual std::size_t queued_bytes() const = 0;  // bytes waiting in the write queue
};
using ws_ptr = std::shared_ptr<ws_connection>;

struct ws_handlers {
  std::function<void(std::string text)> on_message;   // one complete WebSocket message (text or binary)
  std::function<void(std::string reason)> on_closed;  // called exactly once when the connection ends for any reason
};

struct server_options {
  std::string address = "0.0.0.0";
  std::uint16_t port = 0;                    // 0 = pick a free port
  int io_threads = 1;
  std::size_t max_body_bytes = 8 << 20;      // HTTP request body limit -> 413
  std::size_t max_header_bytes = 64 << 10;   // HTTP request header limit -> 431
  std::size_t max_message_bytes = 16 << 20;  // WebSocket message limit -> connection closed ("message too large")
  std::chrono::milliseconds handshake_timeout{10000};  // TLS + HTTP header read + WS handshake/close handshake
  std::chrono::milliseconds idle_timeout{60000};       // no bytes received for this long -> close (WS: pings at half of it)
  std::size_t max_connections = 20000;       // over it: HTTP 503 and close
  std::size_t max_write_queue_bytes = 64 << 20;  // a slow reader over this is disconnected
  std::chrono::milliseconds stop_grace{2000};    // stop(): time for graceful closes before sockets are cut
  std::string tls_cert_file, tls_key_file;   // both set -> HTTPS/WSS only (PEM; cert file may hold a chain)
};

struct server_callbacks {
  // Plain HTTP requests (any method, including HEAD: the body is then dropped,
  // Content-Length kept). If unset, every request gets 404.
  std::function<void(http_request, std::shared_ptr<http_responder>)> on_http;
  // Called for a WebSocket upgrade request before accepting it; return a
  // response to refuse (e.g. 401/404), nullopt to accept. If unset: accept.
  std::function<std::optional<http_response>(const http_request&)> on_upgrade;
  // Called once the WebSocket handshake is done; returns the handlers for that
  // connection. If unset, upgrade requests are refused with 404.
  std::function<ws_handlers(ws_ptr)> on_ws_open;
  // Optional diagnostics (accept errors, handler exceptions). May be called from io threads.
  std::function<void(const std::string&)> on_log;
};

class http_server {
 public:
  http_server(server_options opts, server_callbacks cbs);
  ~http_server();  // stops
  http_server(const http_server&) = delete;
  http_server& operator=(const http_server&) = delete;

  // Binds + listens + starts io threads; returns the bound port. Throws
  // std::runtime_error with a clear message if TLS setup, address parsing or
  // bind/listen fails, or if called twice.
  std::uint16_t start();
  // Closes the listener and all connections (WebSockets get a close frame
  // "server stopped" within stop_grace, then sockets are cut), calls on_closed
  // for each open WebSocket, joins the io threads. Idempotent; no restart.
  void stop();
  std::uint16_t port() const;
  std::size_t connection_count() const;  // admitted, not yet closed connections (HTTP + WS)
  bool tls() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace spiderhub::net
