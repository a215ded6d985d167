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

bool blocked_address(const struct sockaddr* addr) {
  if (!addr)
    return false;
  if (addr->sa_family == AF_INET) {
    auto ip = ntohl(reinterpret_cast<const sockaddr_in*>(addr)->sin_addr.s_addr);
    return (ip >> 16) == ((169u << 8) | 254u);
  }
  if (addr->sa_family == AF_INET6) {
    const auto* b = reinterpret_cast<const sockaddr_in6*>(addr)->sin6_addr.s6_addr;
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)
      return true;  // fe80::/10
    static constexpr unsigned char metadata[16] = {0xfd, 0x00, 0x0e, 0xc2, 0, 0, 0, 0,
                                                   0,    0,    0,    0,    0, 0, 0x02, 0x54};
    if (std::equal(b, b + 16, metadata))
      return true;
    // IPv4-mapped (::ffff:169.254.x.y)
    static constexpr unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return std::equal(b, b + 12, mapped) && b[12] == 169 && b[13] == 254;
  }
  return false;
}

std::string too_large_error(std::int64_t size, std::int64_t limit) {
  if (size < 0)
    return "body over the limit of " + std::to_string(limit) + " bytes";
  return "body of " + std::to_string(size) + " bytes is over the limit of " +
         std::to_string(limit) + " bytes";
}

} // namespace spiderhub::actors
