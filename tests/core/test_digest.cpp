#include <doctest/doctest.h>

#include "core/digest.hpp"
#include "core/url.hpp"

using namespace spiderhub::core;

TEST_CASE("digest: known vectors") {
  CHECK(md5_hex("") == "d41d8cd98f00b204e9800998ecf8427e");
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  sha256_stream pieces;
  pieces.update("a");
  pieces.update("");
  pieces.update("bc");
  CHECK(pieces.hex() == sha256_hex("abc"));
  // RFC 4231 test case 2.
  CHECK(hmac_sha256_hex("Jefe", "what do ya want for nothing?") ==
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST_CASE("sign: accepted within the window, refused otherwise") {
  const std::string node = "6f1c2d3e-0000-4000-8000-000000000001";
  auto sign = connection_sign("tok", node, 1000);
  CHECK(sign == hmac_sha256_hex("tok", node + "\n1000"));
  CHECK(verify_connection_sign("tok", node, "1000", sign, 1000, 300).empty());
  CHECK(verify_connection_sign("tok", node, "1000", sign, 1300, 300).empty());
  CHECK(verify_connection_sign("tok", node, "1000", sign, 1301, 300).find("window") !=
        std::string::npos);
  CHECK(verify_connection_sign("tok", node, "1000", sign, 699, 300).find("window") !=
        std::string::npos);
  CHECK(verify_connection_sign("other", node, "1000", sign, 1000, 300) == "wrong sign");
  CHECK(verify_connection_sign("tok", node, "1001", sign, 1000, 300) == "wrong sign");
  CHECK(verify_connection_sign("tok", node, "10x", sign, 1000, 300) == "ts is not an integer");
  CHECK(verify_connection_sign("tok", node, "", sign, 1000, 300) == "missing ts");
  CHECK(verify_connection_sign("tok", node, "1000", "", 1000, 300) == "missing sign");
}

TEST_CASE("sign: extreme ts values are outside the window (found by fuzz_query)") {
  // |now - ts| overflowed a signed 64-bit difference: the real sign of such a ts was
  // accepted although it lies far outside the window.
  const std::string node = "6f1c2d3e-0000-4000-8000-000000000001";
  const std::int64_t lows[] = {-9223372036854775807LL, -9223372036854775807LL - 1};
  for (auto ts : lows) {
    auto sign = connection_sign("tok", node, ts);
    CHECK(verify_connection_sign("tok", node, std::to_string(ts), sign, 1700000000, 300)
              .find("window") != std::string::npos);
  }
  auto high = connection_sign("tok", node, 9223372036854775807LL);
  CHECK(verify_connection_sign("tok", node, "9223372036854775807", high, -1700000000, 300)
            .find("window") != std::string::npos);
  CHECK(verify_connection_sign("tok", node, "1000", connection_sign("tok", node, 1000), 1000, -1)
            .find("window") != std::string::npos);
}

TEST_CASE("guid: fresh, well formed, distinct") {
  auto a = new_guid();
  auto b = new_guid();
  CHECK(is_guid(a));
  CHECK(a != b);
  CHECK(a[14] == '4');
  CHECK_FALSE(is_guid("not-a-guid"));
  CHECK_FALSE(is_guid("6f1c2d3e-0000-4000-8000-00000000000g"));
}

TEST_CASE("url: encoding and hub URLs") {
  CHECK(url_encode("a b/c?d=é") == "a%20b%2Fc%3Fd%3D%C3%A9");
  CHECK(hub_url("http://h:1/", "/node", {{"a", "x y"}, {"b", "1"}}) ==
        "ws://h:1/node?a=x%20y&b=1");
  CHECK(hub_url("https://h", "/worker", {}) == "wss://h/worker");
  CHECK(hub_url("http://h", "/x", {}, false) == "http://h/x");
}
