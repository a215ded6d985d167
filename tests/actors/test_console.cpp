// Console and inspector tests: the pure half of the console (endpoint and command parsing,
// table layout, reply rendering) and the inspector actor in-process, with fake peers in
// the actor registry (secret, validation, error mapping, the session registry's pass-through).
#include <doctest/doctest.h>

#include <caf/all.hpp>

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "actors/console/console_cli.hpp"
#include "actors/console/inspector.hpp"
#include "core/error.hpp"

using spiderhub::core::input_error;
using json = nlohmann::json;
namespace console = spiderhub::console;
namespace actors = spiderhub::actors;
namespace proto = spiderhub::protocol;

TEST_CASE("console endpoint: HOST:PORT, [IPV6]:PORT and the errors people make") {
  auto ep = console::parse_endpoint("127.0.0.1:4242");
  CHECK(ep.host == "127.0.0.1");
  CHECK(ep.port == 4242);
  ep = console::parse_endpoint("broker.example:1");
  CHECK(ep.host == "broker.example");
  CHECK(ep.port == 1);
  ep = console::parse_endpoint("[::1]:65535");
  CHECK(ep.host == "::1");
  CHECK(ep.port == 65535);
  CHECK_THROWS_AS(console::parse_endpoint("localhost"), input_error);
  CHECK_THROWS_AS(console::parse_endpoint(":4242"), input_error);
  CHECK_THROWS_AS(console::parse_endpoint("host:"), input_error);
  CHECK_THROWS_AS(console::parse_endpoint("host:0"), input_error);
  CHECK_THROWS_AS(console::parse_endpoint("host:65536"), input_error);
  CHECK_THROWS_AS(console::parse_endpoint("host:42x"), input_error);
  CHECK_THROWS_AS(console::parse_endpoint("::1:4242"), input_error);
  CHECK_THROWS_AS(console::parse_endpoint("[::1]4242"), input_error);
}

TEST_CASE("console command parsing follows the inspector's command table") {
  auto c = console::parse_command("  nodes  ");
  CHECK(c.command == "nodes");
  CHECK(c.argument.empty());
  c = console::parse_command("blocks 3f2a");
  CHECK(c.command == "blocks");
  CHECK(c.argument == "3f2a");
  c = console::parse_command("runs");  // optional argument
  CHECK(c.command == "runs");
  c = console::parse_command("runs job-1");
  CHECK(c.argument == "job-1");
  CHECK(console::parse_command("").command.empty());
  CHECK(console::parse_command("help").command == "help");
  CHECK(console::parse_command("help trigger").argument == "trigger");
  CHECK(console::parse_command("quit").command == "quit");

  CHECK_THROWS_WITH_AS(console::parse_command("nodez"), "unknown command 'nodez' (try 'help')",
                       input_error);
  CHECK_THROWS_WITH_AS(console::parse_command("trigger"),
                       "trigger needs JOB (usage: trigger JOB)", input_error);
  CHECK_THROWS_WITH_AS(console::parse_command("nodes all"), "nodes takes no argument",
                       input_error);
  CHECK_THROWS_AS(console::parse_command("exit a b"), input_error);
  CHECK_THROWS_AS(console::parse_command("help nodez"), input_error);
  CHECK_THROWS_AS(console::parse_command("quit now"), input_error);

  auto names = console::command_names();
  CHECK(std::is_sorted(names.begin(), names.end()));
  for (auto n : {"actors", "mailboxes", "nodes", "jobs", "runs", "blocks", "trigger", "exit",
                 "disable", "help", "quit"})
    CHECK(std::find(names.begin(), names.end(), n) != names.end());
  CHECK(console::help_text().find("blocks RUN") != std::string::npos);
  CHECK(console::help_text().find("runs [JOB]") != std::string::npos);
}

TEST_CASE("console tables: padded columns, right-aligned numbers, UTF-8 widths") {
  console::table t;
  t.headers = {"NAME", "COUNT", "NOTE"};
  t.right = {false, true};
  t.rows = {{"storage", "7", "ok"}, {"dispatch", "12345", ""}, {"größe", "1", "ü"}};
  CHECK(t.render() == "NAME      COUNT  NOTE\n"
                      "storage       7  ok\n"
                      "dispatch  12345\n"
                      "größe         1  ü\n");
  CHECK(console::display_width("größe") == 5);
  CHECK(console::display_width("") == 0);

  console::table empty;
  empty.headers = {"A", "B"};
  CHECK(empty.render() == "A  B\n");

  console::table ragged;  // short rows are padded, never read out of bounds
  ragged.headers = {"A", "B", "C"};
  ragged.rows = {{"x"}};
  CHECK(ragged.render() == "A  B  C\nx\n");
}

TEST_CASE("console replies: version check and rendering for people") {
  auto v = actors::inspector_protocol_version;
  CHECK(console::check_reply(json::parse(R"({"version":1,"ok":true,"data":[]})"), 1).empty());
  CHECK(console::check_reply(json("text"), v).find("not an inspector reply") !=
        std::string::npos);
  auto other = console::check_reply(
    json::parse(R"({"version":99,"broker":"9.0.0","ok":true})"), 1);
  CHECK(other.find("version mismatch") != std::string::npos);
  CHECK(other.find("protocol 99") != std::string::npos);
  CHECK(other.find("9.0.0") != std::string::npos);

  auto nodes = json::parse(R"({"version":1,"command":"nodes","ok":true,"data":[
      {"id":"n-1","group":"default","ipAddress":"10.0.0.1","isOnline":true,
       "isEnabled":true,"processorCount":8,"memory":2048,"lastSeen":"2024-01-01T00:00:00.250Z"},
      {"id":"n-22","group":"eu","ipAddress":"10.0.0.22","isOnline":false,
       "isEnabled":false,"processorCount":16,"memory":512,"lastSeen":"2024-01-02 00:00:00"}]})");
  CHECK(console::render_reply(nodes) ==
        "ID    GROUP    IP         ONLINE  ENABLED  CPUS  MEMORY MB  LAST SEEN (UTC)\n"
        "n-1   default  10.0.0.1   yes     yes         8       2048  2024-01-01 00:00:00\n"
        "n-22  eu       10.0.0.22  no      no         16        512  2024-01-02 00:00:00\n"
        "2 nodes, 1 online\n");
  CHECK(console::render_reply(json::parse(
          R"({"version":1,"command":"nodes","ok":true,"data":[]})")) == "(no nodes)\n");

  auto err = json::parse(R"({"version":1,"command":"trigger","ok":false,
      "error":{"code":"not_found","message":"job x not found"}})");
  CHECK(console::render_reply(err) == "error (not_found): job x not found\n");

  auto actors_reply = json::parse(R"({"version":1,"command":"actors","ok":true,"data":{
      "registered":[{"name":"storage","type":"storage","id":7,"mailbox":0,
                     "stats":{"reads":3,"writes":4,"mailbox":0}},
                    {"name":"gateway","type":"gateway","id":12,"mailbox":null,
                     "stats":{"connections":2}}],
      "sessions":[{"kind":"node","id":30,"mailbox":2,"stats":{}},
                  {"kind":"node","id":31,"mailbox":5,"stats":{}}],
      "sessionCounts":{"node":2,"worker":0}}})");
  CHECK(console::render_reply(actors_reply) ==
        "NAME     TYPE     ID  MAILBOX  STATS\n"
        "storage  storage   7        0  reads=3 writes=4\n"
        "gateway  gateway  12        -  connections=2\n"
        "\n"
        "SESSIONS  COUNT  MAILBOX  MAX\n"
        "node          2        7    5\n"
        "worker        0        0    0\n");

  auto blocks = json::parse(R"({"version":1,"command":"blocks","ok":true,"data":{
      "identity":"r-1","counts":{"ready":1,"leased":0,"success":2,"failed":0},
      "blocks":[{"id":"b1","state":"success","nodeId":"n","attempts":1,"leaseUntil":0},
                {"id":"b2","state":"ready","nodeId":"","attempts":0,"leaseUntil":0},
                {"id":"b3","state":"leased","nodeId":"n","attempts":2,
                 "leaseUntil":1700000000500}]}})");
  auto text = console::render_reply(blocks);
  CHECK(text.find("run r-1\n") == 0);
  CHECK(text.find("success       2") != std::string::npos);
  CHECK(text.find("b2     ready   -") != std::string::npos);
  CHECK(text.find("b3     leased  n            2  2023-11-14 22:13:20\n") != std::string::npos);
  CHECK(text.find("b1") == std::string::npos);  // finished blocks only in --json

  auto runs = json::parse(R"({"version":1,"command":"runs","ok":true,"data":[
      {"identity":"r-1","jobId":"3df6443f-b447-422d-a02c-0a5d2214069d","status":"Running",
       "total":10,"success":4,"error":1,"skipped":2,"left":3,
       "updateTime":"2024-05-01T12:00:03.250Z","live":{"pending":7,"blocksLeased":2}}]})");
  CHECK(console::render_reply(runs).find(
          "r-1       3df6443f  Running     10        4      1        2     3        7       2  "
          "2024-05-01 12:00:03\n") != std::string::npos);

  auto hosts = json::parse(R"({"version":1,"command":"hosts","ok":true,"data":{"identity":"r-1",
      "hosts":[{"key":"http://a.test:80","pending":5,"waitingForRobots":1,"inFlight":4,
                "concurrency":4,"maxConcurrency":8,"delayMs":1000,"done":20,"errors":1,
                "skipped":3,"robots":"ready","pausedUntil":1700000000500}]}})");
  auto hosts_text = console::render_reply(hosts);
  CHECK(hosts_text.find("run r-1\n") == 0);
  CHECK(hosts_text.find("http://a.test:80") != std::string::npos);
  CHECK(hosts_text.find("4/8") != std::string::npos);
  CHECK(hosts_text.find("2023-11-14 22:13:20") != std::string::npos);
  CHECK(hosts_text.find("1 host\n") != std::string::npos);

  CHECK(console::render_reply(json::parse(
          R"({"version":1,"command":"trigger","ok":true,"data":{"jobId":"j","identity":"r"}})")) ==
        "job j triggered: run r\n");
}

// ---- the inspector actor, in-process ------------------------------------------------------

namespace {

struct fake_jobs_state {
  std::vector<std::string> seen;
  static inline const char* name = "fake_jobs";
};

// Stands in for the job manager: knows job "j1", records what the session registry passes on.
// The unused argument: CAF 0.17 dereferences a null argument tuple for argument-less
// function actors, which UBSan reports.
caf::behavior fake_jobs(caf::stateful_actor<fake_jobs_state>* self, int /*unused*/) {
  return {
    [=](proto::fire_atom, const std::string& job, std::int64_t,
        const std::string&) -> caf::result<std::string> {
      if (job == "j1")
        return std::string("run-1");
      return proto::app_error("not_found", "job " + job + " not found");
    },
    [=](proto::exit_run_atom, const std::string& run) { return run == "run-1"; },
    [=](proto::heartbeat_atom, const std::string& node) {
      self->state.seen.push_back("heartbeat " + node);
    },
    [=](proto::worker_up_atom, const std::string& cls, const caf::actor&) {
      self->state.seen.push_back("worker_up " + cls);
    },
    [=](proto::stats_atom) -> std::string {
      auto seen = json::array();
      for (auto& s : self->state.seen)
        seen.push_back(s);
      return json{{"seen", seen}, {"mailbox", 0}}.dump();
    },
  };
}

json ask(caf::scoped_actor& self, const caf::actor& inspector, const std::string& secret,
         const std::string& command, const std::string& arg = "") {
  json out;
  self->request(inspector, std::chrono::seconds(10), actors::inspect_atom::value, secret, command,
                arg)
    .receive([&](const std::string& text) { out = json::parse(text); },
             [&](const caf::error& err) { FAIL("inspector failed: " << caf::to_string(err)); });
  return out;
}

} // namespace

TEST_CASE("inspector: secret, validation, job manager commands and the session registry") {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  auto jobs = sys.spawn(fake_jobs, 0);
  auto sessions = actors::spawn_session_registry(sys, jobs);
  sys.registry().put(caf::atom("jobs"), caf::actor_cast<caf::strong_actor_ptr>(jobs));
  sys.registry().put(caf::atom("sessions"), caf::actor_cast<caf::strong_actor_ptr>(sessions));
  actors::inspector_options opts;
  opts.secret = "s3cret";
  opts.rate_window = std::chrono::milliseconds(100);
  auto inspector = actors::spawn_inspector(sys, opts);
  sys.registry().put(caf::atom("inspector"), caf::actor_cast<caf::strong_actor_ptr>(inspector));
  caf::scoped_actor self{sys};

  auto refused = ask(self, inspector, "wrong", "jobs");
  CHECK(refused["version"] == actors::inspector_protocol_version);
  CHECK(refused["ok"] == false);
  CHECK(refused["error"]["code"] == "unauthorized");
  CHECK(ask(self, inspector, "", "jobs")["error"]["code"] == "unauthorized");

  CHECK(ask(self, inspector, "s3cret", "nope")["error"]["code"] == "unknown_command");
  CHECK(ask(self, inspector, "s3cret", "trigger")["error"]["code"] == "invalid");
  CHECK(ask(self, inspector, "s3cret", "nodes", "x")["error"]["code"] == "invalid");
  // No storage registered: a clear error, not a hang.
  CHECK(ask(self, inspector, "s3cret", "nodes")["error"]["code"] == "unavailable");

  auto fired = ask(self, inspector, "s3cret", "trigger", "j1");
  CHECK(fired["ok"] == true);
  CHECK(fired["data"]["identity"] == "run-1");
  auto unknown = ask(self, inspector, "s3cret", "trigger", "j2");
  CHECK(unknown["ok"] == false);
  CHECK(unknown["error"]["code"] == "not_found");
  CHECK(unknown["error"]["message"] == "job j2 not found");
  CHECK(ask(self, inspector, "s3cret", "exit", "run-1")["ok"] == true);
  CHECK(ask(self, inspector, "s3cret", "exit", "run-2")["error"]["code"] == "not_found");

  // A session announcing itself through the registry: listed, and the job manager still
  // gets every message (the registry is transparent).
  // (One spawn argument: CAF 0.17 dereferences a null argument tuple for argument-less
  // function actors, which UBSan reports.)
  auto session = sys.spawn([](std::string kind) -> caf::behavior {
    return {[kind](proto::stats_atom) {
      return std::string(R"({"kind":")") + kind + R"(","mailbox":0})";
    }};
  }, std::string("worker"));
  caf::anon_send(sessions, proto::worker_up_atom::value, std::string("cls.A"), session);
  caf::anon_send(sessions, proto::heartbeat_atom::value, std::string("node-9"));
  json listed;
  for (int i = 0; i < 100; ++i) {
    listed = ask(self, inspector, "s3cret", "actors");
    if (listed["data"]["sessionCounts"]["worker"] == 1)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  CHECK(listed["data"]["sessionCounts"]["worker"] == 1);
  CHECK(listed["data"]["sessionCounts"]["node"] == 0);
  std::vector<std::string> names;
  for (auto& a : listed["data"]["registered"])
    names.push_back(a["name"]);
  CHECK(names == std::vector<std::string>{"jobs", "sessions", "inspector"});
  auto jobs_stats = listed["data"]["registered"][0]["stats"]["seen"];
  CHECK(jobs_stats == json::array({"worker_up cls.A", "heartbeat node-9"}));

  auto mb = ask(self, inspector, "s3cret", "mailboxes");
  REQUIRE(mb["ok"] == true);
  CHECK(mb["data"]["windowMs"].get<int>() >= 100);
  bool saw_worker_family = false;
  for (auto& f : mb["data"]["families"])
    if (f["family"] == "worker_session") {
      saw_worker_family = true;
      CHECK(f["actors"] == 1);
      CHECK(f["mailbox"] == 0);
    }
  CHECK(saw_worker_family);

  // A session that dies is dropped from the list (monitored).
  caf::anon_send_exit(session, caf::exit_reason::kill);
  for (int i = 0; i < 100; ++i) {
    listed = ask(self, inspector, "s3cret", "actors");
    if (listed["data"]["sessionCounts"]["worker"] == 0)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  CHECK(listed["data"]["sessionCounts"]["worker"] == 0);

  for (auto& a : {inspector, sessions, jobs})
    caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  for (auto name : {"jobs", "sessions", "inspector"})
    sys.registry().erase(spiderhub::protocol::registry_key(name));
}
