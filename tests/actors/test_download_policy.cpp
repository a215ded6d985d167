#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <string>

#include "actors/agent/download_policy.hpp"

using namespace spiderhub::actors;

namespace {
bool blocked(const std::string& ip, bool allow_internal = false) {
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
  return blocked_address(reinterpret_cast<const sockaddr*>(&ss), allow_internal);
}
} // namespace

TEST_CASE("download policy: link-local and metadata addresses are refused always, internal "
          "ones unless allowed, others never") {
  // Link-local and metadata: refused even when private addresses are allowed.
  for (const char* ip : {"169.254.169.254", "169.254.0.1", "169.254.255.255", "fe80::1",
                         "febf::1", "fd00:ec2::254", "::ffff:169.254.169.254"}) {
    CHECK_MESSAGE(blocked(ip), ip);
    CHECK_MESSAGE(blocked(ip, true), ip);
  }
  // Loopback, RFC 1918, shared address space, "this network", IPv6 loopback, unspecified,
  // unique-local, and their IPv4-mapped forms: refused unless allowed.
  for (const char* ip : {"127.0.0.1", "127.255.255.254", "10.0.0.1", "10.255.255.255",
                         "172.16.0.1", "172.31.255.255", "192.168.1.1", "100.64.0.1",
                         "100.127.255.255", "0.0.0.0", "0.1.2.3", "::1", "::", "fc00::1",
                         "fd12:3456::1", "fd00:ec2::253", "::ffff:127.0.0.1", "::ffff:10.1.2.3"}) {
    CHECK_MESSAGE(blocked(ip), ip);
    CHECK_MESSAGE(!blocked(ip, true), ip);
  }
  // Global addresses (and the edges just outside the ranges above): never refused.
  for (const char* ip : {"8.8.8.8", "169.253.255.255", "169.255.0.0", "172.15.255.255",
                         "172.32.0.0", "192.167.255.255", "192.169.0.0", "100.63.255.255",
                         "100.128.0.0", "1.0.0.0", "11.0.0.0", "126.255.255.255", "128.0.0.0",
                         "fec0::1", "fe00::1", "2001:db8::1", "::2", "::ffff:8.8.8.8"}) {
    CHECK_MESSAGE(!blocked(ip), ip);
    CHECK_MESSAGE(!blocked(ip, true), ip);
  }
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
