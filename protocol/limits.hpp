#pragma once
// Size bounds of what travels on the hubs, shared by the broker's config check, the
// dispatcher and the node. A body of n bytes travels as JSON text or as base64, whichever
// is smaller once it is large (set_result_body), so it never takes more than base64(n).
#include <cstdint>

namespace spiderhub::protocol {

/// Room for everything of a result but its body: URL, final URL, headers (the node keeps
/// 8 KiB of them), error text and the numeric fields, with a wide margin.
inline constexpr std::int64_t result_overhead_bytes = 1 << 20;

/// Bytes of the base64 text of n bytes.
constexpr std::int64_t base64_bytes(std::int64_t n) { return (n + 2) / 3 * 4; }

/// The most a result whose body has at most `max_body` bytes takes on the wire; one such
/// result alone must fit in a hub message (http.max_message_bytes).
constexpr std::int64_t result_wire_bytes(std::int64_t max_body) {
  return base64_bytes(max_body) + result_overhead_bytes;
}

} // namespace spiderhub::protocol
