// spiderhub console: asks the broker's inspector actor (actors/console/inspector.hpp) over
// the CAF middleman. One command and exit, or an interactive REPL with history and tab
// completion. Parsing and table layout live in actors/console/console_cli.hpp.
#include <boost/program_options.hpp>
#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#ifdef SPIDERHUB_HAVE_READLINE
#include <readline/history.h>
#include <readline/readline.h>
#endif

#include "actors/console/console_cli.hpp"
#include "actors/console/inspector.hpp"
#include "core/error.hpp"
#include "spiderhub/version.hpp"

namespace po = boost::program_options;
using namespace spiderhub;
using json = nlohmann::json;

namespace {

struct console_options {
  console::endpoint broker;
  std::string secret;
  bool json = false;
  std::chrono::milliseconds timeout{5000};
};

std::string where(const console_options& o) {
  return o.broker.host + ":" + std::to_string(o.broker.port);
}

/// The console's side of the inspector protocol: one connection, one request at a time,
/// every wait bounded by --timeout.
class inspector_client {
 public:
  struct outcome {
    json reply;          // the envelope, when one arrived and could be read
    std::string error;   // for people, when there is no usable reply
  };

  inspector_client(caf::actor_system& sys, console_options opts)
      : sys_(sys), self_(sys), opts_(std::move(opts)) {}

  /// Connects unless connected; "" on success, else a message for people.
  std::string connect() {
    if (remote_)
      return "";
    std::string error;
    auto mm = sys_.middleman().actor_handle();
    self_->request(mm, opts_.timeout, caf::connect_atom::value, opts_.broker.host,
                   opts_.broker.port)
      .receive(
        [&](const caf::node_id&, caf::strong_actor_ptr& ptr, const std::set<std::string>&) {
          if (!ptr)
            error = "nothing is published at " + where(opts_) +
                    " (is it the broker's inspector.port?)";
          else
            remote_ = caf::actor_cast<caf::actor>(ptr);
        },
        [&](const caf::error& err) { error = describe_connect_error(err); });
    // A proxy whose connection closed drops messages silently (the request would only
    // time out): watching it lets the next call reconnect at once instead.
    if (remote_)
      self_->monitor(remote_);
    return error;
  }

  /// Sends one command; reconnects first when an earlier connection was lost.
  outcome call(const console::command_line& line) {
    outcome out;
    forget_lost_connection();
    if (auto e = connect(); !e.empty()) {
      out.error = e;
      return out;
    }
    self_
      ->request(remote_, opts_.timeout, actors::inspect_atom::value, opts_.secret, line.command,
                line.argument)
      .receive(
        [&](const std::string& text) {
          auto reply = json::parse(text, nullptr, false);
          if (auto problem = console::check_reply(reply, actors::inspector_protocol_version);
              !problem.empty())
            out.error = problem;
          else
            out.reply = std::move(reply);
        },
        [&](const caf::error& err) {
          out.error = describe_request_error(err);
          // The next call connects again: the broker may have restarted.
          remote_ = nullptr;
        });
    return out;
  }

  /// True when a connect attempt timed out: the middleman may still sit in connect(2),
  /// and the actor system would wait for it on shutdown.
  bool connect_hung() const { return connect_hung_; }

 private:
  // Takes the down messages of earlier connections without waiting.
  void forget_lost_connection() {
    for (bool more = true; more;) {
      more = false;
      self_->receive(
        [&](const caf::down_msg& dm) {
          if (remote_ && dm.source == remote_.address())
            remote_ = nullptr;
          more = true;
        },
        caf::after(std::chrono::seconds(0)) >> [] {});
    }
  }

  std::string seconds() const {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f", opts_.timeout.count() / 1000.0);
    return buf;
  }

  std::string describe_connect_error(const caf::error& err) {
    auto at = where(opts_);
    if (err == caf::sec::request_timeout) {
      connect_hung_ = true;
      return "cannot reach the broker's inspector at " + at + ": no answer within " +
             seconds() + " s (is this the broker's inspector.port, not its HTTP port?)";
    }
    if (err == caf::sec::incompatible_application_ids)
      return at + " is not a spiderhub inspector (CAF application identifier differs)";
    if (err == caf::sec::incompatible_versions)
      return at + " runs an incompatible CAF version; use the console of the broker's release";
    // CAF's rendering of a refused or unresolvable connect is noise to people.
    auto detail = err == caf::sec::cannot_connect_to_node   ? std::string("connection failed")
                  : err == caf::sec::malformed_basp_message ? std::string("the peer does not speak "
                                                                          "CAF's protocol")
                                                            : sys_.render(err);
    return "cannot reach the broker's inspector at " + at + ": " + detail +
           " (is the broker running with inspector.enabled, and is this its inspector.port?)";
  }

  std::string describe_request_error(const caf::error& err) {
    if (err == caf::sec::request_timeout)
      return "the broker did not answer within " + seconds() + " s";
    if (err == caf::sec::unexpected_message)
      return "version mismatch: the broker's inspector does not understand this console "
             "(inspector protocol " +
             std::to_string(actors::inspector_protocol_version) +
             "); use the console of the broker's release";
    return "the request failed: " + sys_.render(err);
  }

  caf::actor_system& sys_;
  caf::scoped_actor self_;
  console_options opts_;
  caf::actor remote_;
  bool connect_hung_ = false;
};

/// Prints a reply (table or raw JSON); returns the exit code it stands for.
int print_reply(const console_options& o, const json& reply) {
  bool ok = reply.value("ok", false);
  if (o.json)
    std::cout << reply.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
  else
    (ok ? std::cout : std::cerr) << console::render_reply(reply);
  return ok ? 0 : 1;
}

std::string help_of(const std::string& command) {
  if (command.empty())
    return console::help_text();
  if (command == "help")
    return "help [COMMAND]: the command list, or one command\n";
  if (command == "quit")
    return "quit: leave the console (also 'exit' without RUN, or Ctrl-D)\n";
  auto* c = actors::find_inspector_command(command);
  auto usage = c->name + (c->argument.empty() ? "" : " " + c->argument);
  return usage + ": " + c->summary + "\n";
}

// ---- REPL ---------------------------------------------------------------------------------

// Readline callbacks are plain C functions: they reach the client through this pointer,
// set while the REPL runs.
inspector_client* completion_client = nullptr;

#ifdef SPIDERHUB_HAVE_READLINE
std::vector<std::string> completion_candidates;

char* candidate_generator(const char* text, int state) {
  static std::size_t next = 0;
  if (state == 0)
    next = 0;
  auto len = std::strlen(text);
  while (next < completion_candidates.size()) {
    const auto& c = completion_candidates[next++];
    if (c.compare(0, len, text) == 0)
      return strdup(c.c_str());  // readline frees it
  }
  return nullptr;
}

// Ids for the argument of a command, asked from the broker (GUIDs are no fun to type).
std::vector<std::string> argument_candidates(const std::string& command) {
  static const std::vector<std::pair<std::string, std::string>> source = {
    {"trigger", "jobs"}, {"runs", "jobs"}, {"blocks", "runs"},
    {"exit", "runs"},    {"disable", "nodes"}, {"enable", "nodes"}};
  std::vector<std::string> out;
  if (command == "help")
    return console::command_names();
  for (auto& [cmd, list] : source) {
    if (cmd != command || !completion_client)
      continue;
    auto r = completion_client->call({list, ""});
    if (!r.error.empty() || !r.reply.value("ok", false))
      return out;
    for (auto& row : r.reply["data"]) {
      auto key = row.contains("identity") ? row.value("identity", "") : row.value("id", "");
      if (!key.empty())
        out.push_back(key);
    }
  }
  return out;
}

char** complete(const char* text, int start, int) {
  rl_attempted_completion_over = 1;  // never fall back to file names
  std::vector<std::string> words;
  {
    std::string before(rl_line_buffer, static_cast<std::size_t>(start));
    std::size_t i = 0;
    while (i < before.size()) {
      while (i < before.size() && before[i] == ' ')
        ++i;
      auto j = before.find(' ', i);
      if (i < before.size())
        words.push_back(before.substr(i, j == std::string::npos ? std::string::npos : j - i));
      i = j == std::string::npos ? before.size() : j;
    }
  }
  if (words.empty())
    completion_candidates = console::command_names();
  else if (words.size() == 1)
    completion_candidates = argument_candidates(words[0]);
  else
    return nullptr;
  return rl_completion_matches(text, candidate_generator);
}

std::string history_path() {
  const char* home = std::getenv("HOME");
  return home && *home ? std::string(home) + "/.spiderhub_console_history" : std::string{};
}
#endif

// Reads one line; false at end of input.
bool read_line(const std::string& prompt, std::string& line) {
#ifdef SPIDERHUB_HAVE_READLINE
  char* raw = readline(prompt.c_str());
  if (!raw)
    return false;
  line = raw;
  std::free(raw);
  if (line.find_first_not_of(' ') != std::string::npos) {
    // Consecutive duplicates are kept once, like a shell with ignoredups.
    auto* last = history_length > 0 ? history_get(history_base + history_length - 1) : nullptr;
    if (!last || line != last->line)
      add_history(line.c_str());
  }
  return true;
#else
  if (isatty(STDIN_FILENO))
    std::cout << prompt << std::flush;
  return static_cast<bool>(std::getline(std::cin, line));
#endif
}

int repl(inspector_client& client, const console_options& o) {
  auto hello = client.call({"version", ""});
  if (!hello.error.empty()) {
    std::cerr << "spiderhub console: " << hello.error << "\n";
    return 1;
  }
  if (!hello.reply.value("ok", false))
    return print_reply(o, hello.reply);
  std::cout << "connected to spiderhub " << hello.reply.value("broker", "?") << " at "
            << where(o) << " (inspector protocol " << actors::inspector_protocol_version
            << "); 'help' lists commands, Ctrl-D leaves\n";
  completion_client = &client;
#ifdef SPIDERHUB_HAVE_READLINE
  rl_readline_name = "spiderhub-console";
  rl_attempted_completion_function = complete;
  auto history = history_path();
  stifle_history(1000);
  if (!history.empty())
    read_history(history.c_str());
#endif
  auto prompt = "spiderhub@" + where(o) + "> ";
  std::string text;
  while (read_line(prompt, text)) {
    std::vector<std::string> words;
    std::istringstream in(text);
    for (std::string w; in >> w;)
      words.push_back(w);
    // A bare `exit` leaves, as in a shell; `exit RUN` stops a run.
    if (words.size() == 1 && words[0] == "exit")
      break;
    console::command_line line;
    try {
      line = console::parse_command(words);
    } catch (const core::input_error& e) {
      std::cerr << "error: " << e.what() << "\n";
      continue;
    }
    if (line.command.empty())
      continue;
    if (line.command == "quit")
      break;
    if (line.command == "help") {
      std::cout << help_of(line.argument);
      continue;
    }
    auto r = client.call(line);
    if (!r.error.empty())
      std::cerr << "error: " << r.error << "\n";
    else
      print_reply(o, r.reply);
  }
  completion_client = nullptr;
#ifdef SPIDERHUB_HAVE_READLINE
  if (!history.empty())
    write_history(history.c_str());
#endif
  return 0;
}

void usage(std::ostream& out, const po::options_description& opts) {
  out << "Usage: spiderhub console [OPTIONS] [COMMAND [ARG]]\n\n"
         "Inspects a running broker through its inspector actor (broker.yaml 'inspector').\n"
         "With COMMAND it runs that one command and exits (0 ok, 1 failure, 2 bad usage);\n"
         "without, it starts an interactive console with history and tab completion.\n\n"
         "Commands:\n"
      << console::help_text() << "\n"
      << opts
      << "\nThe secret can also come from the environment variable SPIDERHUB_INSPECTOR_SECRET\n"
         "(keeps it out of the process list).\n";
}

} // namespace

int console_main(int argc, char** argv) {
  po::options_description opts("Options");
  opts.add_options()("help,h", "show this help")("version", "print the version")(
    "broker,b", po::value<std::string>()->default_value("127.0.0.1:4242"),
    "the broker's inspector, HOST:PORT ([IPV6]:PORT)")(
    "secret,s", po::value<std::string>(), "inspector secret (broker.yaml inspector.secret)")(
    "json,j", "print the inspector's raw JSON replies")(
    "timeout,t", po::value<double>()->default_value(5.0),
    "seconds to wait for the connection and for each reply");
  po::options_description hidden;
  hidden.add_options()("words", po::value<std::vector<std::string>>());
  po::positional_options_description pos;
  pos.add("words", -1);
  po::options_description all;
  all.add(opts).add(hidden);
  po::variables_map vm;
  console_options o;
  console::command_line line;
  try {
    po::store(po::command_line_parser(argc, argv).options(all).positional(pos).run(), vm);
    po::notify(vm);
    if (vm.count("help")) {
      usage(std::cout, opts);
      return 0;
    }
    if (vm.count("version")) {
      std::cout << "spiderhub " << version_string << " (inspector protocol "
                << actors::inspector_protocol_version << ")\n";
      return 0;
    }
    o.broker = console::parse_endpoint(vm["broker"].as<std::string>());
    if (vm.count("secret"))
      o.secret = vm["secret"].as<std::string>();
    else if (const char* env = std::getenv("SPIDERHUB_INSPECTOR_SECRET"))
      o.secret = env;
    o.json = vm.count("json") > 0;
    auto t = vm["timeout"].as<double>();
    if (!(t >= 0.1 && t <= 3600))
      throw core::input_error("--timeout must be 0.1-3600 seconds");
    o.timeout = std::chrono::milliseconds(static_cast<std::int64_t>(t * 1000));
    if (vm.count("words"))
      line = console::parse_command(vm["words"].as<std::vector<std::string>>());
  } catch (const std::exception& e) {
    std::cerr << "spiderhub console: " << e.what() << "\n";
    return 2;
  }
  if (line.command == "help") {
    std::cout << help_of(line.argument);
    return 0;
  }
  if (line.command == "quit")
    return 0;

  caf::actor_system_config cfg;
  cfg.load<caf::io::middleman>();
  cfg.set("middleman.app-identifiers", std::vector<std::string>{actors::inspector_app_id});
  cfg.set("scheduler.max-threads", 2);
  caf::actor_system sys{cfg};
  int rc = 0;
  bool hung = false;
  {
    inspector_client client(sys, o);
    if (line.command.empty()) {
      rc = repl(client, o);
    } else {
      auto r = client.call(line);
      if (!r.error.empty()) {
        std::cerr << "spiderhub console: " << r.error << "\n";
        rc = 1;
      } else {
        rc = print_reply(o, r.reply);
      }
    }
    hung = client.connect_hung();
  }
  if (hung) {
    // The middleman may be blocked in connect(2) to an unresponsive host for minutes, and
    // the actor system's destructor would wait for it: leave now, output flushed.
    std::cout.flush();
    std::cerr.flush();
    std::_Exit(rc);
  }
  return rc;
}
