#include <doctest/doctest.h>

#include <curl/curl.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "actors/agent/proxy_pool.hpp"

using namespace spiderhub::actors;
using namespace std::chrono_literals;

namespace {
const std::vector<std::string> three = {"http://u:pw@a.test:1", "http://b.test:2",
                                        "socks5://c.test:3"};
}

TEST_CASE("proxy pool: round robin over the healthy ones; a proxy failing N times is benched") {
  auto t0 = proxy_pool::clock::now();
  proxy_pool pool(three, "", 2, 1000ms, 7);
  std::vector<int> order;
  for (int i = 0; i < 6; ++i)
    order.push_back(pool.pick("x.test", t0));
  CHECK(order == std::vector<int>{0, 1, 2, 0, 1, 2});
  CHECK(pool.name(0) == "http://a.test:1");  // never the credentials
  CHECK(pool.url(0) == "http://u:pw@a.test:1");
  CHECK(!pool.failed(1, t0));  // one failure: still in
  pool.succeeded(1);           // an answer ends the run of failures
  CHECK(!pool.failed(1, t0));
  CHECK(pool.failed(1, t0));   // the second in a row: benched
  CHECK(pool.benched(1, t0 + 999ms));
  CHECK(!pool.benched(1, t0 + 1000ms));
  std::set<int> used;
  for (int i = 0; i < 6; ++i)
    used.insert(pool.pick("x.test", t0 + 10ms));
  CHECK(used == std::set<int>{0, 2});
  // Back after its bench; one failed re-test benches it again at once.
  CHECK(pool.failed(1, t0 + 2000ms));
  CHECK(pool.benched(1, t0 + 2500ms));
}

TEST_CASE("proxy pool: all benched -> the one whose bench ends first is re-tested") {
  auto t0 = proxy_pool::clock::now();
  proxy_pool pool(three, "round_robin", 1, 1000ms, 7);
  CHECK(pool.failed(2, t0));
  CHECK(pool.failed(0, t0 + 10ms));
  CHECK(pool.failed(1, t0 + 20ms));
  CHECK(pool.pick("x.test", t0 + 30ms) == 2);
}

TEST_CASE("proxy pool: random spreads, per_host keeps a host on one proxy while it is healthy") {
  auto t0 = proxy_pool::clock::now();
  proxy_pool rnd(three, "random", 3, 1000ms, 42);
  std::map<int, int> counts;
  for (int i = 0; i < 3000; ++i)
    ++counts[rnd.pick("x.test", t0)];
  for (int i = 0; i < 3; ++i)
    CHECK_MESSAGE((counts[i] > 800 && counts[i] < 1200), i);
  proxy_pool host(three, "per_host", 1, 1000ms, 1);
  std::map<std::string, int> home;
  std::set<int> homes;
  for (int h = 0; h < 30; ++h) {
    auto name = "h" + std::to_string(h) + ".test";
    home[name] = host.pick(name, t0);
    homes.insert(home[name]);
    CHECK(host.pick(name, t0) == home[name]);  // stable
  }
  CHECK(homes.size() == 3);  // thirty hosts use all three
  host.failed(home["h0.test"], t0);
  auto moved = host.pick("h0.test", t0);
  CHECK(moved != home["h0.test"]);
  CHECK(moved == (home["h0.test"] + 1) % 3);  // the next healthy one
}

TEST_CASE("proxy pool: what counts as the proxy's failure") {
  CHECK(proxy_failure(CURLE_COULDNT_CONNECT, 0));
  CHECK(proxy_failure(CURLE_COULDNT_RESOLVE_PROXY, 0));
  CHECK(proxy_failure(CURLE_RECV_ERROR, 0));
  CHECK(proxy_failure(CURLE_GOT_NOTHING, 0));
  CHECK(proxy_failure(CURLE_OPERATION_TIMEDOUT, 0));
  CHECK(proxy_failure(CURLE_OK, 407));
  CHECK(!proxy_failure(CURLE_OK, 200));
  CHECK(!proxy_failure(CURLE_OK, 404));
  CHECK(!proxy_failure(CURLE_OK, 502));  // the target's trouble, told by the proxy
  CHECK(!proxy_failure(CURLE_FILESIZE_EXCEEDED, 200));
  CHECK(proxy_pool({}, "", 3, 1000ms).pick("x", proxy_pool::clock::now()) == -1);
}
