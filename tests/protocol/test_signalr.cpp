#include <doctest/doctest.h>

#include "protocol/signalr.hpp"

using namespace spiderhub::protocol::signalr;
using spiderhub::core::input_error;

TEST_CASE("signalr: records split on 0x1E across partial reads") {
  record_splitter s(1024);
  auto a = s.feed("{\"type\":6}\x1e{\"ty");
  REQUIRE(a.size() == 1);
  CHECK(a[0] == "{\"type\":6}");
  CHECK(s.pending_bytes() == 4);
  auto b = s.feed("pe\":6}\x1e\x1e");
  REQUIRE(b.size() == 2);
  CHECK(b[0] == "{\"type\":6}");
  CHECK(b[1].empty());
  CHECK(s.feed("").empty());
}

TEST_CASE("signalr: oversized record is refused, complete or partial") {
  record_splitter s(8);
  CHECK_THROWS_AS(s.feed("0123456789\x1e"), input_error);
  record_splitter p(8);
  p.feed("0123");
  CHECK_THROWS_AS(p.feed("45678"), input_error);
  record_splitter ok(8);
  CHECK(ok.feed("01234567\x1e").size() == 1);
}

TEST_CASE("signalr: handshake") {
  CHECK_NOTHROW(parse_handshake_request(R"({"protocol":"json","version":1})"));
  CHECK_THROWS_AS(parse_handshake_request(R"({"protocol":"messagepack","version":1})"),
                  input_error);
  CHECK_THROWS_AS(parse_handshake_request(R"({"protocol":"json","version":2})"), input_error);
  CHECK_THROWS_AS(parse_handshake_request("not json"), input_error);
  CHECK_THROWS_AS(parse_handshake_request("[]"), input_error);
  CHECK(handshake_request() == "{\"protocol\":\"json\",\"version\":1}\x1e");
  CHECK(handshake_response() == "{}\x1e");
  CHECK(parse_handshake_response("{}").empty());
  CHECK(parse_handshake_response(R"({"error":"nope"})") == "nope");
  // A hub message arriving before the handshake answer is a protocol violation.
  CHECK_THROWS_AS(parse_handshake_response(R"({"type":1,"target":"Run","arguments":[]})"),
                  input_error);
}

TEST_CASE("signalr: invocation with and without id") {
  auto m = parse_message(R"({"type":1,"invocationId":"7","target":"Push","arguments":["a",[1]]})");
  auto* inv = std::get_if<invocation>(&m);
  REQUIRE(inv);
  CHECK(inv->invocation_id == std::optional<std::string>("7"));
  CHECK(inv->target == "Push");
  CHECK(inv->arguments.size() == 2);
  auto n = parse_message(R"({"type":1,"target":"Receive","arguments":[]})");
  CHECK_FALSE(std::get<invocation>(n).invocation_id.has_value());
  auto enc = encode(invocation{std::nullopt, "Exit", json::array({"id"})});
  CHECK(enc.back() == '\x1e');
  auto again = parse_message(enc.substr(0, enc.size() - 1));
  CHECK(std::get<invocation>(again).target == "Exit");
}

TEST_CASE("signalr: completion, ping and close encode and parse") {
  auto c = encode(completion{"3", json(5), std::nullopt});
  auto pc = std::get<completion>(parse_message(c.substr(0, c.size() - 1)));
  CHECK(pc.invocation_id == "3");
  CHECK(*pc.result == 5);
  auto e = encode(completion{"4", std::nullopt, std::string("bad")});
  auto pe = std::get<completion>(parse_message(e.substr(0, e.size() - 1)));
  CHECK(*pe.error == "bad");
  CHECK_FALSE(pe.result.has_value());
  CHECK(std::holds_alternative<ping>(parse_message(R"({"type":6})")));
  auto cl = encode(close_message{std::string("too big"), false});
  auto pcl = std::get<close_message>(parse_message(cl.substr(0, cl.size() - 1)));
  CHECK(*pcl.error == "too big");
}

TEST_CASE("signalr: malformed messages are refused with a reason") {
  auto reason = [](const char* text) -> std::string {
    try {
      parse_message(text);
    } catch (const input_error& e) {
      return e.what();
    }
    return "";
  };
  CHECK(reason("{") == "hub message: not valid JSON");
  CHECK(reason("42") == "hub message: expected a JSON object");
  CHECK(reason(R"({"target":"x"})") == "hub message: missing integer 'type'");
  CHECK(reason(R"({"type":"1"})") == "hub message: missing integer 'type'");
  CHECK(reason(R"({"type":1,"arguments":[]})") == "invocation: missing 'target'");
  CHECK(reason(R"({"type":1,"target":"x","arguments":{}})") ==
        "invocation: 'arguments' must be an array");
  CHECK(reason(R"({"type":1,"target":5})") == "hub message: 'target' must be a string");
  CHECK(reason(R"({"type":3})") == "completion: missing 'invocationId'");
  CHECK(reason(R"({"type":4,"target":"x"})") == "hub message: type 4 is not supported");
}
