// SignalR framing: records as the hub peers read them (fast path and DOM path), the
// handshake, and re-encoding of what parsed.
#include <exception>

#include "common.hpp"
#include "protocol/fast_json.hpp"
#include "protocol/signalr.hpp"

using namespace spiderhub;
using spiderhub::fuzz::require;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto s = fuzz::text(data, size);
  // The stream splitter, fed in two pieces, must give the same records as in one.
  try {
    protocol::signalr::record_splitter whole(4096), pieces(4096);
    auto a = whole.feed(s);
    auto cut = size ? data[0] % (size + 1) : 0;
    auto b = pieces.feed(s.substr(0, cut));
    auto rest = pieces.feed(s.substr(cut));
    b.insert(b.end(), rest.begin(), rest.end());
    require(a == b && whole.pending_bytes() == pieces.pending_bytes(), "split invariance");
  } catch (const std::exception&) {
  }
  try {
    protocol::signalr::parse_handshake_request(s);
  } catch (const std::exception&) {
  }
  try {
    protocol::signalr::parse_handshake_response(s);
  } catch (const std::exception&) {
  }
  try {
    protocol::fast::parse_record(s);
  } catch (const std::exception&) {
  }
  try {
    auto m = protocol::signalr::parse_message(s);
    // An invocation that parsed must survive encode -> parse unchanged.
    if (auto* inv = std::get_if<protocol::signalr::invocation>(&m)) {
      auto record = protocol::signalr::encode(*inv);
      require(!record.empty() && record.back() == protocol::signalr::record_separator,
              "encoded record ends with 0x1E");
      record.pop_back();
      auto again = protocol::signalr::parse_message(record);
      auto* inv2 = std::get_if<protocol::signalr::invocation>(&again);
      require(inv2 && inv2->target == inv->target && inv2->arguments == inv->arguments &&
                inv2->invocation_id == inv->invocation_id,
              "invocation round trip");
    }
  } catch (const std::exception&) {
  }
  return 0;
}
