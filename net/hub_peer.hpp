#pragma once
// Server side of one SignalR hub connection: handshake, record splitting, ping,
// completions. Owned by a session actor; all calls come from that actor.
#include <optional>
#include <string>
#include <vector>

#include "net/http_server.hpp"
#include "protocol/fast_json.hpp"
#include "protocol/signalr.hpp"

namespace spiderhub::net {

class hub_peer {
 public:
  hub_peer(ws_ptr conn, std::size_t max_record_bytes);

  /// Feeds one WebSocket message; returns the invocations it carried, arguments as raw
  /// JSON text. Handles the handshake, pings and client close itself. Throws
  /// core::input_error on protocol violations (the caller closes with that reason).
  std::vector<protocol::fast::raw_message> feed(const std::string& text);

  void complete(const std::string& invocation_id, nlohmann::json result);
  /// Sends a completion whose result is already serialized JSON text.
  void complete_raw(const std::string& invocation_id, const std::string& result_json);
  void fail(const std::string& invocation_id, const std::string& error);
  void invoke(const std::string& target, nlohmann::json arguments);
  /// Same with the arguments already serialized as a JSON array.
  void invoke_raw(const std::string& target, const std::string& arguments_json);
  void ping();
  /// Sends a SignalR close message with the reason, then closes the socket.
  void close(const std::string& reason);

  bool handshake_done() const { return handshake_done_; }
  bool client_closed() const { return client_closed_; }
  const ws_ptr& connection() const { return conn_; }

 private:
  /// Sends a hub message now, or after the handshake when it is still pending (the
  /// client reads the first record as the handshake answer).
  void send(std::string frame);

  ws_ptr conn_;
  protocol::signalr::record_splitter splitter_;
  std::vector<std::string> held_;  // messages queued until the handshake is answered
  bool handshake_done_ = false;
  bool client_closed_ = false;
};

} // namespace spiderhub::net
