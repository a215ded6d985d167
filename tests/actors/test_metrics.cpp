#include <doctest/doctest.h>

#include <map>
#include <cstring>
#include <sstream>

#include "actors/gateway/metrics.hpp"

using nlohmann::json;

namespace {
// Parses the exposition: every sample line is `name{labels} value` with a known TYPE.
std::map<std::string, double> parse(const std::string& text) {
  std::map<std::string, double> out;
  std::map<std::string, std::string> types;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    REQUIRE_FALSE(line.empty());
    if (line.rfind("# TYPE ", 0) == 0) {
      auto rest = line.substr(7);
      types[rest.substr(0, rest.find(' '))] = rest.substr(rest.find(' ') + 1);
      continue;
    }
    if (line[0] == '#')
      continue;
    auto space = line.rfind(' ');
    REQUIRE(space != std::string::npos);
    auto name = line.substr(0, space);
    auto family = name.substr(0, name.find('{'));
    for (const char* suffix : {"_bucket", "_sum", "_count"})
      if (!types.count(family) && family.size() > std::strlen(suffix) &&
          family.compare(family.size() - std::strlen(suffix), std::string::npos, suffix) == 0)
        family.resize(family.size() - std::strlen(suffix));
    CHECK_MESSAGE(types.count(family), "no TYPE line for " << family);
    out[name] = std::stod(line.substr(space + 1));
  }
  return out;
}
} // namespace

TEST_CASE("metrics: exposition from actor stats, histogram cumulative, silent actors counted") {
  json stats = {
    {"jobs", {{"nodes", 2}, {"workers", {{"a.B", 1}, {"c.D", 2}}}, {"heartbeats", 40},
              {"fires", 3}, {"mailbox", 1}}},
    {"dispatch", {{"resultsStored", 10}, {"resultBytes", 4096},
                  {"downloadErrors", {{"http_5xx", 2}, {"timeout", 1}}},
                  {"runs", json::array({{{"pending", 3}, {"blocksLeased", 2}},
                                        {{"pending", 1}, {"blocksLeased", 0}}})},
                  {"requestsSkipped", 11},
                  {"topHosts", json::array({{{"key", "http://a.test:80"}, {"inFlight", 4},
                                             {"pending", 9}, {"delayMs", 1000}, {"paused", 1}},
                                            {{"key", "http://\"odd\".test:80"}}})},
                  {"nodes", json::object()}, {"mailbox", 7}}},
    {"storage", {{"writes", 5}, {"batchMsBounds", {1, 10}}, {"batchMsBuckets", {4, 1, 2}},
                 {"batchMsSum", 120.0}, {"mailbox", 0}}},
    {"scheduler", {{"fires", 9}, {"missed", 1}}},
    {"inspector", nullptr},  // did not answer
  };
  auto m = parse(spiderhub::actors::render_metrics(stats));
  CHECK(m["spiderhub_sessions{kind=\"node\"}"] == 2);
  CHECK(m["spiderhub_sessions{kind=\"worker\"}"] == 3);
  CHECK(m["spiderhub_heartbeats_total"] == 40);
  CHECK(m["spiderhub_result_bytes_total"] == 4096);
  CHECK(m["spiderhub_download_errors_total{kind=\"http_5xx\"}"] == 2);
  CHECK(m["spiderhub_download_errors_total{kind=\"dns\"}"] == 0);
  // Every kind of the closed list has its series, the newer ones too.
  CHECK(m.count("spiderhub_download_errors_total{kind=\"skipped_type\"}") == 1);
  CHECK(m.count("spiderhub_download_errors_total{kind=\"blocked_address\"}") == 1);
  CHECK(m["spiderhub_requests_waiting"] == 4);
  CHECK(m["spiderhub_blocks{state=\"leased\"}"] == 2);
  CHECK(m["spiderhub_requests_skipped_total"] == 11);
  CHECK(m["spiderhub_host_in_flight{host=\"http://a.test:80\"}"] == 4);
  CHECK(m["spiderhub_host_waiting{host=\"http://a.test:80\"}"] == 9);
  CHECK(m["spiderhub_host_delay_ms{host=\"http://a.test:80\"}"] == 1000);
  CHECK(m["spiderhub_host_paused{host=\"http://a.test:80\"}"] == 1);
  CHECK(m["spiderhub_host_in_flight{host=\"http://\\\"odd\\\".test:80\"}"] == 0);
  CHECK(m["spiderhub_cron_fires_total"] == 9);
  CHECK(m["spiderhub_cron_misfires_total"] == 1);
  CHECK(m["spiderhub_storage_batch_seconds_bucket{le=\"0.001\"}"] == 4);
  CHECK(m["spiderhub_storage_batch_seconds_bucket{le=\"0.01\"}"] == 5);
  CHECK(m["spiderhub_storage_batch_seconds_bucket{le=\"+Inf\"}"] == 7);
  CHECK(m["spiderhub_storage_batch_seconds_count"] == 7);
  CHECK(m["spiderhub_storage_batch_seconds_sum"] == doctest::Approx(0.12));
  CHECK(m["spiderhub_actor_mailbox{actor=\"dispatch\"}"] == 7);
  CHECK(m["spiderhub_scrape_errors"] == 1);
  CHECK_FALSE(m.count("spiderhub_actor_mailbox{actor=\"inspector\"}"));
}
