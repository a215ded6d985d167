#include "actors/console/console_cli.hpp"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <ctime>
#include <sstream>

#include "actors/console/inspector.hpp"
#include "core/error.hpp"

namespace spiderhub::console {

using json = nlohmann::json;
using core::input_error;

endpoint parse_endpoint(const std::string& text) {
  endpoint ep;
  std::string port;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':')
      throw input_error("--broker '" + text + "': expected [IPV6]:PORT");
    ep.host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string::npos)
      throw input_error("--broker '" + text + "': expected HOST:PORT");
    ep.host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (ep.host.find(':') != std::string::npos)
      throw input_error("--broker '" + text + "': write IPv6 addresses as [ADDRESS]:PORT");
  }
  if (ep.host.empty())
    throw input_error("--broker '" + text + "': the host is empty");
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc{} || ptr != port.data() + port.size() || value < 1 ||
      value > 65535)
    throw input_error("--broker '" + text + "': the port must be 1-65535");
  ep.port = static_cast<std::uint16_t>(value);
  return ep;
}

bool is_local_command(const std::string& command) {
  return command == "help" || command == "quit";
}

command_line parse_command(const std::vector<std::string>& words) {
  command_line out;
  if (words.empty())
    return out;
  out.command = words[0];
  if (words.size() > 2)
    throw input_error(out.command + ": too many arguments (expected at most one)");
  if (words.size() == 2)
    out.argument = words[1];
  if (out.command == "help") {
    if (!out.argument.empty() && !is_local_command(out.argument) &&
        !actors::find_inspector_command(out.argument))
      throw input_error("help: unknown command '" + out.argument + "'");
    return out;
  }
  if (out.command == "quit") {
    if (!out.argument.empty())
      throw input_error("quit takes no argument");
    return out;
  }
  const auto* c = actors::find_inspector_command(out.command);
  if (!c)
    throw input_error("unknown command '" + out.command + "' (try 'help')");
  if (c->argument.empty() && !out.argument.empty())
    throw input_error(out.command + " takes no argument");
  if (c->argument_required && out.argument.empty())
    throw input_error(out.command + " needs " + c->argument + " (usage: " + out.command + " " +
                      c->argument + ")");
  return out;
}

command_line parse_command(const std::string& line) {
  std::vector<std::string> words;
  std::istringstream in(line);
  for (std::string w; in >> w;)
    words.push_back(w);
  return parse_command(words);
}

std::vector<std::string> command_names() {
  std::vector<std::string> out = {"help", "quit"};
  for (auto& c : actors::inspector_commands())
    out.push_back(c.name);
  std::sort(out.begin(), out.end());
  return out;
}

std::string help_text() {
  table t;
  t.headers = {"COMMAND", "WHAT IT SHOWS OR DOES"};
  for (auto& c : actors::inspector_commands()) {
    auto usage = c.name;
    if (!c.argument.empty())
      usage += c.argument_required ? " " + c.argument : " [" + c.argument + "]";
    t.rows.push_back({usage, c.summary});
  }
  t.rows.push_back({"help [COMMAND]", "this list, or one command"});
  t.rows.push_back({"quit", "leave the console (also 'exit' without RUN, or Ctrl-D)"});
  return t.render();
}

// ---- tables ----------------------------------------------------------------------------

std::size_t display_width(const std::string& text) {
  std::size_t n = 0;
  for (unsigned char c : text)
    if ((c & 0xC0) != 0x80)  // count lead bytes, skip continuation bytes
      ++n;
  return n;
}

std::string table::render() const {
  std::vector<std::size_t> width(headers.size(), 0);
  for (std::size_t i = 0; i < headers.size(); ++i)
    width[i] = display_width(headers[i]);
  for (auto& row : rows)
    for (std::size_t i = 0; i < row.size() && i < width.size(); ++i)
      width[i] = std::max(width[i], display_width(row[i]));
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out;
    for (std::size_t i = 0; i < width.size(); ++i) {
      const std::string empty;
      const auto& cell = i < cells.size() ? cells[i] : empty;
      auto pad = std::string(width[i] - display_width(cell), ' ');
      if (i > 0)
        out += "  ";
      bool right_aligned = i < right.size() && right[i];
      out += right_aligned ? pad + cell : cell + pad;
    }
    while (!out.empty() && out.back() == ' ')
      out.pop_back();
    return out + "\n";
  };
  std::string out = line(headers);
  for (auto& row : rows)
    out += line(row);
  return out;
}

namespace {

std::string cell(const json& v) {
  if (v.is_null())
    return "-";
  if (v.is_boolean())
    return v.get<bool>() ? "yes" : "no";
  if (v.is_string())
    return v.get<std::string>();
  if (v.is_number_float()) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f", v.get<double>());
    return buf;
  }
  return v.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string field(const json& obj, const char* key) {
  if (!obj.is_object())
    return "-";
  auto it = obj.find(key);
  return it == obj.end() ? "-" : cell(*it);
}

// "k=v k=v" of an actor's scalar stats (nested objects are in --json), cut to `max`.
std::string stats_summary(const json& stats, std::size_t max = 64) {
  if (!stats.is_object())
    return "-";
  if (auto e = stats.find("error"); e != stats.end())
    return "error: " + cell(*e);
  std::string out;
  for (auto& [k, v] : stats.items()) {
    if (k == "mailbox" || k == "kind" || v.is_structured())
      continue;
    out += (out.empty() ? "" : " ") + k + "=" + cell(v);
  }
  if (display_width(out) > max) {
    std::size_t cut = 0, cols = 0;
    while (cut < out.size() && cols < max - 1) {
      ++cut;
      while (cut < out.size() && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80)
        ++cut;
      ++cols;
    }
    out = out.substr(0, cut) + "\xE2\x80\xA6";  // …
  }
  return out.empty() ? "-" : out;
}

// "2024-05-01T12:00:03.250Z" -> "2024-05-01 12:00:03": every stored time is UTC (the
// headers say so) and milliseconds only widen the tables; other text is left as it is.
std::string compact_time(const std::string& iso) {
  if (iso.size() >= 20 && iso[10] == 'T' && iso.back() == 'Z')
    return iso.substr(0, 10) + " " + iso.substr(11, 8);
  return iso.empty() ? "-" : iso;
}

std::string compact_time(const json& v) {
  return v.is_string() ? compact_time(v.get<std::string>()) : cell(v);
}

std::string unix_ms_time(std::int64_t ms) {
  if (ms <= 0)
    return "-";
  auto secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[80];  // room for any int the format could print (keeps -Wformat-truncation quiet)
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02d %02d:%02d:%02d", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

std::string plural(std::size_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

std::string render_actors(const json& d) {
  table t;
  t.headers = {"NAME", "TYPE", "ID", "MAILBOX", "STATS"};
  t.right = {false, false, true, true, false};
  for (auto& a : d.value("registered", json::array()))
    t.rows.push_back({field(a, "name"), field(a, "type"), field(a, "id"), field(a, "mailbox"),
                      stats_summary(a.value("stats", json()))});
  table s;
  s.headers = {"SESSIONS", "COUNT", "MAILBOX", "MAX"};
  s.right = {false, true, true, true};
  for (const char* kind : {"node", "worker"}) {
    std::size_t count = 0;
    std::uint64_t sum = 0, max = 0;
    for (auto& x : d.value("sessions", json::array())) {
      if (x.value("kind", "") != kind)
        continue;
      ++count;
      if (auto m = x.find("mailbox"); m != x.end() && m->is_number_unsigned()) {
        sum += m->get<std::uint64_t>();
        max = std::max(max, m->get<std::uint64_t>());
      }
    }
    s.rows.push_back({kind, std::to_string(count), std::to_string(sum), std::to_string(max)});
  }
  return t.render() + "\n" + s.render();
}

std::string render_mailboxes(const json& d) {
  table t;
  t.headers = {"FAMILY", "ACTORS", "MAILBOX", "MAX", "RATE/S", "COUNTER"};
  t.right = {false, true, true, true, true, false};
  for (auto& f : d.value("families", json::array())) {
    auto counter = f.value("counter", "");
    t.rows.push_back({field(f, "family"), field(f, "actors"), field(f, "mailbox"),
                      field(f, "maxMailbox"), field(f, "rate"), counter.empty() ? "-" : counter});
  }
  char window[64];
  std::snprintf(window, sizeof window, "rates over %.2f s; MAILBOX '-' = not reported\n",
                d.value("windowMs", 0) / 1000.0);
  return t.render() + window;
}

std::string render_nodes(const json& d) {
  if (d.empty())
    return "(no nodes)\n";
  table t;
  t.headers = {"ID", "GROUP", "IP", "ONLINE", "ENABLED", "CPUS", "MEMORY MB", "LAST SEEN (UTC)"};
  t.right = {false, false, false, false, false, true, true, false};
  std::size_t online = 0;
  std::string refused;
  for (auto& n : d) {
    online += n.value("isOnline", false) ? 1 : 0;
    t.rows.push_back({field(n, "id"), field(n, "group"), field(n, "ipAddress"),
                      field(n, "isOnline"), field(n, "isEnabled"), field(n, "processorCount"),
                      field(n, "memory"), compact_time(n.value("lastSeen", json()))});
    if (auto f = n.find("refused"); f != n.end() && f->is_object()) {
      char when[32] = "-";
      auto secs = static_cast<std::time_t>(f->value("lastMs", std::int64_t{0}) / 1000);
      std::tm tm{};
      if (gmtime_r(&secs, &tm))
        std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
      refused += "  " + field(n, "id") + " from " + f->value("address", std::string("?")) + ": " +
                 f->value("reason", std::string("?")) + " (" +
                 std::to_string(f->value("count", std::uint64_t{0})) + "x, last " + when + " UTC)\n";
    }
  }
  auto out = t.render() + plural(d.size(), "node", "nodes") + ", " + std::to_string(online) +
             " online\n";
  if (!refused.empty())
    out += "refused connections (latest per node):\n" + refused;
  return out;
}

std::string render_jobs(const json& d) {
  if (d.empty())
    return "(no jobs)\n";
  table t;
  t.headers = {"ID", "NAME", "TYPE", "CRON", "ENABLED", "CLASS / APPLICATION"};
  for (auto& j : d) {
    auto props = j.value("properties", json::object());
    auto what = props.contains("FullClassName") ? field(props, "FullClassName")
                                                : field(props, "Application");
    t.rows.push_back({field(j, "id"), field(j, "name"), field(j, "jobType"), field(j, "cron"),
                      field(j, "isEnabled"), what});
  }
  return t.render() + plural(d.size(), "job", "jobs") + "\n";
}

std::string render_audit(const json& d) {
  if (d.empty())
    return "(no audited writes)\n";
  table t;
  t.headers = {"TIME", "ROLE", "NAME", "ADDRESS", "ACTION", "TARGET", "STATUS"};
  for (auto& a : d)
    t.rows.push_back({field(a, "time"), field(a, "role"), field(a, "name"), field(a, "address"),
                      field(a, "action"), field(a, "target"), field(a, "status")});
  return t.render() + plural(d.size(), "write", "writes") + ", newest first\n";
}

std::string render_runs(const json& d) {
  if (d.empty())
    return "(no runs)\n";
  table t;
  // Run identities stay whole (they are typed back); the job id is shortened like a git
  // hash to keep a line within 120 columns (`jobs` and --json have it whole).
  t.headers = {"IDENTITY", "JOB", "STATUS", "TOTAL", "SUCCESS", "ERROR", "SKIPPED", "LEFT",
               "WAITING", "LEASED", "UPDATED (UTC)"};
  t.right = {false, false, false, true, true, true, true, true, true, true, false};
  for (auto& r : d) {
    auto live = r.value("live", json());
    t.rows.push_back({field(r, "identity"), field(r, "jobId").substr(0, 8), field(r, "status"),
                      field(r, "total"), field(r, "success"), field(r, "error"),
                      field(r, "skipped"), field(r, "left"),
                      live.is_object() ? field(live, "pending") : "-",
                      live.is_object() ? field(live, "blocksLeased") : "-",
                      compact_time(r.value("updateTime", json()))});
  }
  return t.render() + plural(d.size(), "run", "runs") +
         "; WAITING requests and LEASED blocks are live counters of open runs\n";
}

std::string render_blocks(const json& d) {
  table counts;
  counts.headers = {"STATE", "BLOCKS"};
  counts.right = {false, true};
  auto c = d.value("counts", json::object());
  for (const char* state : {"ready", "leased", "success", "failed"})
    counts.rows.push_back({state, field(c, state)});
  auto out = "run " + d.value("identity", std::string("?")) + "\n" + counts.render();
  // The unfinished and failed blocks are the interesting ones; all are in --json.
  table open;
  open.headers = {"BLOCK", "STATE", "NODE", "ATTEMPTS", "LEASE UNTIL (UTC)"};
  open.right = {false, false, false, true, false};
  std::size_t hidden = 0;
  for (auto& b : d.value("blocks", json::array())) {
    if (b.value("state", "") == "success")
      continue;
    if (open.rows.size() >= 20) {
      ++hidden;
      continue;
    }
    auto node = b.value("nodeId", "");
    auto lease = b.value("leaseUntil", std::int64_t{0});
    open.rows.push_back({field(b, "id"), field(b, "state"), node.empty() ? "-" : node,
                         field(b, "attempts"), unix_ms_time(lease)});
  }
  if (!open.rows.empty())
    out += "\n" + open.render();
  if (hidden)
    out += "... and " + std::to_string(hidden) + " more (see --json)\n";
  return out;
}

std::string render_hosts(const json& d) {
  auto hosts = d.value("hosts", json::array());
  if (hosts.empty())
    return "run " + d.value("identity", std::string("?")) + ": no hosts yet\n";
  table t;
  t.headers = {"HOST KEY", "WAITING", "IN FLIGHT", "CONC", "DELAY MS", "DONE", "ERRORS",
               "SKIPPED", "ROBOTS", "PAUSED UNTIL (UTC)"};
  t.right = {false, true, true, true, true, true, true, true, false, false};
  for (auto& h : hosts) {
    auto waiting = h.value("pending", std::int64_t{0}) + h.value("waitingForRobots", std::int64_t{0});
    auto paused = h.value("pausedUntil", std::int64_t{0});
    t.rows.push_back({field(h, "key"), std::to_string(waiting), field(h, "inFlight"),
                      field(h, "concurrency") + "/" + field(h, "maxConcurrency"),
                      field(h, "delayMs"), field(h, "done"), field(h, "errors"),
                      field(h, "skipped"), field(h, "robots"),
                      paused > 0 ? unix_ms_time(paused) : "-"});
  }
  return "run " + d.value("identity", std::string("?")) + "\n" + t.render() +
         plural(hosts.size(), "host", "hosts") + "\n";
}

} // namespace

std::string check_reply(const json& reply, int expected_version) {
  if (!reply.is_object() || !reply.contains("version"))
    return "the broker's reply is not an inspector reply";
  auto& v = reply["version"];
  if (!v.is_number_integer() || v.get<int>() != expected_version)
    return "version mismatch: the broker (spiderhub " + field(reply, "broker") +
           ") speaks inspector protocol " + cell(v) + ", this console speaks " +
           std::to_string(expected_version) + "; use the console of the broker's release";
  if (!reply.contains("ok") || !reply["ok"].is_boolean())
    return "the broker's reply has no 'ok' field";
  return "";
}

std::string render_reply(const json& reply) {
  auto command = reply.value("command", "");
  if (!reply.value("ok", false)) {
    auto e = reply.value("error", json::object());
    return "error (" + field(e, "code") + "): " + field(e, "message") + "\n";
  }
  auto d = reply.value("data", json());
  if (command == "actors")
    return render_actors(d);
  if (command == "mailboxes")
    return render_mailboxes(d);
  if (command == "nodes")
    return render_nodes(d);
  if (command == "jobs")
    return render_jobs(d);
  if (command == "runs")
    return render_runs(d);
  if (command == "blocks")
    return render_blocks(d);
  if (command == "hosts")
    return render_hosts(d);
  if (command == "audit")
    return render_audit(d);
  if (command == "trigger")
    return "job " + field(d, "jobId") + " triggered: run " + field(d, "identity") + "\n";
  if (command == "exit")
    return "run " + field(d, "identity") + " exited\n";
  if (command == "disable" || command == "enable")
    return "node " + field(d, "id") + (d.value("isEnabled", false) ? " enabled\n" : " disabled\n");
  if (command == "version")
    return "broker spiderhub " + field(d, "broker") + ", inspector protocol " +
           field(d, "protocol") + "\n";
  return d.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

} // namespace spiderhub::console
