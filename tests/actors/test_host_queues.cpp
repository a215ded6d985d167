// Politeness queues of one run, driven with a fake clock (unix ms passed in).
#include "actors/dispatch/host_queues.hpp"

#include <doctest/doctest.h>

#include <set>
#include <string>

using namespace spiderhub::actors;

namespace {

host_queue_options no_robots(int max_concurrency, std::int64_t delay_ms = 0, int thread_num = 8) {
  host_queue_options o;
  o.budget.max_concurrency = max_concurrency;
  o.budget.delay_ms = delay_ms;
  o.budget.robots = false;
  o.budget.adaptive = false;
  o.thread_num = thread_num;
  o.user_agent = "spiderhub/0.1";
  return o;
}

queued_request req(const std::string& url) {
  queued_request r;
  r.url = url;
  r.hash = url;  // any unique text will do here
  r.json = "{\"url\":\"" + url + "\"}";
  return r;
}

void push_n(host_queues& q, const std::string& base, int n, std::int64_t now = 0) {
  host_queues::settled out;
  for (int i = 0; i < n; ++i)
    q.push(req(base + "/p/" + std::to_string(i)), now, out);
  REQUIRE(out.empty());
}

} // namespace

TEST_CASE("host queues: a key's blocks never hold more slots than its concurrency") {
  host_queues q(no_robots(20, 0, 8));
  push_n(q, "http://a.test", 1000);
  auto g1 = q.next(0), g2 = q.next(0), g3 = q.next(0);
  REQUIRE(g1);
  REQUIRE(g2);
  REQUIRE(g3);
  CHECK(g1->thread_num == 8);
  CHECK(g2->thread_num == 8);
  CHECK(g3->thread_num == 4);  // 20 - 16
  CHECK(g1->requests.size() == 100);
  CHECK(g1->key == "http://a.test:80");
  CHECK_FALSE(q.next(0));  // no slot left
  q.release(g2->key, g2->thread_num, 10);
  auto g4 = q.next(10);
  REQUIRE(g4);
  CHECK(g4->thread_num == 8);
  CHECK_FALSE(q.next(10));
  CHECK(q.waiting() == 600);
}

TEST_CASE("host queues: slots a block can no longer use go back to its key") {
  host_queues q(no_robots(8, 0, 8));
  push_n(q, "http://a.test", 20);
  auto g = q.next(0);
  REQUIRE(g);
  CHECK(g->thread_num == 8);
  host_queues::settled out;
  q.push(req("http://a.test/late"), 0, out);
  CHECK_FALSE(q.next(0));
  q.shrink(g->key, 5, 1);  // 3 requests of that block are left unfinished
  auto more = q.next(1);
  REQUIRE(more);
  CHECK(more->thread_num == 1);  // 5 slots free, 1 request waiting
  CHECK(q.view(1)[0].in_flight == 4);
  q.release(g->key, 3, 2);
  CHECK(q.view(2)[0].in_flight == 1);
  CHECK(q.view(2)[0].blocks == 1);
}

TEST_CASE("host queues: a delay allows one block at a time, the next after release + delay") {
  host_queues q(no_robots(4, 1000));
  push_n(q, "http://slow.test", 10);
  auto g = q.next(0);
  REQUIRE(g);
  CHECK(g->delay_ms == 1000);
  CHECK(g->thread_num == 4);
  CHECK(g->requests.size() == 10);  // lease 60 s / 2 / 1 s allows 30
  q.requeue(g->key, {g->requests.begin() + 5, g->requests.end()}, 0);
  CHECK_FALSE(q.next(0));  // its block is still out
  q.release(g->key, g->thread_num, 500);
  CHECK_FALSE(q.next(1499));
  CHECK(q.next_wake_ms() == 1500);
  auto again = q.next(1500);
  REQUIRE(again);
  CHECK(again->requests.size() == 5);
  CHECK(again->requests.front().url == "http://slow.test/p/5");  // requeued at the front
}

TEST_CASE("host queues: blocks of a delayed key are cut so they end inside the lease") {
  auto o = no_robots(1, 10000);
  o.lease_timeout_ms = 60000;
  host_queues q(o);
  push_n(q, "http://crawl-delay.test", 50);
  auto g = q.next(0);
  REQUIRE(g);
  CHECK(g->requests.size() == 3);  // 60 s / 2 / 10 s
}

TEST_CASE("host queues: round robin over keys, one slow key does not hold the others") {
  host_queues q(no_robots(8, 0, 8));
  push_n(q, "http://a.test", 300);
  push_n(q, "http://b.test", 300);
  push_n(q, "http://c.test", 300);
  std::vector<std::string> order;
  for (int i = 0; i < 3; ++i) {
    auto g = q.next(0);
    REQUIRE(g);
    order.push_back(g->key);
  }
  CHECK(std::set<std::string>(order.begin(), order.end()).size() == 3);
  CHECK_FALSE(q.next(0));  // each key used its 8 slots
  q.release("http://b.test:80", 8, 1);
  auto g = q.next(1);
  REQUIRE(g);
  CHECK(g->key == "http://b.test:80");
}

TEST_CASE("host queues: robots.txt first, then allowed requests; disallowed ones skipped") {
  auto o = no_robots(8);
  o.budget.robots = true;
  host_queues q(o);
  host_queues::settled out;
  for (int i = 0; i < 20; ++i)
    q.push(req("http://r.test:8080/p/" + std::to_string(i)), 0, out);
  CHECK(out.empty());
  auto g = q.next(0);
  REQUIRE(g);
  CHECK(g->robots_url == "http://r.test:8080/robots.txt");
  CHECK(g->robots_origin == "http://r.test:8080");
  CHECK(g->thread_num == 1);
  CHECK(g->requests.empty());
  CHECK_FALSE(q.next(0));  // everything waits for the answer
  q.robots_answer(g->robots_origin, 200, "User-agent: *\nDisallow: /p/1\nCrawl-delay: 2\n", "",
                  50, out);
  q.release(g->key, 1, 50);
  // /p/1 and /p/10../p/19 are disallowed.
  CHECK(out.skipped.size() == 11);
  CHECK(out.failed.empty());
  CHECK_FALSE(q.next(2049));  // Crawl-delay counts from the robots fetch
  auto b = q.next(2050);
  REQUIRE(b);
  CHECK(b->delay_ms == 2000);
  CHECK(b->requests.size() == 9);
  for (auto& r : b->requests)
    CHECK(r.url != "http://r.test:8080/p/1");
  // Later requests are decided at once.
  host_queues::settled later;
  q.push(req("http://r.test:8080/p/100"), 3000, later);
  q.push(req("http://r.test:8080/q"), 3000, later);
  CHECK(later.skipped.size() == 1);
  auto hosts = q.view(3000);
  REQUIRE(hosts.size() == 1);
  CHECK(hosts[0].skipped == 12);
  CHECK(hosts[0].robots == "ready");
  CHECK(hosts[0].delay_ms == 2000);
}

TEST_CASE("host queues: robots 404 allows all; 5xx retries, then the origin's requests fail") {
  auto o = no_robots(8);
  o.budget.robots = true;
  o.robots_retry_ms = 1000;
  o.robots_max_attempts = 3;
  host_queues q(o);
  host_queues::settled out;
  q.push(req("http://gone.test/a"), 0, out);
  q.push(req("http://down.test/a"), 0, out);
  q.push(req("http://down.test/b"), 0, out);
  auto g1 = q.next(0), g2 = q.next(0);
  REQUIRE(g1);
  REQUIRE(g2);
  auto& gone = g1->key == "http://gone.test:80" ? *g1 : *g2;
  auto& down = g1->key == "http://gone.test:80" ? *g2 : *g1;
  q.robots_answer(gone.robots_origin, 404, "", "", 10, out);
  q.release(gone.key, 1, 10);
  auto a = q.next(10);
  REQUIRE(a);
  CHECK(a->requests.size() == 1);

  // down.test: unreachable three times (retries after 1 s, then 2 s), then given up.
  std::int64_t t = 10;
  for (int attempt = 1; attempt <= 3; ++attempt) {
    q.robots_answer(down.robots_origin, 0, "", "Couldn't connect to server", t, out);
    q.release(down.key, 1, t);
    if (attempt == 3)
      break;
    CHECK(out.failed.empty());
    auto wait = 1000 << (attempt - 1);
    CHECK_FALSE(q.next(t + wait - 1));
    auto retry = q.next(t + wait);
    REQUIRE(retry);
    CHECK(retry->robots_origin == "http://down.test");
    t += wait;
  }
  REQUIRE(out.failed.size() == 2);
  CHECK(out.failed[0].second.find("unreachable: Couldn't connect") != std::string::npos);
  host_queues::settled later;
  q.push(req("http://down.test/c"), t, later);
  CHECK(later.failed.size() == 1);
  CHECK(q.waiting() == 0);
}

TEST_CASE("host queues: Retry-After pauses the key for every node") {
  host_queues q(no_robots(8));
  push_n(q, "http://busy.test", 300);
  auto g = q.next(0);
  REQUIRE(g);
  host_observation ob;
  ob.status = 429;
  ob.retry_after_ms = 5000;
  q.observe(g->key, ob, 100);
  q.release(g->key, g->thread_num, 200);
  CHECK_FALSE(q.next(5099));
  CHECK(q.next_wake_ms() == 5100);
  CHECK(q.view(1000)[0].paused_until_ms == 5100);
  CHECK(q.next(5100));
}

TEST_CASE("host queues: repeated errors back off exponentially, successes recover") {
  auto o = no_robots(8);
  o.backoff_initial_ms = 1000;
  o.backoff_after_errors = 2;
  host_queues q(o);
  push_n(q, "http://flaky.test", 500);
  auto g = q.next(0);
  REQUIRE(g);
  host_observation err;
  err.status = 500;
  q.observe(g->key, err, 0);
  CHECK(q.view(0)[0].paused_until_ms == 0);  // one error is no pattern
  q.observe(g->key, err, 0);
  CHECK(q.view(0)[0].paused_until_ms == 1000);
  q.observe(g->key, err, 0);
  CHECK(q.view(0)[0].paused_until_ms == 2000);
  host_observation timeout;
  timeout.network_error = true;
  q.observe(g->key, timeout, 0);
  CHECK(q.view(0)[0].paused_until_ms == 4000);
  q.release(g->key, g->thread_num, 0);
  CHECK_FALSE(q.next(3999));
  auto g2 = q.next(4000);
  REQUIRE(g2);
  host_observation fine;
  fine.status = 200;
  q.observe(g2->key, fine, 4000);  // streak broken: the next single error does not pause
  q.observe(g2->key, err, 4001);
  CHECK(q.view(4001)[0].paused_until_ms == 0);  // the earlier pause is over, no new one
}

TEST_CASE("host queues: adaptive concurrency doubles while fast, shrinks when latency climbs") {
  auto o = no_robots(16, 0, 16);
  o.budget.adaptive = true;
  host_queues q(o);
  push_n(q, "http://adaptive.test", 5000);
  auto key = std::string("http://adaptive.test:80");
  CHECK(q.view(0)[0].concurrency == 2);
  host_observation fast;
  fast.status = 200;
  fast.response_ms = 10;
  for (int i = 0; i < 2; ++i)
    q.observe(key, fast, 0);
  CHECK(q.view(0)[0].concurrency == 4);
  for (int i = 0; i < 4; ++i)
    q.observe(key, fast, 0);
  CHECK(q.view(0)[0].concurrency == 8);
  for (int i = 0; i < 8; ++i)
    q.observe(key, fast, 0);
  CHECK(q.view(0)[0].concurrency == 16);
  for (int i = 0; i < 16; ++i)
    q.observe(key, fast, 0);
  CHECK(q.view(0)[0].concurrency == 16);  // never above the maximum
  host_observation slow = fast;
  slow.response_ms = 200;  // > 2 x 10 ms + 20 ms
  for (int i = 0; i < 16; ++i)
    q.observe(key, slow, 0);
  CHECK(q.view(0)[0].concurrency == 12);
  host_observation err;
  err.status = 503;
  q.observe(key, err, 0);
  CHECK(q.view(0)[0].concurrency == 6);
  // Grants follow the current limit.
  auto g = q.next(100000);
  REQUIRE(g);
  CHECK(g->thread_num == 6);
}

TEST_CASE("host queues: keys by registered domain, invalid URLs keyed apart") {
  auto o = no_robots(8);
  o.key_kind = spiderhub::core::politeness_key_kind::domain;
  host_queues q(o);
  CHECK(q.key_of("http://a.example.co.uk/x") == "http://example.co.uk");
  CHECK(q.key_of("http://b.example.co.uk:8080/") == "http://example.co.uk");
  CHECK(q.key_of("not a url") == "invalid");
  host_queues::settled out;
  q.push(req("nonsense"), 0, out);
  auto g = q.next(0);
  REQUIRE(g);
  CHECK(g->key == "invalid");
  CHECK(g->requests.size() == 1);
}

TEST_CASE("host queues: keys by IP address; hosts of one address share one budget") {
  auto o = no_robots(3, 0, 8);
  o.key_kind = spiderhub::core::politeness_key_kind::ip;
  host_queues q(o);
  host_queues::settled out;
  // A literal needs no lookup.
  q.push(req("http://127.0.0.1:81/p/0"), 0, out);
  CHECK(q.key_of("http://127.0.0.1:82/") == "ip:127.0.0.1");
  // Names wait for their address outside any key; each name is listed once.
  for (int i = 0; i < 4; ++i) {
    q.push(req("http://a.test:81/p/" + std::to_string(i)), 0, out);
    q.push(req("http://b.test:82/p/" + std::to_string(i)), 0, out);
    q.push(req("http://gone.test/p/" + std::to_string(i)), 0, out);
  }
  CHECK(q.key_of("http://a.test:81/") == "");
  auto names = q.take_unresolved();
  CHECK(std::set<std::string>(names.begin(), names.end()) ==
        std::set<std::string>{"a.test", "b.test", "gone.test"});
  CHECK(q.take_unresolved().empty());
  CHECK(q.unresolved() == 12);
  CHECK(q.waiting() == 13);
  auto g0 = q.next(0);
  REQUIRE(g0);
  CHECK(g0->key == "ip:127.0.0.1");
  CHECK(g0->requests.size() == 1);
  CHECK_FALSE(q.next(0));  // nothing else has a key yet
  q.release(g0->key, g0->thread_num, 1);

  q.resolved("a.test", "10.0.0.7", 1, out);
  q.resolved("b.test", "10.0.0.7", 1, out);
  q.resolved("gone.test", "", 1, out);   // did not resolve: keyed by host and port
  q.resolved("never.asked", "10.0.0.9", 1, out);  // no request waits for it: ignored
  CHECK(out.empty());
  CHECK(q.unresolved() == 0);
  CHECK(q.waiting() == 12);
  CHECK(q.key_of("http://a.test:9999/") == "ip:10.0.0.7");
  CHECK(q.key_of("http://gone.test/") == "http://gone.test:80");
  CHECK(q.key_of("http://never.asked/") == "");

  // a.test and b.test share the 3 slots of ip:10.0.0.7.
  int slots = 0;
  std::set<std::string> keys;
  while (auto g = q.next(1)) {
    keys.insert(g->key);
    if (g->key == "ip:10.0.0.7") {
      slots += g->thread_num;
      CHECK(g->requests.size() == 8);  // both names' requests in one key
    }
  }
  CHECK(slots == 3);
  CHECK(keys == std::set<std::string>{"ip:10.0.0.7", "http://gone.test:80"});
  auto view = q.view(1);
  REQUIRE(view.size() == 3);
}

TEST_CASE("host queues: a grant's limits cap its requests and slots (slow nodes)") {
  host_queues q(no_robots(20, 0, 8));
  push_n(q, "http://a.test", 1000);
  auto small = q.next(0, grant_limits{12, 1});
  REQUIRE(small);
  CHECK(small->requests.size() == 12);
  CHECK(small->thread_num == 1);
  auto probe = q.next(0, grant_limits{16, 0});  // requests capped, slots as the options
  REQUIRE(probe);
  CHECK(probe->requests.size() == 16);
  CHECK(probe->thread_num == 8);
  auto full = q.next(0);
  REQUIRE(full);
  CHECK(full->requests.size() == 100);
  CHECK(full->thread_num == 8);  // 20 - 1 - 8 = 11 left, thread_num 8
  CHECK(q.waiting() == 1000 - 12 - 16 - 100);
}
