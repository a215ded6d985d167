#include <doctest/doctest.h>

#include <cstdio>
#include <fstream>

#include "core/config.hpp"
#include "core/error.hpp"

using namespace spiderhub::core;

namespace {
std::string error_of(const std::string& yaml) {
  try {
    parse_broker_config(yaml, "broker.yaml");
  } catch (const input_error& e) {
    return e.what();
  }
  return "";
}
} // namespace

TEST_CASE("config: defaults when the file is empty") {
  auto c = parse_broker_config("", "broker.yaml");
  CHECK(c.http.port == 55626);
  CHECK(c.auth.token == "1234");
  CHECK(c.dispatch.block_size == 100);
  CHECK(c.sessions.heartbeat_interval.count() == 5000);
  auto n = parse_node_config("", "node.yaml");
  CHECK(n.max_process_count == 5);
  CHECK(n.retry_download == 3);
  CHECK(n.heartbeat_interval.count() == 5000);
  CHECK(n.group == "default");
}

TEST_CASE("config: values are read into typed fields") {
  auto c = parse_broker_config("http:\n  port: 8080\n  address: 127.0.0.1\n"
                               "dispatch:\n  lease_timeout_ms: 2500\n"
                               "inspector:\n  enabled: false\n",
                               "b.yaml");
  CHECK(c.http.port == 8080);
  CHECK(c.http.address == "127.0.0.1");
  CHECK(c.dispatch.lease_timeout.count() == 2500);
  CHECK_FALSE(c.inspector.enabled);
}

TEST_CASE("config: unknown key is refused with file, line and column") {
  auto e = error_of("http:\n  port: 80\n  prot: 81\n");
  CHECK(e == "broker.yaml:3:3: unknown key 'http.prot'");
  CHECK(error_of("bogus: 1\n") == "broker.yaml:1:1: unknown key 'bogus'");
}

TEST_CASE("config: a key that is not a plain name is refused (found by fuzz_config)") {
  // A YAML complex key ('? ...') used to escape as a yaml-cpp bad conversion.
  CHECK(error_of("log:\n  level: info\n? max_files: 5\n") ==
        "broker.yaml:3:3: keys of '(top level)' must be plain names");
  CHECK(error_of("http:\n  ? [a, b]\n  : 1\n") ==
        "broker.yaml:2:5: keys of 'http' must be plain names");
}

TEST_CASE("config: wrong type is refused") {
  CHECK(error_of("http:\n  port: eighty\n") ==
        "broker.yaml:2:9: 'http.port' must be an integer, got 'eighty'");
  CHECK(error_of("inspector:\n  enabled: maybe\n").find("must be true or false") !=
        std::string::npos);
  CHECK(error_of("http: 5\n").find("'http' must be a mapping") != std::string::npos);
  CHECK(error_of("http:\n  address: [1, 2]\n").find("must be a string") != std::string::npos);
}

TEST_CASE("config: out of range is refused") {
  CHECK(error_of("http:\n  port: 70000\n") ==
        "broker.yaml:2:9: 'http.port' = 70000 is out of range 0..65535");
  CHECK(error_of("dispatch:\n  block_size: 0\n").find("out of range") != std::string::npos);
  CHECK(error_of("log:\n  level: loud\n").find("must be one of") != std::string::npos);
  CHECK(error_of("scheduler:\n  kind: schedulernet\n").find("schedulernet_url") !=
        std::string::npos);
  CHECK(error_of("inspector:\n  address: 0.0.0.0\n").find("secret") != std::string::npos);
}

TEST_CASE("config: actors section of broker and node") {
  auto b = parse_broker_config("", "broker.yaml");
  CHECK(b.actors.threads == 0);
  CHECK(b.actors.policy == "sharing");
  auto n = parse_node_config("actors:\n  threads: 3\n  policy: stealing\n", "node.yaml");
  CHECK(n.actors.threads == 3);
  CHECK(n.actors.policy == "stealing");
  CHECK(error_of("actors:\n  policy: fastest\n") ==
        "broker.yaml:2:11: 'actors.policy' = 'fastest' must be one of: sharing, stealing");
  CHECK(error_of("actors:\n  threads: -1\n").find("out of range 0..256") != std::string::npos);
}

TEST_CASE("config: YAML syntax errors name the position") {
  auto e = error_of("http:\n  port: [1,\n");
  CHECK(e.find("broker.yaml:") == 0);
  CHECK(e.find("YAML syntax error") != std::string::npos);
  CHECK(error_of("- a\n- b\n").find("top level must be a mapping") != std::string::npos);
}

TEST_CASE("config: missing file is refused") {
  try {
    load_node_config("/nonexistent/node.yaml");
    FAIL("expected an error");
  } catch (const input_error& e) {
    CHECK(std::string(e.what()) == "/nonexistent/node.yaml: cannot open config file");
  }
}

TEST_CASE("config: node broker URL must be http(s) or ws(s)") {
  CHECK_THROWS_AS(parse_node_config("broker: ftp://x/\n", "n.yaml"), input_error);
  CHECK(parse_node_config("broker: wss://x/\n", "n.yaml").brokers ==
        std::vector<std::string>{"wss://x/"});
  CHECK(parse_node_config("", "n.yaml").brokers ==
        std::vector<std::string>{"http://localhost:55626/"});
}

namespace {
std::string node_error(const std::string& yaml) {
  try {
    parse_node_config(yaml, "n.yaml");
  } catch (const input_error& e) {
    return e.what();
  }
  return "";
}
} // namespace

TEST_CASE("config: node and worker broker lists (one URL, comma-separated, YAML list)") {
  using urls = std::vector<std::string>;
  urls two{"http://b1:55626/", "https://b2:55626/"};
  CHECK(parse_node_config("broker: http://b1:55626/, https://b2:55626/\n", "n.yaml").brokers == two);
  CHECK(parse_node_config("broker: \"http://b1:55626/,https://b2:55626/\"\n", "n.yaml").brokers == two);
  CHECK(parse_node_config("broker: [http://b1:55626/, https://b2:55626/]\n", "n.yaml").brokers == two);
  CHECK(parse_node_config("broker:\n  - http://b1:55626/\n  - https://b2:55626/\n  - ws://b3/\n",
                          "n.yaml").brokers == urls{"http://b1:55626/", "https://b2:55626/", "ws://b3/"});
  CHECK(parse_worker_config("broker: [http://b1:55626/, https://b2:55626/]\n", "w.yaml").brokers == two);
  CHECK(parse_worker_config("broker: http://b1:55626/,https://b2:55626/\n", "w.yaml").brokers == two);

  // A bad element is named, with its place in the file.
  CHECK(node_error("broker:\n  - http://b1/\n  - ftp://b2/\n") ==
        "n.yaml:3:5: 'broker[1]': 'ftp://b2/' is not an http://, https://, ws:// or wss:// URL "
        "with a host");
  CHECK(node_error("broker: http://b1/, b2:55626\n") ==
        "n.yaml:1:9: 'broker': 'b2:55626' is not an http://, https://, ws:// or wss:// URL with a host");
  CHECK(node_error("broker: http://b1/,,http://b2/\n") ==
        "n.yaml:1:9: 'broker': element 2 of 'http://b1/,,http://b2/' is empty");
  CHECK(node_error("broker: http://b1/,\n") ==
        "n.yaml:1:9: 'broker': element 2 of 'http://b1/,' is empty");
  CHECK(node_error("broker: []\n") ==
        "n.yaml:1:9: 'broker' is an empty list: name at least one broker URL");
  CHECK(node_error("broker: \"\"\n") == "n.yaml:1:9: 'broker': no broker URL given");
  CHECK(node_error("broker: [http://b1/, {a: 1}]\n") ==
        "n.yaml:1:22: 'broker[1]' must be a URL or a comma-separated list of URLs");
  CHECK(node_error("broker: [http://b1:1/, http://B1:1]\n") ==
        "n.yaml:1:9: 'broker': 'http://B1:1' is listed twice");
  CHECK(node_error("broker: http://\n") ==
        "n.yaml:1:9: 'broker': 'http://' is not an http://, https://, ws:// or wss:// URL with a host");
  try {
    parse_worker_config("broker: [http://b1/, wss//b2/]\n", "w.yaml");
    FAIL("expected an error");
  } catch (const input_error& e) {
    CHECK(std::string(e.what()) ==
          "w.yaml:1:22: 'broker[1]': 'wss//b2/' is not an http://, https://, ws:// or wss:// URL "
          "with a host");
  }
}

TEST_CASE("config: node and worker tls section; a CA file that cannot be read is refused") {
  auto n = parse_node_config("broker: https://b:1/\ntls:\n  ca_file: /tmp/ca.pem\n  verify: true\n",
                             "n.yaml");
  CHECK(n.tls.ca_file == "/tmp/ca.pem");
  CHECK(n.tls.verify);
  auto w = parse_worker_config("tls:\n  verify: false\n", "w.yaml");
  CHECK_FALSE(w.tls.verify);
  CHECK(w.tls.ca_file.empty());
  CHECK_THROWS_AS(parse_node_config("tls:\n  cafile: x\n", "n.yaml"), input_error);  // typo
  try {
    check_client_tls({"/nonexistent/ca.pem", true}, {"https://b:1/"}, "n.yaml");
    FAIL("expected an error");
  } catch (const input_error& e) {
    CHECK(std::string(e.what()) == "n.yaml: tls.ca_file '/nonexistent/ca.pem' cannot be read");
  }
  CHECK_NOTHROW(check_client_tls({"", true}, {"https://b:1/", "http://b:2/"}, "n.yaml"));
  CHECK(parse_broker_config("dispatch:\n  slow_node_block_ms: 0\n", "b.yaml").dispatch.slow_node_block.count() == 0);
  auto r = parse_node_config("render:\n  enabled: true\n  max_tabs: 3\n", "n.yaml");
  CHECK(r.render.enabled);
  CHECK(r.render.max_tabs == 3);
  CHECK_FALSE(parse_node_config("", "n.yaml").render.enabled);
  CHECK_THROWS_AS(parse_node_config("render:\n  max_tabs: 0\n", "n.yaml"), input_error);
  auto d = parse_broker_config("dispatch:\n  frontier_memory_max: 10\n  max_unacked_results: 0\n", "b.yaml");
  CHECK(d.dispatch.frontier_memory_max == 10);
  CHECK(d.dispatch.max_unacked == 0);
  CHECK(parse_broker_config("", "b.yaml").dispatch.slow_node_block.count() == 2000);
  CHECK(parse_broker_config("", "b.yaml").dispatch.max_unacked == 20000);  // bounded by default
}

TEST_CASE("config: shipped conf files load") {
  auto dir = std::string(SPIDERHUB_SOURCE_DIR) + "/conf/";
  CHECK_NOTHROW(load_broker_config(dir + "broker.yaml"));
  CHECK_NOTHROW(load_node_config(dir + "node.yaml"));
  CHECK_NOTHROW(load_worker_config(dir + "worker.yaml"));
}

TEST_CASE("config: auth.tokens with roles; the legacy default gives way to them") {
  auto c = parse_broker_config("auth:\n  tokens:\n"
                               "    - {name: crawlers, role: node, secret: s1}\n"
                               "    - {name: ops, role: admin, secret: s2}\n"
                               "    - {name: ops-next, role: admin, secret: s3}\n",
                               "b.yaml");
  REQUIRE(c.auth.tokens.size() == 3);
  CHECK(c.auth.tokens[0].name == "crawlers");
  CHECK(c.auth.tokens[0].role_ == role_node);
  CHECK(c.auth.tokens[2].secret == "s3");
  CHECK(c.auth.token.empty());  // "1234" would otherwise stay valid for every role
  auto both = parse_broker_config("auth:\n  token: legacy\n  tokens:\n"
                                  "    - {name: v, role: viewer, secret: s}\n", "b.yaml");
  CHECK(both.auth.token == "legacy");
  CHECK(error_of("auth:\n  tokens:\n    - {name: a, role: root, secret: s}\n") ==
        "broker.yaml:3:23: 'auth.tokens[0].role' = 'root' must be one of: node, worker, viewer, admin");
  CHECK(error_of("auth:\n  tokens:\n    - {name: a, role: admin}\n") ==
        "broker.yaml:3:7: every auth.tokens entry needs name, role and secret");
  CHECK(error_of("auth:\n  tokens:\n    - {name: a, role: admin, secret: s, extra: 1}\n") ==
        "broker.yaml:3:41: unknown key 'auth.tokens[0].extra'");
  CHECK(error_of("auth:\n  tokens: {name: a}\n") == "broker.yaml:2:11: 'auth.tokens' must be a list");
  CHECK(error_of("auth:\n  tokens:\n    - {name: a, role: admin, secret: s}\n"
                 "    - {name: a, role: admin, secret: t}\n") ==
        "broker.yaml: auth.tokens: a name appears twice with one role");
  CHECK(parse_broker_config("", "b.yaml").http.address == "127.0.0.1");
}

TEST_CASE("config: byte limits of large pages agree with the hub message limit") {
  auto c = parse_broker_config("", "broker.yaml");
  CHECK(c.dispatch.max_poll_bytes == 4 << 20);
  CHECK(c.dispatch.max_body_bytes == 10 << 20);
  CHECK(c.http.max_write_queue_bytes == 64 << 20);
  // Absurd values are refused by range, naming the key.
  for (const char* v : {"0", "-5", "1023"}) {
    CHECK(error_of(std::string("dispatch:\n  max_body_bytes: ") + v + "\n")
            .find("'dispatch.max_body_bytes' = " + std::string(v) + " is out of range") !=
          std::string::npos);
    CHECK(error_of(std::string("dispatch:\n  max_poll_bytes: ") + v + "\n")
            .find("'dispatch.max_poll_bytes'") != std::string::npos);
  }
  // A body whose base64 text (and the rest of its result) does not fit in one hub message.
  auto e = error_of("dispatch:\n  max_body_bytes: 50000000\n");
  CHECK(e.find("dispatch.max_body_bytes 50000000 does not fit in http.max_message_bytes "
               "16777216") != std::string::npos);
  // 12 MiB takes 16 MiB as base64: over with the margin; 11 MiB fits.
  CHECK(!error_of("dispatch:\n  max_body_bytes: 12582912\n").empty());
  CHECK(error_of("dispatch:\n  max_body_bytes: 11534336\n").empty());
  CHECK(error_of("http:\n  max_message_bytes: 70000000\n  max_write_queue_bytes: 140000000\n"
                 "dispatch:\n  max_body_bytes: 50000000\n")
          .empty());
  // The write queue must hold two of the largest replies.
  CHECK(error_of("http:\n  max_write_queue_bytes: 20000000\n")
          .find("http.max_write_queue_bytes 20000000 must be at least twice") != std::string::npos);
  CHECK(error_of("http:\n  max_write_queue_bytes: 40000000\ndispatch:\n  max_poll_bytes: 30000000\n")
          .find("max(dispatch.max_poll_bytes, http.max_message_bytes) = 30000000") !=
        std::string::npos);
}

TEST_CASE("config: node results_batch_bytes and worker poll_max_bytes") {
  CHECK(parse_node_config("", "node.yaml").download.results_batch_bytes == 4 << 20);
  CHECK(parse_node_config("download:\n  results_batch_bytes: 65536\n", "node.yaml")
          .download.results_batch_bytes == 65536);
  CHECK_THROWS_WITH_AS(parse_node_config("download:\n  max_body_bytes: 0\n", "node.yaml"),
                       doctest::Contains("'download.max_body_bytes' = 0 is out of range"),
                       input_error);
  CHECK_THROWS_WITH_AS(parse_node_config("download:\n  results_batch_bytes: -1\n", "node.yaml"),
                       doctest::Contains("'download.results_batch_bytes'"), input_error);
  CHECK(parse_worker_config("", "worker.yaml").poll_max_bytes == 4 << 20);
  CHECK(parse_worker_config("poll_max_bytes: 100000\n", "worker.yaml").poll_max_bytes == 100000);
  CHECK_THROWS_WITH_AS(parse_worker_config("poll_max_bytes: 0\n", "worker.yaml"),
                       doctest::Contains("'poll_max_bytes' = 0 is out of range"), input_error);
}
