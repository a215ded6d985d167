// HTTP query strings, percent-decoding, URL encoding and the connection sign check.
#include <exception>

#include "common.hpp"
#include "core/digest.hpp"
#include "core/url.hpp"
#include "net/http_server.hpp"

using namespace spiderhub;
using spiderhub::fuzz::require;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto s = fuzz::text(data, size);
  auto q = net::parse_query(s);
  require(q.size() <= s.size(), "no more parameters than bytes");
  auto raw = net::percent_decode(s, false);
  require(raw.size() <= s.size(), "percent_decode never grows");
  // Encoding then decoding gives back any byte string.
  require(net::percent_decode(core::url_encode(s), false) == s, "url_encode round trip");
  // The sign check with the pieces of the input: never throws, accepts only the real sign.
  auto nl1 = s.find('\n');
  auto subject = s.substr(0, nl1);
  auto rest = nl1 == std::string_view::npos ? std::string_view{} : s.substr(nl1 + 1);
  auto nl2 = rest.find('\n');
  auto ts = rest.substr(0, nl2);
  auto sign = nl2 == std::string_view::npos ? std::string_view{} : rest.substr(nl2 + 1);
  auto verdict = core::verify_connection_sign("fuzz-token", subject, ts, sign, 1700000000, 300);
  if (verdict.empty()) {
    // Accepted: then it must be the real sign for a ts inside the window.
    long long t = std::stoll(std::string(ts));
    require(t >= 1700000000 - 300 && t <= 1700000000 + 300, "window");
    require(sign == core::connection_sign("fuzz-token", subject, t), "only the real sign");
  }
  return 0;
}
