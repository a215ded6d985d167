#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <random>

#include "core/text.hpp"
#include "protocol/fast_json.hpp"
#include "protocol/json_codec.hpp"

using namespace spiderhub::protocol;
using spiderhub::core::input_error;

namespace {
std::string error_of(void (*fn)()) {
  try {
    fn();
  } catch (const input_error& e) {
    return e.what();
  }
  return "";
}
} // namespace

TEST_CASE("fast_json: Push arguments keep each request's bytes and its design hash") {
  auto [identity, reqs] =
    fast::parse_push(R"(["run1",[{"url":"http://a/","method":"GET"},{"url":"http://b/","depth":2}]])");
  CHECK(identity == "run1");
  REQUIRE(reqs.size() == 2);
  CHECK(reqs[0].json == R"({"url":"http://a/","method":"GET"})");
  request r;
  r.url = "http://a/";
  CHECK(reqs[0].hash == request_hash(r));
  CHECK(reqs[0].hash == "2eb7ce6da60274c7");
}

TEST_CASE("fast_json: bad Push arguments are refused with the JSON path") {
  CHECK(error_of([] { fast::parse_push(R"(["run1"])"); }) ==
        "Push: expected 2 argument(s), got 1");
  CHECK(error_of([] { fast::parse_push(R"(["",[]])"); }) ==
        "Push: argument 'identity' must be a non-empty string");
  CHECK(error_of([] { fast::parse_push(R"(["r",[{"method":"GET"}]])"); }) ==
        "Push.arguments[1][0].url: missing");
  CHECK(error_of([] { fast::parse_push(R"(["r",[{"url":5}]])"); }) ==
        "Push.arguments[1][0].url: expected a string");
  CHECK(error_of([] { fast::parse_push(R"(["r",[{"url":"u","depth":"x"}]])"); }) ==
        "Push.arguments[1][0].depth: expected an integer");
  CHECK(error_of([] { fast::parse_push(R"(["r",{}])"); }) ==
        "Push.arguments[1]: expected an array");
}

TEST_CASE("fast_json: block responses store results without resultId") {
  result r;
  r.result_id = 7;  // a node should not send one; the broker must drop it
  r.request_hash = "h";
  r.url = "http://a/";
  r.status_code = 200;
  set_result_body(r, "<p>\"quoted\"\n</p>");
  block_response b{"b1", "run1", {r}, ""};
  auto text = "[" + fast::encode_block_response(b) + "]";
  auto raw = fast::parse_block_response(text);
  CHECK(raw.block_id == "b1");
  CHECK(raw.identity == "run1");
  REQUIRE(raw.results.size() == 1);
  CHECK(raw.results[0].request_hash == "h");
  CHECK(raw.results[0].status_code == 200);
  CHECK(raw.results[0].body.find("resultId") == std::string::npos);
  auto back = decode<result>(json::parse(raw.results[0].body));
  CHECK(result_body(back) == "<p>\"quoted\"\n</p>");
  CHECK(error_of([] { fast::parse_block_response(R"([{"identity":"i"}])"); }) ==
        "SaveBlockResponse.arguments[0].blockId: missing");
  CHECK(error_of([] { fast::parse_block_response(R"([{"blockId":"b","identity":"i","results":[{}]}])"); }) ==
        "SaveBlockResponse.arguments[0].results[0].url: missing");
}

TEST_CASE("fast_json: a rendered result's final URL and screenshot reach the worker") {
  result r;
  r.request_hash = "h";
  r.url = "http://a/p/7.html";
  r.status_code = 200;
  r.final_url = "http://a/p/7.html?moved=1";
  r.screenshot = "iVBORw0KGgo=";
  block_response b{"b1", "run1", {r}, ""};
  auto raw = fast::parse_block_response("[" + fast::encode_block_response(b) + "]");
  REQUIRE(raw.results.size() == 1);
  auto back = decode<result>(json::parse(raw.results[0].body));
  CHECK(back.final_url == "http://a/p/7.html?moved=1");
  CHECK(back.screenshot == "iVBORw0KGgo=");
  result plain;
  plain.url = "http://a/";
  auto text = fast::encode_block_response(block_response{"b", "r", {plain}, ""});
  CHECK(text.find("finalUrl") == std::string::npos);   // absent unless set
  CHECK(text.find("screenshot") == std::string::npos);
}

TEST_CASE("fast_json: encoder output is valid JSON that round-trips, bad UTF-8 replaced") {
  result r;
  r.result_id = 3;
  r.url = "http://a/\x01";
  r.content = std::string("ok \xff end", 8);
  r.headers = {{"k", "v\t"}};
  std::string out;
  fast::append_json(out, r);
  auto parsed = fast::parse_results("[" + out + "]");
  REQUIRE(parsed.size() == 1);
  CHECK(parsed[0].result_id == 3);
  CHECK(parsed[0].url == "http://a/\x01");
  CHECK(parsed[0].content == "ok \xEF\xBF\xBD end");
  CHECK(parsed[0].headers.at("k") == "v\t");
}

TEST_CASE("fast_json: the word test for plain JSON string bytes agrees with the byte test") {
  auto plain = [](unsigned char c) { return c >= 0x20 && c != '"' && c != '\\' && c < 0x80; };
  // Every byte value at every position of a word of plain letters, and next to each other
  // special value (a borrow from one byte must not hide or invent another).
  for (int b = 0; b < 256; ++b)
    for (int pos = 0; pos < 8; ++pos) {
      char w[8];
      std::memset(w, 'x', 8);
      w[pos] = static_cast<char>(b);
      CAPTURE(b);
      CAPTURE(pos);
      CHECK(spiderhub::core::word_is_plain_json(spiderhub::core::load_word(w)) ==
            plain(static_cast<unsigned char>(b)));
      for (int other : {0x00, 0x1f, 0x20, int{'"'}, int{'\\'}, 0x7f, 0x80, 0xff}) {
        int pos2 = (pos + 3) % 8;
        w[pos2] = static_cast<char>(other);
        CHECK(spiderhub::core::word_is_plain_json(spiderhub::core::load_word(w)) ==
              (plain(static_cast<unsigned char>(b)) && plain(static_cast<unsigned char>(other))));
        w[pos2] = 'x';
      }
    }
}

TEST_CASE("fast_json: append_json_string writes what a JSON parser reads back") {
  std::mt19937 rng(7);
  const char alphabet[] = {'a', 'Z', ' ', '<', '"', '\\', '\n', '\t', '\x01', '\x1f', '\x7f'};
  const std::string multibyte[] = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"};
  for (int round = 0; round < 2000; ++round) {
    std::string s;
    auto len = rng() % 70;
    while (s.size() < len) {
      auto pick = rng() % 16;
      if (pick < sizeof alphabet)
        s += alphabet[pick];
      else if (pick < sizeof alphabet + 3)
        s += multibyte[pick - sizeof alphabet];
      else
        s.append(std::string(rng() % 20, 'p'));  // plain runs of any length
    }
    std::string out;
    fast::append_json_string(out, s);
    CAPTURE(s);
    CHECK(nlohmann::json::parse(out).get<std::string>() == s);
  }
  // Invalid bytes become U+FFFD wherever they are.
  std::string bad(30, 'a');
  bad[17] = '\xff';
  std::string out;
  fast::append_json_string(out, bad);
  CHECK(nlohmann::json::parse(out).get<std::string>() ==
        std::string(17, 'a') + "\xef\xbf\xbd" + std::string(12, 'a'));
}

namespace {
// Both decoders' verdict on Receive arguments: the block's JSON when accepted, else "".
std::string dom_block(const std::string& args) {
  try {
    auto j = nlohmann::json::parse(args);
    if (!j.is_array() || j.empty())
      return "";
    return to_json(decode<block>(j[0], "Receive.arguments[0]")).dump();
  } catch (const std::exception&) {
    return "";
  }
}
std::string fast_block(const std::string& args) {
  try {
    return to_json(fast::parse_block(args)).dump();
  } catch (const std::exception&) {
    return "";
  }
}
} // namespace

TEST_CASE("fast_json: Receive blocks decode as the DOM decoder decodes them, or are refused alike") {
  block b;
  b.block_id = "b-1";
  b.identity = "run \"1\"";
  b.command = 2;
  b.thread_num = 16;
  b.delay_ms = 250;
  b.change_ip_pattern = "captcha|blocked";
  b.cookies = "a=1; b=\u00e9";
  b.site_settings.user_agent = "spiderhub/1.0";
  b.site_settings.headers["X-Test"] = "1";
  b.site_settings.domains = {"example.com", "ex\u00e4mple.org"};
  b.site_settings.max_concurrency_per_host = 3;
  for (int i = 0; i < 50; ++i) {
    request r;
    r.url = "http://example.com/p/" + std::to_string(i) + "?q=\"x\"&t=\t\u2603";
    r.method = i % 3 ? "GET" : "POST";
    r.referer = i % 2 ? "http://example.com/" : "";
    r.origin = "o";
    r.content = i % 5 ? "" : "body\nline";
    r.depth = i;
    r.cycle_tried_times = i % 4;
    if (i % 2)
      r.headers["Referer"] = "http://example.com/\\back";
    b.requests.push_back(r);
  }
  auto args = nlohmann::json::array({to_json(b), "ignored"}).dump();
  auto fast = fast_block(args);
  REQUIRE(!fast.empty());
  CHECK(fast == dom_block(args));
  auto back = fast::parse_block(args);
  CHECK(back.requests.size() == 50);
  CHECK(back.requests[7].url == b.requests[7].url);
  CHECK(back.site_settings.domains == b.site_settings.domains);

  // Nulls count as missing, unknown keys are ignored, a missing method is GET.
  const std::string lenient =
    R"([{"blockId":"b","identity":"r","command":null,"site":null,"extra":[1,{"x":2}],)"
    R"("requests":[{"url":"http://a/","method":null,"depth":null,"headers":{"k":"v"},"z":1}]}])";
  CHECK(!fast_block(lenient).empty());
  CHECK(fast_block(lenient) == dom_block(lenient));
  CHECK(fast::parse_block(lenient).requests.at(0).method == "GET");

  // Everything the DOM decoder refuses, the fast one refuses too (the node then logs the
  // DOM decoder's message).
  for (const std::string& bad : {
         std::string(R"([])"),
         std::string(R"({"blockId":"b"})"),
         std::string(R"([7])"),
         std::string(R"([{"identity":"r"}])"),
         std::string(R"([{"blockId":"b"}])"),
         std::string(R"([{"blockId":1,"identity":"r"}])"),
         std::string(R"([{"blockId":"b","identity":"r","command":5}])"),
         std::string(R"([{"blockId":"b","identity":"r","threadNum":0}])"),
         std::string(R"([{"blockId":"b","identity":"r","delayMs":-1}])"),
         std::string(R"([{"blockId":"b","identity":"r","threadNum":4294967297}])"),
         std::string(R"([{"blockId":"b","identity":"r","requests":{}}])"),
         std::string(R"([{"blockId":"b","identity":"r","requests":[1]}])"),
         std::string(R"([{"blockId":"b","identity":"r","requests":[{}]}])"),
         std::string(R"([{"blockId":"b","identity":"r","requests":[{"url":""}]}])"),
         std::string(R"([{"blockId":"b","identity":"r","requests":[{"url":"u","depth":"1"}]}])"),
         std::string(R"([{"blockId":"b","identity":"r","requests":[{"url":"u","headers":{"k":1}}]}])"),
         std::string(R"([{"blockId":"b","identity":"r","site":[]}])"),
         std::string(R"([{"blockId":"b","identity":"r","site":{"domains":"x"}}])"),
         std::string(R"([{"blockId":"b","identity":"r",)"),
       }) {
    INFO(bad);
    CHECK(dom_block(bad).empty());
    CHECK(fast_block(bad).empty());
  }
}

TEST_CASE("fast_json: a request written without a DOM reads back as the DOM writes it") {
  std::mt19937 rng(11);
  const std::string pieces[] = {"a", "\"", "\\", "\n", "\t", "\x01", "\u00e9", "\u2603",
                                "\xff", "/", " ", "http://x/?q=1&r=2"};
  auto text = [&] {
    std::string s;
    for (int n = rng() % 6; n-- > 0;)
      s += pieces[rng() % std::size(pieces)];
    return s;
  };
  for (int i = 0; i < 500; ++i) {
    request r;
    r.url = "http://example.com/" + text();
    r.method = i % 2 ? "GET" : text();
    r.referer = text();
    r.origin = text();
    r.content = text();
    r.depth = static_cast<std::int32_t>(rng() % 1000) - 10;
    r.cycle_tried_times = static_cast<std::int32_t>(rng() % 5);
    for (int h = rng() % 3; h-- > 0;)
      r.headers[text()] = text();
    std::string fast;
    fast::append_json(fast, r);
    // Invalid UTF-8 is replaced by both writers, so compare what a parser reads back.
    auto ours = nlohmann::json::parse(fast);
    auto dom = nlohmann::json::parse(
      to_json(r).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    REQUIRE(ours == dom);
  }
}

TEST_CASE("fast_json: the URL of a stored request is the one the DOM decoder finds") {
  auto dom_url = [](const std::string& text) -> std::string {
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_object())
      if (auto it = j.find("url"); it != j.end() && it->is_string())
        return it->get<std::string>();
    return {};
  };
  request r;
  r.url = "http://t/a?b=1&c=\"q\"";
  r.method = "POST";
  r.referer = "http://t/";
  r.headers["url"] = "http://nested/";  // a "url" one level down
  std::string written;
  fast::append_json(written, r);
  const std::string cases[] = {
    written,
    to_json(r).dump(),
    R"({"url":"http:\/\/t\/escaped\u00e9"})",
    R"({"depth":1,"meta":{"url":"http://nested/"}})",          // only nested: none
    R"({"url":7})",                                            // not a string
    R"({"url":"http://first/","url":"http://last/"})",         // repeated: the last
    R"({"url":"http://first/","url":null})",                   // the last is not a string
    R"(["url","http://t/"])",                                  // not an object
    R"({"url":"http://t/"} trailing)",                         // not valid JSON
    R"({"url":"http://t/")",                                   // cut short
    "",
    "{}",
  };
  int found = 0;
  for (const auto& text : cases) {
    CAPTURE(text);
    auto want = dom_url(text);
    CHECK(fast::request_url(text) == want);
    found += !want.empty();
  }
  CHECK(found == 4);
  CHECK(fast::request_url(written) == r.url);
}

TEST_CASE("fast_json: error kind and size travel from node to broker to worker") {
  result r;
  r.request_hash = "h";
  r.url = "http://a/x.pdf";
  r.status_code = 200;
  r.error = "content type 'application/pdf' is not allowed for this run (AllowedContentTypes)";
  r.error_kind = "skipped_type";
  r.size = 5242880;
  block_response b{"b1", "run1", {r}, ""};
  auto raw = fast::parse_block_response("[" + fast::encode_block_response(b) + "]");
  REQUIRE(raw.results.size() == 1);
  CHECK(raw.results[0].error_kind == "skipped_type");
  auto stored = "[{\"resultId\":5," + raw.results[0].body.substr(1) + "]";
  auto polled = fast::parse_results(stored);
  REQUIRE(polled.size() == 1);
  CHECK(polled[0].error_kind == "skipped_type");
  CHECK(polled[0].size == 5242880);
  CHECK(polled[0].result_id == 5);
  CHECK(error_of([] {
    fast::parse_block_response(
      R"([{"blockId":"b","identity":"i","results":[{"url":"u","errorKind":"bad"}]}])");
  }) == "SaveBlockResponse.arguments[0].results[0].errorKind: unknown kind 'bad'");
}

TEST_CASE("fast_json: redirects and encoding reach the worker as the node wrote them") {
  result r;
  r.request_hash = "h";
  r.url = "http://a/blog";
  r.status_code = 200;
  r.final_url = "http://a/blog/";
  r.redirects = {{301, "http://a/blog"}, {302, "http://a/blog/"}};
  r.encoding = "Shift_JIS";
  r.encoding_source = "detector";
  block_response b{"b1", "run1", {r}, ""};
  auto raw = fast::parse_block_response("[" + fast::encode_block_response(b) + "]");
  auto polled = fast::parse_results("[{\"resultId\":9," + raw.results[0].body.substr(1) + "]");
  REQUIRE(polled.size() == 1);
  CHECK(polled[0].final_url == "http://a/blog/");
  REQUIRE(polled[0].redirects.size() == 2);
  CHECK(polled[0].redirects[1].status == 302);
  CHECK(polled[0].redirects[1].url == "http://a/blog/");
  CHECK(polled[0].encoding == "Shift_JIS");
  CHECK(polled[0].encoding_source == "detector");
  CHECK(error_of([] {
    fast::parse_results(R"([{"resultId":1,"url":"u","redirects":[{"status":301}]}])");
  }).find("redirects[0].url: missing") != std::string::npos);
}

TEST_CASE("fast_json: pushed URLs are made canonical, so spellings of one page share a hash") {
  auto [identity, reqs] = fast::parse_push(
    R"(["run",[{"url":"HTTP://Example.COM:80/a/./b/../c%7e?#frag","depth":2,"headers":{"Referer":"x"}},)"
    R"({"url":"http://example.com/a/c~","depth":2,"headers":{"Referer":"x"}},)"
    R"({"url":"http://example.com/a/c~#other","depth":2,"headers":{"Referer":"x"}},)"
    R"({"url":"mailto:someone@example.com"}]])");
  REQUIRE(reqs.size() == 4);
  CHECK(reqs[0].url == "http://example.com/a/c~");
  CHECK(reqs[0].hash == reqs[1].hash);
  CHECK(reqs[2].hash == reqs[1].hash);
  // Rewritten requests keep every other field; canonical ones keep their bytes.
  auto back = decode<request>(json::parse(reqs[0].json));
  CHECK(back.url == "http://example.com/a/c~");
  CHECK(back.depth == 2);
  CHECK(back.headers.at("Referer") == "x");
  CHECK(reqs[1].json == R"({"url":"http://example.com/a/c~","depth":2,"headers":{"Referer":"x"}})");
  // What is not an http(s) URL is left as it came (the node reports its failure).
  CHECK(reqs[3].url == "mailto:someone@example.com");
}

TEST_CASE("fast_json: a pushed fingerprint is the dedup key, the payload comes back in the result") {
  auto [identity, reqs] = fast::parse_push(
    R"(["run",[{"url":"http://a/x?b=1&a=2","fingerprint":"f1","payload":"p\u00e9"},)"
    R"({"url":"http://a/y","fingerprint":"f1"},)"
    R"({"url":"http://a/x?b=1&a=2","fingerprint":"f2"},)"
    R"({"url":"http://a/x?b=1&a=2"}]])");
  REQUIRE(reqs.size() == 4);
  // One fingerprint is one request whatever its URL; another one is another request.
  CHECK(reqs[0].hash == reqs[1].hash);
  CHECK(reqs[0].hash != reqs[2].hash);
  CHECK(reqs[0].hash != reqs[3].hash);
  request plain;
  plain.url = "http://a/x?b=1&a=2";
  CHECK(reqs[3].hash == request_hash(plain));
  // The node computes the same key from the block's request, and copies the payload.
  auto back = decode<request>(json::parse(reqs[0].json));
  CHECK(back.fingerprint == "f1");
  CHECK(back.payload == "p\xc3\xa9");
  CHECK(request_hash(back) == reqs[0].hash);
  std::string again;
  fast::append_json(again, back);
  CHECK(decode<request>(json::parse(again)).payload == back.payload);
  result r;
  r.request_hash = reqs[0].hash;
  r.url = back.url;
  r.payload = back.payload;
  block_response b{"b1", "run", {r}, ""};
  auto raw = fast::parse_block_response("[" + fast::encode_block_response(b) + "]");
  auto polled = fast::parse_results("[{\"resultId\":3," + raw.results[0].body.substr(1) + "]");
  REQUIRE(polled.size() == 1);
  CHECK(polled[0].payload == "p\xc3\xa9");
  CHECK(decode<result>(to_json(r)).payload == r.payload);
  // A fingerprinted GET without body is also keyed by its URL (a redirect target's key);
  // not with dontFilter, not a POST with a body, not without a fingerprint.
  auto [id2, more] = fast::parse_push(
    R"(["run",[{"url":"http://a/t","fingerprint":"f"},)"
    R"({"url":"http://a/t","fingerprint":"g","dontFilter":true},)"
    R"({"url":"http://a/t","fingerprint":"h","method":"POST","content":"x=1"},)"
    R"({"url":"http://a/t"}]])");
  REQUIRE(more.size() == 4);
  CHECK(more[0].url_hash == more[3].hash);
  CHECK(more[1].url_hash.empty());
  CHECK(more[2].url_hash.empty());
  CHECK(more[3].url_hash.empty());
  CHECK(decode<request>(json::parse(more[1].json)).dont_filter);
  // Bounds: an empty or overlong fingerprint, an overlong payload.
  CHECK(error_of([] { fast::parse_push(R"(["r",[{"url":"http://a/","fingerprint":""}]])"); }) ==
        "Push.arguments[1][0].fingerprint: must be 1 to 256 bytes");
  static const std::string long_fp =
    R"(["r",[{"url":"http://a/","fingerprint":")" + std::string(257, 'f') + "\"}]]";
  CHECK(error_of([] { fast::parse_push(long_fp); }) ==
        "Push.arguments[1][0].fingerprint: must be 1 to 256 bytes");
  static const std::string long_payload =
    R"(["r",[{"url":"http://a/","payload":")" + std::string(262145, 'p') + "\"}]]";
  CHECK(error_of([] { fast::parse_push(long_payload); }) ==
        "Push.arguments[1][0].payload: is longer than 262144 bytes");
}
