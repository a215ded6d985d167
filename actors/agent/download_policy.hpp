#pragma once
// What the node's downloader decides from a transfer's outcome: whether to try again, hand
// the request back to the broker, or report it, and under which error kind
// (protocol::error_kinds). Pure code over libcurl's result codes; no CAF, no I/O.
#include <curl/curl.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>

namespace spiderhub::actors {

/// Network failures worth another attempt on this node (resets, timeouts, refused).
bool retryable(CURLcode rc);
/// 5xx but 503: tried again on this node.
bool retryable_status(long status);
/// 429 and 503 ask the client to slow down: the broker pauses the whole host for every
/// node, so the node hands these back instead of retrying them itself.
bool throttling_status(long status);

/// The error kind of a failed transfer (dns, connect, tls, timeout, too_large, network).
const char* error_kind_of(CURLcode rc);
/// http_4xx / http_5xx for error statuses, "" below 400.
const char* error_kind_of_status(long status);

/// The body limit of one block: the node's own download.max_body_bytes, lowered to the
/// run's (Site.maxBodyBytes, set by the broker) when that is smaller; 0 = unset.
std::int64_t block_max_body(std::int64_t node_max, std::int64_t site_max);

/// What a resolved address is, for the SSRF guard.
enum class address_kind {
  global,      // anything else: downloads go there
  internal,    // loopback, private (RFC 1918), shared (100.64/10), "this network" (0/8),
               // IPv6 loopback, unspecified and unique-local (fc00::/7), IPv4-mapped forms
  link_local,  // IPv4 169.254/16 (cloud metadata services answer there), IPv6 fe80::/10,
               // the IPv6 metadata address fd00:ec2::254
};
address_kind classify_address(const struct sockaddr* addr);

/// Whether a download may not connect to `addr`: link-local and metadata addresses never,
/// internal ones unless the node's config (download.allow_private_addresses) or the run
/// (job property AllowPrivateAddresses) allows them.
bool blocked_address(const struct sockaddr* addr, bool allow_internal = false);

/// "body of 20971520 bytes is over the limit of 10485760" (size < 0: not known).
std::string too_large_error(std::int64_t size, std::int64_t limit);

} // namespace spiderhub::actors
