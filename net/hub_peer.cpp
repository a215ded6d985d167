#include "net/hub_peer.hpp"

namespace spiderhub::net {

namespace sr = protocol::signalr;

hub_peer::hub_peer(ws_ptr conn, std::size_t max_record_bytes)
  : conn_(std::move(conn)), splitter_(max_record_bytes) {}

std::vector<protocol::fast::raw_message> hub_peer::feed(const std::string& text) {
  std::vector<protocol::fast::raw_message> out;
  for (auto& record : splitter_.feed(text)) {
    if (!handshake_done_) {
      try {
        sr::parse_handshake_request(record);
      } catch (const core::input_error& e) {
        conn_->send_text(sr::handshake_response(e.what()));
        throw;
      }
      handshake_done_ = true;
      conn_->send_text(sr::handshake_response());
      for (auto& frame : held_)
        conn_->send_text(std::move(frame));
      held_.clear();
      continue;
    }
    auto msg = protocol::fast::parse_record(record);
    if (msg.type == 1) {
      out.push_back(std::move(msg));
    } else if (msg.type == 7) {
      client_closed_ = true;
      break;
    }
    // Pings need no answer; completions from clients answer nothing we sent with an id.
  }
  return out;
}

void hub_peer::send(std::string frame) {
  if (handshake_done_)
    conn_->send_text(std::move(frame));
  else
    held_.push_back(std::move(frame));
}

void hub_peer::complete(const std::string& invocation_id, nlohmann::json result) {
  send(sr::encode(sr::completion{invocation_id, std::move(result), std::nullopt}));
}

void hub_peer::complete_raw(const std::string& invocation_id, const std::string& result_json) {
  std::string frame;
  frame.reserve(result_json.size() + invocation_id.size() + 48);  // one copy of the result
  frame += "{\"type\":3,\"invocationId\":";
  protocol::fast::append_json_string(frame, invocation_id);
  frame += ",\"result\":";
  frame += result_json;
  frame += '}';
  frame += sr::record_separator;
  send(std::move(frame));
}

void hub_peer::fail(const std::string& invocation_id, const std::string& error) {
  send(sr::encode(sr::completion{invocation_id, std::nullopt, error}));
}

void hub_peer::invoke(const std::string& target, nlohmann::json arguments) {
  send(sr::encode(sr::invocation{std::nullopt, target, std::move(arguments)}));
}

void hub_peer::invoke_raw(const std::string& target, const std::string& arguments_json) {
  std::string frame;
  frame.reserve(arguments_json.size() + target.size() + 48);
  frame += "{\"type\":1,\"target\":";
  protocol::fast::append_json_string(frame, target);
  frame += ",\"arguments\":";
  frame += arguments_json;
  frame += '}';
  frame += sr::record_separator;
  send(std::move(frame));
}

void hub_peer::ping() {
  if (handshake_done_)
    conn_->send_text(sr::encode_ping());
}

void hub_peer::close(const std::string& reason) {
  conn_->send_text(sr::encode(sr::close_message{reason, false}));
  conn_->close(reason);
}

} // namespace spiderhub::net
