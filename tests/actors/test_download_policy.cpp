#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <string>

#include "actors/agent/download_policy.hpp"

using namespace spiderhub::actors;

namespace {
bool blocked(const std::string& ip) {
  sockaddr_storage ss{};
  if (ip.find(':') == std::string::npos) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    REQUIRE(::inet_pton(AF_INET, ip.c_str(), &a->sin_addr) == 1);
  } else {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    REQUIRE(::inet_pton(AF_INET6, ip.c_str(), &a->sin6_addr) == 1);
  }
  return blocked_address(reinterpret_cast<const sockaddr*>(&ss));
}
} // namespace

TEST_CASE("download policy: link-local and metadata addresses are refused, others not") {
  for (const char* ip : {"169.254.169.254", "169.254.0.1", "169.254.255.255", "fe80::1",
                         "febf::1", "fd00:ec2::254", "::ffff:169.254.169.254"})
    CHECK_MESSAGE(blocked(ip), ip);
  for (const char* ip : {"127.0.0.1", "10.0.0.1", "192.168.1.1", "169.253.255.255",
                         "169.255.0.0", "8.8.8.8", "::1", "fec0::1", "fd00:ec2::253",
                         "::ffff:127.0.0.1", "2001:db8::1"})
    CHECK_MESSAGE(!blocked(ip), ip);
  CHECK(!blocked_address(nullptr));
}

TEST_CASE("download policy: error kinds of libcurl codes and statuses") {
  CHECK(std::string(error_kind_of(CURLE_COULDNT_RESOLVE_HOST)) == "dns");
  CHECK(std::string(error_kind_of(CURLE_COULDNT_CONNECT)) == "connect");
  CHECK(std::string(error_kind_of(CURLE_OPERATION_TIMEDOUT)) == "timeout");
  CHECK(std::string(error_kind_of(CURLE_PEER_FAILED_VERIFICATION)) == "tls");
  CHECK(std::string(error_kind_of(CURLE_SSL_CONNECT_ERROR)) == "tls");
  CHECK(std::string(error_kind_of(CURLE_FILESIZE_EXCEEDED)) == "too_large");
  CHECK(std::string(error_kind_of(CURLE_TOO_MANY_REDIRECTS)) == "redirect_loop");
  CHECK(std::string(error_kind_of(CURLE_RECV_ERROR)) == "network");
  CHECK(std::string(error_kind_of_status(404)) == "http_4xx");
  CHECK(std::string(error_kind_of_status(503)) == "http_5xx");
  CHECK(std::string(error_kind_of_status(302)).empty());
  CHECK(block_max_body(1000, 0) == 1000);
  CHECK(block_max_body(1000, 500) == 500);
  CHECK(block_max_body(1000, 5000) == 1000);
  CHECK(too_large_error(-1, 10) == "body over the limit of 10 bytes");
}
