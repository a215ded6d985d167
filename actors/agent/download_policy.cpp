#include "actors/agent/download_policy.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>

namespace spiderhub::actors {

bool retryable(CURLcode rc) {
  switch (rc) {
  case CURLE_COULDNT_RESOLVE_PROXY:
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_CONNECT:
  case CURLE_PARTIAL_FILE:
  case CURLE_OPERATION_TIMEDOUT:
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_GOT_NOTHING:
  case CURLE_SEND_ERROR:
  case CURLE_RECV_ERROR:
  case CURLE_HTTP2:
  case CURLE_HTTP2_STREAM:
  case CURLE_HTTP3:
  case CURLE_QUIC_CONNECT_ERROR:
    return true;
  default:
    return false;
  }
}

bool retryable_status(long status) { return status >= 500 && status <= 599 && status != 503; }

bool throttling_status(long status) { return status == 429 || status == 503; }

const char* error_kind_of(CURLcode rc) {
  switch (rc) {
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_RESOLVE_PROXY:
    return "dns";
  case CURLE_COULDNT_CONNECT:
    return "connect";
  case CURLE_OPERATION_TIMEDOUT:
    return "timeout";
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_CERTPROBLEM:
  case CURLE_SSL_CIPHER:
  case CURLE_SSL_CACERT_BADFILE:
  case CURLE_SSL_ISSUER_ERROR:
  case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
  case CURLE_SSL_INVALIDCERTSTATUS:
  case CURLE_SSL_CRL_BADFILE:
  case CURLE_SSL_SHUTDOWN_FAILED:
  case CURLE_SSL_ENGINE_NOTFOUND:
  case CURLE_SSL_ENGINE_SETFAILED:
  case CURLE_SSL_ENGINE_INITFAILED:
  case CURLE_USE_SSL_FAILED:
    return "tls";
  case CURLE_FILESIZE_EXCEEDED:
    return "too_large";
  case CURLE_TOO_MANY_REDIRECTS:
    return "redirect_loop";
  default:
    return "network";
  }
}

const char* error_kind_of_status(long status) {
  if (status >= 500)
    return "http_5xx";
  if (status >= 400)
    return "http_4xx";
  return "";
}

std::int64_t block_max_body(std::int64_t node_max, std::int64_t site_max) {
  return site_max > 0 && site_max < node_max ? site_max : node_max;
}

namespace {
address_kind classify_v4(std::uint32_t ip) {
  auto in = [ip](std::uint32_t net, int bits) { return (ip >> (32 - bits)) == (net >> (32 - bits)); };
  if (in(0xA9FE0000u, 16))  // 169.254.0.0/16
    return address_kind::link_local;
  if (in(0x7F000000u, 8) || in(0x0A000000u, 8) || in(0xAC100000u, 12) ||
      in(0xC0A80000u, 16) || in(0x64400000u, 10) || in(0x00000000u, 8))
    return address_kind::internal;
  return address_kind::global;
}
} // namespace

address_kind classify_address(const struct sockaddr* addr) {
  if (!addr)
    return address_kind::global;
  if (addr->sa_family == AF_INET)
    return classify_v4(ntohl(reinterpret_cast<const sockaddr_in*>(addr)->sin_addr.s_addr));
  if (addr->sa_family != AF_INET6)
    return address_kind::global;
  const auto* b = reinterpret_cast<const sockaddr_in6*>(addr)->sin6_addr.s6_addr;
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)
    return address_kind::link_local;  // fe80::/10
  static constexpr unsigned char metadata[16] = {0xfd, 0x00, 0x0e, 0xc2, 0, 0, 0, 0,
                                                 0,    0,    0,    0,    0, 0, 0x02, 0x54};
  if (std::equal(b, b + 16, metadata))
    return address_kind::link_local;
  static constexpr unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::equal(b, b + 12, mapped))  // ::ffff:a.b.c.d is that IPv4 address
    return classify_v4((std::uint32_t{b[12]} << 24) | (std::uint32_t{b[13]} << 16) |
                       (std::uint32_t{b[14]} << 8) | b[15]);
  static constexpr unsigned char zeros[15] = {};
  if (std::equal(b, b + 15, zeros) && (b[15] == 0 || b[15] == 1))
    return address_kind::internal;  // :: and ::1
  if ((b[0] & 0xfe) == 0xfc)
    return address_kind::internal;  // fc00::/7
  return address_kind::global;
}

bool blocked_address(const struct sockaddr* addr, bool allow_internal) {
  switch (classify_address(addr)) {
  case address_kind::link_local:
    return true;
  case address_kind::internal:
    return !allow_internal;
  default:
    return false;
  }
}

std::string too_large_error(std::int64_t size, std::int64_t limit) {
  if (size < 0)
    return "body over the limit of " + std::to_string(limit) + " bytes";
  return "body of " + std::to_string(size) + " bytes is over the limit of " +
         std::to_string(limit) + " bytes";
}

} // namespace spiderhub::actors
