// Unit tests for sdk/site_spider without a broker: the tests play the SDK's part, calling
// start_requests / parse / on_items / on_run_finished the way the worker loop does.
#include "sdk/site_spider.hpp"

#include <doctest/doctest.h>

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/error.hpp"

namespace {

using spiderhub::core::input_error;
using spiderhub::protocol::request;
using spiderhub::protocol::result;
using spiderhub::protocol::worker_run;
using spiderhub::sdk::parse_result;
using spiderhub::sdk::parse_site_arguments;
using spiderhub::sdk::site_spider;
using json = nlohmann::json;

/// A scratch output file, removed afterwards.
struct temp_file {
  std::string path;
  explicit temp_file(const std::string& tag)
      : path("/tmp/spiderhub_test_site_spider_" + tag + "_" + std::to_string(::getpid()) +
             ".jsonl") {
    std::remove(path.c_str());
  }
  ~temp_file() { std::remove(path.c_str()); }
  std::vector<json> lines() const {
    std::vector<json> out;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);)
      out.push_back(json::parse(line));
    return out;
  }
};

std::string error_of(const std::string& arguments) {
  try {
    parse_site_arguments(arguments);
  } catch (const input_error& e) {
    return e.what();
  }
  return "";
}

worker_run make_run(const std::string& identity, const json& args) {
  return worker_run{"job-1", identity, args.dump()};
}

result page(std::int64_t id, const std::string& url, std::int32_t depth, std::string body,
            std::int32_t status = 200) {
  result r;
  r.result_id = id;
  r.url = url;
  r.depth = depth;
  r.status_code = status;
  r.headers = {{"Content-Type", "text/html; charset=utf-8"}};
  r.content = std::move(body);
  return r;
}

std::set<std::string> urls_of(const std::vector<request>& reqs) {
  std::set<std::string> out;
  for (const auto& r : reqs)
    out.insert(r.url);
  return out;
}

} // namespace

TEST_CASE("site_spider: argument validation") {
  CHECK(error_of("").find("arguments are empty") != std::string::npos);
  CHECK(error_of("{not json").find("not valid JSON") != std::string::npos);
  CHECK(error_of("[1]").find("expected a JSON object") != std::string::npos);
  CHECK(error_of("{}").find("'startUrl' is required") != std::string::npos);
  CHECK(error_of(R"({"startUrl": 5})").find("'startUrl' must be a string") != std::string::npos);
  CHECK(error_of(R"({"startUrl": "example.com"})").find("absolute http or https URL") !=
        std::string::npos);
  CHECK(error_of(R"({"startUrl": "ftp://example.com/"})").find("absolute http or https URL") !=
        std::string::npos);
  CHECK(error_of(R"({"startUrl": "http://a/", "maxDepth": "3"})").find("'maxDepth' must be an integer") !=
        std::string::npos);
  CHECK(error_of(R"({"startUrl": "http://a/", "maxDepth": 1.5})").find("'maxDepth' must be an integer") !=
        std::string::npos);
  CHECK(error_of(R"({"startUrl": "http://a/", "maxDepth": -1})").find("between 0 and") !=
        std::string::npos);
  CHECK(error_of(R"({"startUrl": "http://a/", "output": ""})").find("'output'") !=
        std::string::npos);
  CHECK(error_of(R"({"startUrl": "http://a/", "sameDomain": "yes"})").find("'sameDomain'") !=
        std::string::npos);
  CHECK(error_of(R"({"startUrl": "http://a/", "maxdepth": 2})").find("unknown key 'maxdepth'") !=
        std::string::npos);
  // Every message says what a valid value looks like.
  CHECK(error_of("{}").find("startUrl\": \"https://example.com/\"") != std::string::npos);

  auto a = parse_site_arguments(R"({"startUrl": "HTTP://Example.com"})");
  CHECK(a.start_url == "http://example.com/");
  CHECK(a.max_depth == 3);
  CHECK(a.output == "items.jsonl");
  CHECK(a.same_domain);
  auto b = parse_site_arguments(
    R"({"startUrl": "https://x.example/a", "maxDepth": 0, "output": "o.jsonl", "sameDomain": false})");
  CHECK(b.max_depth == 0);
  CHECK(b.output == "o.jsonl");
  CHECK_FALSE(b.same_domain);

  // The spider reports bad arguments from start_requests (the SDK then ends the run).
  site_spider spider(nullptr);
  CHECK_THROWS_AS(spider.start_requests(worker_run{"j", "r", "{}"}), input_error);
}

TEST_CASE("site_spider: start request, depth limit and same-domain filtering") {
  temp_file out("depth");
  site_spider spider(nullptr);
  auto run = make_run("run-depth", {{"startUrl", "http://site.example/"},
                                    {"maxDepth", 1},
                                    {"output", out.path}});
  auto start = spider.start_requests(run);
  REQUIRE(start.size() == 1);
  CHECK(start[0].url == "http://site.example/");
  CHECK(start[0].depth == 0);

  const std::string home = R"(<title>Home</title>
    <a href="/a">a</a> <a href="b">b</a> <a href="http://other.example/x">other</a>
    <a href="//SITE.example/c#top">c</a> <a href="http://site.example:8080/port">port</a>
    <a href="/">self</a> <a href="mailto:x@site.example">mail</a>
    <a href="http://www.site.example/w">www</a> <a href="/files/Report.PDF">pdf</a>)";
  auto p0 = spider.parse(run, page(1, "http://site.example/", 0, home), home);
  // sameDomain is the registrable domain: www. and other ports of it belong, other
  // domains do not; links to binary files are not requested.
  CHECK(urls_of(p0.requests) == std::set<std::string>{"http://site.example/a",
                                                      "http://site.example/b",
                                                      "http://site.example/c",
                                                      "http://site.example:8080/port",
                                                      "http://www.site.example/w"});
  for (const auto& r : p0.requests) {
    CHECK(r.depth == 1);
    CHECK(r.headers.at("Referer") == "http://site.example/");
    CHECK(r.referer.empty());  // kept out of the dedup hash
  }
  REQUIRE(p0.items.size() == 1);
  CHECK(p0.items[0] == json{{"url", "http://site.example/"}, {"title", "Home"}, {"status", 200},
                            {"depth", 0}, {"run", "run-depth"}});

  // Depth 1 == maxDepth: the page becomes an item but its links are not followed.
  const std::string a = R"(<title>A</title><a href="/deeper">deeper</a>)";
  auto p1 = spider.parse(run, page(2, "http://site.example/a", 1, a), a);
  CHECK(p1.requests.empty());
  REQUIRE(p1.items.size() == 1);
  CHECK(p1.items[0]["depth"] == 1);

  spider.on_items(run, p0.items);
  spider.on_items(run, p1.items);
  spider.on_run_finished(run);
  auto lines = out.lines();
  REQUIRE(lines.size() == 2);
  CHECK(lines[0]["url"] == "http://site.example/");
  CHECK(lines[1]["title"] == "A");
  CHECK(spider.items_written() == 2);
  CHECK(spider.pages_parsed() == 2);
}

TEST_CASE("site_spider: an IP start URL keeps its port as its site; redirects move the base") {
  temp_file out("ip");
  site_spider spider(nullptr);
  auto run = make_run("run-ip", {{"startUrl", "http://127.0.0.1:8000/"},
                                 {"maxDepth", 5},
                                 {"output", out.path}});
  spider.start_requests(run);
  const std::string html = R"(<a href="http://127.0.0.1:9000/x">o</a><a href="a.html">a</a>)";
  // The page was redirected to /blog/: its relative links resolve there.
  auto r = page(1, "http://127.0.0.1:8000/blog", 0, html);
  r.final_url = "http://127.0.0.1:8000/blog/";
  auto p0 = spider.parse(run, r, html);
  CHECK(urls_of(p0.requests) == std::set<std::string>{"http://127.0.0.1:8000/blog/a.html"});
  REQUIRE(p0.items.size() == 1);
  CHECK(p0.items[0]["finalUrl"] == "http://127.0.0.1:8000/blog/");
}

TEST_CASE("site_spider: sameDomain false follows other hosts; links requested once per run") {
  temp_file out("cross");
  site_spider spider(nullptr);
  auto run = make_run("run-cross", {{"startUrl", "http://site.example/"},
                                    {"maxDepth", 5},
                                    {"sameDomain", false},
                                    {"output", out.path}});
  spider.start_requests(run);
  const std::string html = R"(<a href="http://other.example/x">o</a><a href="/y">y</a><a href="/">home</a>)";
  auto p0 = spider.parse(run, page(1, "http://site.example/", 0, html), html);
  // The start URL itself was already requested by start_requests.
  CHECK(urls_of(p0.requests) == std::set<std::string>{"http://other.example/x",
                                                      "http://site.example/y"});
  // Another page linking to the same URLs: the broker would see a different referer and
  // fetch them again, so the spider must not push them.
  auto p1 = spider.parse(run, page(2, "http://site.example/y", 1, html), html);
  CHECK(p1.requests.empty());
}

TEST_CASE("site_spider: redelivered results do not duplicate items; runs are separate") {
  temp_file out("dedup");
  site_spider spider(nullptr);
  auto run = make_run("run-dedup", {{"startUrl", "http://site.example/"}, {"output", out.path}});
  spider.start_requests(run);
  const std::string html = R"(<title>T</title><a href="/n">n</a>)";
  auto r = page(7, "http://site.example/", 0, html);

  auto first = spider.parse(run, r, html);
  CHECK(first.requests.size() == 1);
  spider.on_items(run, first.items);
  // After a reconnect the broker delivers the unacked result again.
  auto again = spider.parse(run, r, html);
  CHECK(again.requests.empty());
  spider.on_items(run, again.items);
  CHECK(out.lines().size() == 1);
  CHECK(spider.items_written() == 1);

  // Failed downloads still become items (with the error), without links.
  result failed;
  failed.result_id = 8;
  failed.url = "http://site.example/n";
  failed.depth = 1;
  failed.error = "connect timeout";
  auto pf = spider.parse(run, failed, "");
  CHECK(pf.requests.empty());
  REQUIRE(pf.items.size() == 1);
  CHECK(pf.items[0]["status"] == 0);
  CHECK(pf.items[0]["error"] == "connect timeout");
  spider.on_items(run, pf.items);
  spider.on_run_finished(run);

  // A second run of the same job writes its own items to the same file.
  auto run2 = make_run("run-dedup-2", {{"startUrl", "http://site.example/"}, {"output", out.path}});
  spider.start_requests(run2);
  auto second = spider.parse(run2, r, html);
  CHECK(second.requests.size() == 1);
  spider.on_items(run2, second.items);
  spider.on_run_finished(run2);
  CHECK(out.lines().size() == 3);
  CHECK(spider.items_written() == 3);
}

namespace {
void write_file(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}
std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
} // namespace

TEST_CASE("drop_partial_last_line cuts a file back to its last complete line") {
  using spiderhub::sdk::drop_partial_last_line;
  temp_file f("partial");
  CHECK(drop_partial_last_line(f.path) == 0); // no file
  write_file(f.path, "");
  CHECK(drop_partial_last_line(f.path) == 0);
  write_file(f.path, "{\"a\":1}\n{\"b\":2}\n");
  CHECK(drop_partial_last_line(f.path) == 0);
  CHECK(read_file(f.path) == "{\"a\":1}\n{\"b\":2}\n");
  // A whole object without its newline is a partial line too: its batch was not acked.
  write_file(f.path, "{\"a\":1}\n{\"b\":2}");
  CHECK(drop_partial_last_line(f.path) == 7);
  CHECK(read_file(f.path) == "{\"a\":1}\n");
  write_file(f.path, "{\"a\":1}\n{\"b\":");
  CHECK(drop_partial_last_line(f.path) == 5);
  CHECK(read_file(f.path) == "{\"a\":1}\n");
  write_file(f.path, "{\"no newline at all\"");
  CHECK(drop_partial_last_line(f.path) == 20);
  CHECK(read_file(f.path).empty());
  // The last newline lies more than one 64 KiB step back from the end.
  const std::string head = std::string(1000, 'x') + "\n";
  const std::string tail(200000, 'y');
  write_file(f.path, head + tail);
  CHECK(drop_partial_last_line(f.path) == tail.size());
  CHECK(read_file(f.path) == head);
  // Exactly on a step boundary: the byte before the last 64 KiB is the newline.
  write_file(f.path, head + std::string(65536, 'z'));
  CHECK(drop_partial_last_line(f.path) == 65536);
  CHECK(read_file(f.path) == head);
}

TEST_CASE("site_spider: a restarted worker cuts the partial line a crash left, then appends") {
  temp_file out("crashed");
  auto args = json{{"startUrl", "http://site.example/"}, {"output", out.path}};
  const std::string html = R"(<title>T</title><a href="/n">n</a>)";
  {
    site_spider first(nullptr);
    auto run = make_run("run-crash", args);
    first.start_requests(run);
    first.on_items(run, first.parse(run, page(1, "http://site.example/", 0, html), html).items);
  }
  // The killed worker had written part of the next batch: /n's item without its newline.
  {
    std::ofstream app(out.path, std::ios::app | std::ios::binary);
    app << R"({"depth":1,"run":"run-crash","status":200,"title":"","url":"http://site.example/n"})";
  }
  std::FILE* progress = std::tmpfile();
  REQUIRE(progress);
  site_spider second(progress);
  auto run = make_run("run-crash", args);
  second.start_requests(run);
  // The broker delivers /n again (it was never acked) and the first page again too.
  second.on_items(run, second.parse(run, page(2, "http://site.example/n", 1, html), html).items);
  second.on_items(run, second.parse(run, page(1, "http://site.example/", 0, html), html).items);
  // A page not seen before is appended on a line of its own.
  second.on_items(run, second.parse(run, page(3, "http://site.example/m", 1, html), html).items);
  auto lines = out.lines(); // throws on a line that is not one JSON object
  REQUIRE(lines.size() == 3);
  CHECK(lines[0]["url"] == "http://site.example/");
  CHECK(lines[1]["url"] == "http://site.example/n");
  CHECK(lines[2]["url"] == "http://site.example/m");
  std::rewind(progress);
  char buf[512] = {};
  std::fread(buf, 1, sizeof buf - 1, progress);
  std::fclose(progress);
  CHECK(std::string(buf).find("ended in a partial line") != std::string::npos);
}

TEST_CASE("site_spider: non-HTML and error pages are not parsed for links") {
  temp_file out("nonhtml");
  site_spider spider(nullptr);
  auto run = make_run("run-nonhtml", {{"startUrl", "http://site.example/"}, {"output", out.path}});
  spider.start_requests(run);
  const std::string html = R"(<a href="/x">x</a>)";
  auto img = page(1, "http://site.example/", 0, html);
  img.headers = {{"content-type", "image/png"}};
  CHECK(spider.parse(run, img, html).requests.empty());
  auto notfound = page(2, "http://site.example/", 0, html, 404);
  auto p = spider.parse(run, notfound, html);
  CHECK(p.requests.empty());
  CHECK(p.items.at(0)["status"] == 404);
  spider.on_run_finished(run);
}

TEST_CASE("site_spider: an unwritable output is reported") {
  site_spider spider(nullptr);
  auto run = make_run("run-unwritable",
                      {{"startUrl", "http://site.example/"}, {"output", "/nonexistent-dir/x.jsonl"}});
  CHECK_THROWS_AS(spider.start_requests(run), input_error);
}

TEST_CASE("site_spider: pages parsed on several threads at once push every link exactly once") {
  temp_file out("concurrent");
  site_spider spider(nullptr);
  REQUIRE(spider.parse_concurrently());
  auto run = make_run("run-threads", {{"startUrl", "http://site.example/"},
                                      {"maxDepth", 5},
                                      {"output", out.path}});
  spider.start_requests(run);
  // 400 pages; page i links to /p/(i*7+k)%500 for k < 20: most links appear on several
  // pages, which threads parse at the same time.
  constexpr int pages = 400;
  std::vector<std::string> bodies(pages);
  std::set<std::string> expected;
  for (int i = 0; i < pages; ++i) {
    for (int k = 0; k < 20; ++k) {
      auto target = "/p/" + std::to_string((i * 7 + k) % 500);
      bodies[i] += "<p>filler text</p><a href=\"" + target + "\">x</a>";
      expected.insert("http://site.example" + target);
    }
  }
  std::vector<parse_result> parsed(pages);
  std::atomic<int> next{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i; (i = next.fetch_add(1)) < pages;)
        parsed[i] = spider.parse(
          run, page(i + 1, "http://site.example/p/" + std::to_string(i), 1, bodies[i]),
          bodies[i]);
    });
  for (auto& t : threads)
    t.join();
  std::multiset<std::string> pushed;
  std::size_t items = 0;
  for (auto& p : parsed) {
    for (auto& r : p.requests)
      pushed.insert(r.url);
    items += p.items.size();
  }
  CHECK(items == pages);
  CHECK(pushed.size() == expected.size());  // no link pushed twice
  CHECK(std::set<std::string>(pushed.begin(), pushed.end()) == expected);
  CHECK(spider.pages_parsed() == pages);
}
