#include <doctest/doctest.h>

#include <random>

#include "core/text.hpp"
#include "protocol/job_site.hpp"
#include "protocol/json_codec.hpp"
#include "protocol/limits.hpp"

using namespace spiderhub::protocol;
using spiderhub::core::input_error;

namespace {

request sample_request() {
  request r;
  r.url = "http://127.0.0.1:8080/a?b=1";
  r.method = "POST";
  r.referer = "http://127.0.0.1:8080/";
  r.origin = "http://127.0.0.1:8080";
  r.content = "x=1";
  r.depth = 3;
  r.cycle_tried_times = 1;
  r.headers = {{"X-A", "1"}};
  return r;
}

template <class T> T round_trip(const T& x) {
  auto text = to_json(x).dump();
  return decode<T>(json::parse(text));
}

std::string decode_error(const std::string& text, bool as_block = false) {
  try {
    if (as_block)
      decode<block>(json::parse(text));
    else
      decode<request>(json::parse(text));
  } catch (const input_error& e) {
    return e.what();
  }
  return "";
}

} // namespace

TEST_CASE("codec: request round trip keeps every field and camelCase keys") {
  auto r = sample_request();
  auto j = to_json(r);
  CHECK(j.contains("cycleTriedTimes"));
  auto back = round_trip(r);
  CHECK(back.url == r.url);
  CHECK(back.method == "POST");
  CHECK(back.referer == r.referer);
  CHECK(back.origin == r.origin);
  CHECK(back.content == "x=1");
  CHECK(back.depth == 3);
  CHECK(back.cycle_tried_times == 1);
  CHECK(back.headers == r.headers);
}

TEST_CASE("codec: block with site round trip") {
  block b;
  b.block_id = "b1";
  b.identity = "run1";
  b.thread_num = 4;
  b.change_ip_pattern = "captcha";
  b.site_settings.domains = {"a.com", "b.com"};
  b.site_settings.user_agent = "ua";
  b.site_settings.sleep_time = 10;
  b.site_settings.headers = {{"h", "v"}};
  b.cookies = "a=1";
  b.requests = {sample_request(), sample_request()};
  auto back = round_trip(b);
  CHECK(back.block_id == "b1");
  CHECK(back.thread_num == 4);
  CHECK(back.change_ip_pattern == "captcha");
  CHECK(back.site_settings.domains == b.site_settings.domains);
  CHECK(back.site_settings.user_agent == "ua");
  CHECK(back.site_settings.sleep_time == 10);
  CHECK(back.cookies == "a=1");
  REQUIRE(back.requests.size() == 2);
  CHECK(back.requests[1].depth == 3);
}

TEST_CASE("codec: result, block_response, heartbeat, run types round trip") {
  result r;
  r.result_id = 42;
  r.request_hash = "0123456789abcdef";
  r.url = "http://x/";
  r.status_code = 200;
  r.response_time = 12;
  r.headers = {{"content-type", "text/html"}};
  set_result_body(r, "<html>ok</html>");
  r.depth = 2;
  block_response br{"b", "i", {r, r}, ""};
  auto back = round_trip(br);
  REQUIRE(back.results.size() == 2);
  CHECK(back.results[0].result_id == 42);
  CHECK(back.results[0].content == "<html>ok</html>");
  CHECK(back.results[0].depth == 2);
  CHECK(back.results[0].headers.at("content-type") == "text/html");

  heartbeat hb{3, 55, 1024, 2};
  auto hb2 = round_trip(hb);
  CHECK(hb2.process_count == 3);
  CHECK(hb2.cpu == 55);
  CHECK(hb2.free_memory == 1024);
  CHECK(hb2.free_slots == 2);

  run_application ra{"j", "i", "pkg.zip", "run.sh", "--x", "abc"};
  auto ra2 = round_trip(ra);
  CHECK(ra2.application == "run.sh");
  CHECK(ra2.package_sha256 == "abc");
  auto ae = round_trip(application_exited{"i", -1, "refused: maxProcessCount 2 reached"});
  CHECK(ae.exit_code == -1);
  CHECK(ae.reason == "refused: maxProcessCount 2 reached");
  CHECK(round_trip(application_started{"i", 4242}).pid == 4242);
  auto al = round_trip(application_log{"i", "stderr", "line\n"});
  CHECK(al.stream == "stderr");
  CHECK(al.text == "line\n");
  CHECK_THROWS_WITH(decode<application_log>(nlohmann::json::parse(
                                               R"({"identity":"i","stream":"tty","text":""})"),
                                             "a"),
                    doctest::Contains("stream"));
  auto wr = round_trip(worker_run{"j", "i", "{\"startUrl\":\"x\"}"});
  CHECK(wr.arguments == "{\"startUrl\":\"x\"}");
}

TEST_CASE("codec: binary bodies survive as base64") {
  std::string bytes = std::string("\x00\xff\xfe\x80 abc", 8);
  result r;
  r.url = "http://x/";
  set_result_body(r, bytes);
  CHECK(r.content_encoding == "base64");
  auto back = round_trip(r);
  CHECK(result_body(back) == bytes);
  result text;
  text.url = "u";
  set_result_body(text, "h\xc3\xa9llo");  // valid UTF-8 stays text
  CHECK(text.content_encoding.empty());
}

TEST_CASE("codec: utf8 validation and base64") {
  CHECK(is_valid_utf8("plain"));
  CHECK(is_valid_utf8("\xe2\x82\xac"));
  CHECK_FALSE(is_valid_utf8("\xc0\xaf"));       // overlong
  CHECK_FALSE(is_valid_utf8("\xed\xa0\x80"));   // surrogate
  CHECK_FALSE(is_valid_utf8("\xe2\x82"));       // truncated
  // The word-at-a-time ASCII skip: a bad byte at any offset of a long text is found.
  for (std::size_t at = 0; at < 40; ++at) {
    std::string text(40, 'a');
    text[at] = '\xff';
    CAPTURE(at);
    CHECK_FALSE(is_valid_utf8(text));
    text.replace(at, 1, "\xe2\x82\xac");
    CHECK(is_valid_utf8(text));
    text.resize(at + 2);  // the sequence cut short at the end
    CHECK_FALSE(is_valid_utf8(text));
  }
  // The vector validator agrees with the byte-by-byte definition (core::utf8_sequence_at)
  // on random texts of every length up to a few vector widths: mostly ASCII with
  // sequences of every length, some of them broken, anywhere.
  std::mt19937 rng(7);
  auto scalar_valid = [](std::string_view t) {
    for (std::size_t i = 0; i < t.size();) {
      auto len = spiderhub::core::utf8_sequence_at(t, i);
      if (len == 0)
        return false;
      i += len;
    }
    return true;
  };
  const char* pieces[] = {"a", "<p>", "\n", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x95\xb7",
                          "\xed\x9f\xbf", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xff", "\x80",
                          "\xe2\x82"};  // and index 13: a NUL byte
  int valid = 0, invalid = 0;
  for (int round = 0; round < 3000; ++round) {
    std::string text;
    auto target = rng() % 300;
    bool clean = rng() % 2 == 0;  // half the texts from valid pieces only
    while (text.size() < target) {
      auto k = rng() % (clean ? 7 : 14);
      if (rng() % 4 != 0)
        k = 0;  // mostly ASCII
      text += k == 13 ? std::string(1, '\0') : std::string(pieces[k]);
    }
    bool expected = scalar_valid(text);
    (expected ? valid : invalid)++;
    CAPTURE(text);
    REQUIRE(is_valid_utf8(text) == expected);
  }
  CHECK(valid > 1000);
  CHECK(invalid > 1000);
  for (std::string s : {"", "a", "ab", "abc", "abcd", "\x01\x02\x03\xff"})
    CHECK(base64_decode(base64_encode(s)) == s);
  CHECK(base64_encode("abc") == "YWJj");
  CHECK_THROWS_AS(base64_decode("YW*j"), input_error);
  CHECK_THROWS_AS(base64_decode("YQ==YQ"), input_error);
}

TEST_CASE("codec: wrong types and missing keys name the JSON path") {
  CHECK(decode_error(R"({"method":"GET"})") == "$.url: missing");
  CHECK(decode_error(R"({"url":""})") == "$.url: must not be empty");
  CHECK(decode_error(R"({"url":5})") == "$.url: expected a string");
  CHECK(decode_error(R"({"url":"u","depth":"3"})") == "$.depth: expected an integer");
  CHECK(decode_error(R"({"url":"u","depth":99999999999})") == "$.depth: integer out of range");
  CHECK(decode_error(R"({"url":"u","headers":{"a":1}})") == "$.headers.a: expected a string");
  CHECK(decode_error(R"([1])") == "$: expected an object");
  CHECK(decode_error(R"({"blockId":"b","identity":"i","requests":[{"url":1}]})", true) ==
        "$.requests[0].url: expected a string");
  CHECK(decode_error(R"({"blockId":"b","identity":"i","threadNum":0})", true) ==
        "$.threadNum: must be >= 1");
  CHECK_THROWS_AS(decode<heartbeat>(json::parse(R"({"cpu":101})")), input_error);
  CHECK_THROWS_AS(decode_array<request>(json::parse(R"({"url":"x"})")), input_error);
}

namespace {
// The message decode<site> fails with, "" when it accepts the text.
std::string site_error(const char* text) {
  try {
    decode<site>(json::parse(text));
  } catch (const input_error& e) {
    return e.what();
  }
  return {};
}
} // namespace

TEST_CASE("codec: site politeness fields accept their choices and name the others") {
  auto s = decode<site>(json::parse(R"({"politenessKey":"ip","robotsTxt":"ignore"})"));
  CHECK(s.politeness_key == "ip");
  CHECK(s.robots_txt == "ignore");
  CHECK(site_error(R"({"politenessKey":"url"})") ==
        R"($.politenessKey: must be "host", "domain", "ip", or empty)");
  CHECK(site_error(R"({"adaptiveThrottle":"yes"})") ==
        R"($.adaptiveThrottle: must be "on", "off", or empty)");
}

TEST_CASE("codec: site render settings round-trip, default off, bad values named") {
  CHECK_FALSE(decode<site>(json::parse("{}")).render);
  CHECK_FALSE(decode<site>(json::parse(R"({"render":null})")).render);
  auto s = decode<site>(json::parse(R"({"render":{"wait":"selector","selector":"a.js","timeoutMs":5000}})"));
  REQUIRE(s.render);
  CHECK(s.render->wait == "selector");
  CHECK(s.render->selector == "a.js");
  CHECK(s.render->timeout_ms == 5000);
  CHECK(s.render->block_images);
  auto back = decode<site>(to_json(s));
  REQUIRE(back.render);
  CHECK(back.render->selector == "a.js");
  CHECK(back.render->viewport_width == 1280);
  CHECK(decode<site>(json::parse(R"({"render":{}})")).render->wait == "networkidle");
  CHECK(site_error(R"({"render":{"wait":"idle"}})") ==
        R"($.render.wait: must be "load", "networkidle" or "selector")");
  CHECK(site_error(R"({"render":{"wait":"selector"}})") ==
        R"($.render.selector: is required with wait "selector")");
  CHECK(site_error(R"({"render":{"timeoutMs":5}})") == "$.render.timeoutMs: must be between 100 and 600000");
  CHECK(site_error(R"({"render":true})") != "");
}

TEST_CASE("codec: unknown keys are ignored for forward compatibility") {
  auto r = decode<request>(json::parse(R"({"url":"u","futureField":true})"));
  CHECK(r.url == "u");
}

TEST_CASE("request hash: md5 of referer.origin.method.content.url, 16 hex chars") {
  request r;
  r.url = "http://a/";
  r.method = "GET";
  // md5("..GET..http://a/") computed independently with coreutils' md5sum.
  CHECK(request_hash(r) == "2eb7ce6da60274c7");
  auto other = r;
  other.referer = "http://b/";
  CHECK(request_hash(other) != request_hash(r));
  CHECK(request_hash(r).size() == 16);
}

TEST_CASE("codec: a result's error kind and size round-trip; unknown kinds are refused") {
  result r;
  r.url = "http://x/big";
  r.status_code = 200;
  r.error = "body of 20971520 bytes is over the limit of 10485760 bytes";
  r.error_kind = "too_large";
  r.size = 20971520;
  auto j = to_json(r);
  CHECK(j["errorKind"] == "too_large");
  CHECK(j["size"] == 20971520);
  auto back = round_trip(r);
  CHECK(back.error_kind == "too_large");
  CHECK(back.size == 20971520);
  // Older nodes send neither: no kind, size unknown.
  auto old = decode<result>(json::parse(R"({"url":"http://x/"})"));
  CHECK(old.error_kind.empty());
  CHECK(old.size == -1);
  CHECK(!to_json(old).contains("errorKind"));
  CHECK(!to_json(old).contains("size"));
  for (auto kind : error_kinds::all)
    CHECK(error_kinds::known(kind));
  CHECK(!error_kinds::known("Too_Large"));
  CHECK_THROWS_WITH_AS(decode<result>(json::parse(R"({"url":"u","errorKind":"oops"})")),
                       "$.errorKind: unknown kind 'oops'", input_error);
}

TEST_CASE("codec: site download limits round-trip and bad ones are named") {
  site s;
  s.max_body_bytes = 1 << 20;
  s.allowed_content_types = {"text/html", "text/*"};
  auto back = round_trip(s);
  CHECK(back.max_body_bytes == 1 << 20);
  CHECK(back.allowed_content_types == s.allowed_content_types);
  CHECK(decode<site>(json::parse("{}")).max_body_bytes == 0);
  CHECK(decode<site>(json::parse("{}")).allowed_content_types.empty());
  CHECK(site_error(R"({"maxBodyBytes":-1})") == "$.maxBodyBytes: must be >= 0 (0 = not set)");
  CHECK(site_error(R"({"allowedContentTypes":["text/html","pdf"]})") ==
        "$.allowedContentTypes: 'pdf' is not a media type (type/subtype, type/* or */*)");
  CHECK(site_error(R"({"allowedContentTypes":"text/html"})").find("allowedContentTypes") !=
        std::string::npos);
}

TEST_CASE("codec: a large body never takes more than its base64 size on the wire") {
  // Text of control characters escapes to six bytes each: base64 is smaller and chosen.
  std::string controls(300000, '\x01');
  result a;
  a.url = "u";
  set_result_body(a, controls);
  CHECK(a.content_encoding == "base64");
  CHECK(result_body(a) == controls);
  // Quotes double: 2n > 4n/3, so base64 again.
  std::string quotes(300000, '"');
  result b;
  b.url = "u";
  set_result_body(b, quotes);
  CHECK(b.content_encoding == "base64");
  // Ordinary HTML stays text; small bodies are never counted (the margin covers them).
  std::string html;
  while (html.size() < 300000)
    html += "<p class=\"x\">Some text, \"quoted\" once.</p>\n";
  result c;
  c.url = "u";
  set_result_body(c, html);
  CHECK(c.content_encoding.empty());
  result d;
  d.url = "u";
  set_result_body(d, std::string(1000, '\x01'));
  CHECK(d.content_encoding.empty());
  for (auto* r : {&a, &b, &c}) {
    auto wire = to_json(*r).dump().size();
    CHECK(static_cast<std::int64_t>(wire) <= result_wire_bytes(300000 + 64));
  }
}

TEST_CASE("job site: download properties go into the run's Site, bad ones named") {
  auto s = site_of_job({{"MaxBodyBytes", "2000000"}, {"AllowedContentTypes", "text/html, text/*"}});
  CHECK(s.max_body_bytes == 2000000);
  CHECK(s.allowed_content_types == std::vector<std::string>{"text/html", "text/*"});
  // The Site's own values win over the properties, as for politeness.
  auto own = site_of_job({{"Site", R"({"maxBodyBytes":5000,"allowedContentTypes":["image/*"]})"},
                          {"MaxBodyBytes", "2000000"},
                          {"AllowedContentTypes", "text/html"},
                          {"MaxConcurrencyPerHost", "3"}});
  CHECK(own.max_body_bytes == 5000);
  CHECK(own.allowed_content_types == std::vector<std::string>{"image/*"});
  CHECK(own.max_concurrency_per_host == 3);
  CHECK(site_of_job({}).max_body_bytes == 0);
  auto error = [](std::map<std::string, std::string> props) {
    try {
      site_of_job(props);
    } catch (const input_error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  for (const char* bad : {"0", "-1", "1023", "12abc", "4294967297", "lots"})
    CHECK(error({{"MaxBodyBytes", bad}}).find("property 'MaxBodyBytes' must be an integer") == 0);
  CHECK(error({{"AllowedContentTypes", "html"}}) ==
        "property 'AllowedContentTypes': 'html' is not a media type (type/subtype, type/* or */*)");
  CHECK(error({{"Site", "[1]"}}) == "property 'Site' must be a JSON object");
  CHECK(error({{"DelayMs", "-4"}}).find("DelayMs") != std::string::npos);
  // Scope and trap limits: 0 = none, absent = the broker's default (-1 in the Site).
  auto limits = site_of_job({{"MaxPages", "300"}, {"MaxDepth", "0"}, {"MaxUrlLength", "4096"}});
  CHECK(limits.max_pages == 300);
  CHECK(limits.max_depth == 0);
  CHECK(limits.max_url_length == 4096);
  CHECK(limits.max_pages_per_host == -1);
  CHECK(limits.max_repeated_segments == -1);
  CHECK(site_of_job({{"Site", R"({"maxPages":5})"}, {"MaxPages", "300"}}).max_pages == 5);
  CHECK(error({{"MaxPages", "-1"}}) ==
        "property 'MaxPages' must be an integer from 0 to 1099511627776 (0 = no limit), not '-1'");
  CHECK(error({{"MaxRepeatedSegments", "1001"}}).find("MaxRepeatedSegments") == 10);
  CHECK(site_of_job({}).verify_tls);
  CHECK(!site_of_job({{"VerifyTls", "false"}}).verify_tls);
  CHECK(site_of_job({{"VerifyTls", "true"}}).verify_tls);
  CHECK(error({{"VerifyTls", "no"}}) == "property 'VerifyTls' must be true or false, not 'no'");
  CHECK(site_error(R"({"maxDepth":-2})") ==
        "$.maxDepth: must be >= 0 (0 = no limit), or -1 for the default");
  // Private addresses, canonicalisation and workers per run: off / 1 unless asked.
  auto plain = site_of_job({});
  CHECK(!plain.allow_private_addresses);
  CHECK(!plain.sort_query);
  CHECK(!plain.strip_session_ids);
  CHECK(!plain.strip_tracking);
  CHECK(plain.workers_per_run == 1);
  auto asked = site_of_job({{"AllowPrivateAddresses", "true"}, {"SortQuery", "true"},
                            {"StripSessionIds", "true"}, {"StripTracking", "true"},
                            {"WorkersPerRun", "0"}});
  CHECK(asked.allow_private_addresses);
  CHECK(asked.sort_query);
  CHECK(asked.strip_session_ids);
  CHECK(asked.strip_tracking);
  CHECK(asked.workers_per_run == 0);
  auto back = decode<site>(to_json(asked));
  CHECK(back.allow_private_addresses);
  CHECK(back.sort_query);
  CHECK(back.strip_tracking);
  CHECK(back.workers_per_run == 0);
  CHECK(error({{"SortQuery", "yes"}}) == "property 'SortQuery' must be true or false, not 'yes'");
  CHECK(error({{"WorkersPerRun", "-1"}}) ==
        "property 'WorkersPerRun' must be an integer from 0 to 1000 (0 = every worker of the "
        "class), not '-1'");
  CHECK(site_error(R"({"workersPerRun":1001})") ==
        "$.workersPerRun: must be 0 (every worker of the class) to 1000");
}

TEST_CASE("codec: redirects and encoding round-trip through both codecs") {
  result r;
  r.url = "http://h/blog";
  r.status_code = 200;
  r.final_url = "http://h/blog/";
  r.redirects = {{301, "http://h/blog/"}};
  r.encoding = "GBK";
  r.encoding_source = "meta";
  auto back = round_trip(r);
  CHECK(back.final_url == "http://h/blog/");
  REQUIRE(back.redirects.size() == 1);
  CHECK(back.redirects[0].status == 301);
  CHECK(back.redirects[0].url == "http://h/blog/");
  CHECK(back.encoding == "GBK");
  CHECK(back.encoding_source == "meta");
  CHECK(!to_json(result{}).contains("redirects"));
  CHECK(!to_json(result{}).contains("encoding"));
  CHECK_THROWS_WITH_AS(decode<result>(json::parse(R"({"url":"u","redirects":[{"status":301}]})")),
                       "$.redirects[0].url: missing", input_error);
  CHECK_THROWS_AS(decode<result>(json::parse(R"({"url":"u","redirects":{}})")), input_error);
}

TEST_CASE("codec: the properties the API and the console show carry no proxy credentials") {
  auto shown = shown_properties({{"Proxies", "http://u:S3cret@a.test:1, socks5://b.test:2"},
                                 {"Site", R"({"proxies":["http://u:S3cret@c.test:3"],"delayMs":5})"},
                                 {"Other", "http://u:kept@x.test/"}});
  CHECK(shown.at("Proxies") == "http://a.test:1,socks5://b.test:2");
  CHECK(shown.at("Site").find("S3cret") == std::string::npos);
  CHECK(shown.at("Site").find("http://c.test:3") != std::string::npos);
  CHECK(shown.at("Site").find("\"delayMs\":5") != std::string::npos);
  CHECK(shown.at("Other") == "http://u:kept@x.test/");  // not a proxy property: as stored
}
