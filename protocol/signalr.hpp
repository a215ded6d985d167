#pragma once
// SignalR JSON hub protocol: 0x1E-terminated JSON records, handshake, and the hub
// message kinds spiderhub uses (1 invocation, 3 completion, 6 ping, 7 close).
#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/error.hpp"

namespace spiderhub::protocol::signalr {

using json = nlohmann::json;

constexpr char record_separator = '\x1e';

/// Splits a byte stream into 0x1E-terminated records; keeps a partial record
/// across feeds and refuses one larger than max_record_bytes.
class record_splitter {
 public:
  explicit record_splitter(std::size_t max_record_bytes) : max_(max_record_bytes) {}
  /// Appends bytes; returns the complete records. Throws input_error when a record
  /// (complete or still partial) exceeds the limit.
  std::vector<std::string> feed(std::string_view bytes);
  std::size_t pending_bytes() const { return partial_.size(); }

 private:
  std::size_t max_;
  std::string partial_;
};

struct invocation {
  std::optional<std::string> invocation_id; // absent: the caller wants no completion
  std::string target;
  json arguments = json::array();
};
struct completion {
  std::string invocation_id;
  std::optional<json> result;               // set on success with a value
  std::optional<std::string> error;         // set on failure
};
struct ping {};
struct close_message {
  std::optional<std::string> error;
  bool allow_reconnect = false;
};
using hub_message = std::variant<invocation, completion, ping, close_message>;

/// Parses the client's handshake request; throws input_error unless it asks for json v1.
void parse_handshake_request(std::string_view record);
/// Parses the server's handshake response; returns its error text, empty when accepted.
std::string parse_handshake_response(std::string_view record);
std::string handshake_request();                       // {"protocol":"json","version":1}<RS>
std::string handshake_response(const std::string& error = {}); // {}<RS> or {"error":..}<RS>

/// Parses one record (without the separator). Unknown message types we don't
/// implement (2 stream item, 4 stream invocation, 5 cancel) throw input_error.
hub_message parse_message(std::string_view record);

/// Encoders return a complete record including the trailing 0x1E.
std::string encode(const invocation& m);
std::string encode(const completion& m);
std::string encode_ping();
std::string encode(const close_message& m);

} // namespace spiderhub::protocol::signalr
