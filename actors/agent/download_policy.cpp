#include "actors/agent/download_policy.hpp"

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

std::string too_large_error(std::int64_t size, std::int64_t limit) {
  if (size < 0)
    return "body over the limit of " + std::to_string(limit) + " bytes";
  return "body of " + std::to_string(size) + " bytes is over the limit of " +
         std::to_string(limit) + " bytes";
}

} // namespace spiderhub::actors
