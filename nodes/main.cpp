// spiderhub: one binary, one subcommand per program. Each subcommand's main lives in
// its own file in nodes/.
#include <cstring>
#include <iostream>
#include <string>

#include "core/auth.hpp"
#include "spiderhub/version.hpp"

int broker_main(int argc, char** argv);
int node_main(int argc, char** argv);
int console_main(int argc, char** argv);
int worker_main(int argc, char** argv);
int cron_main(int argc, char** argv);

namespace {

void usage(std::ostream& out) {
  out << "spiderhub " << spiderhub::version_string
      << " - distributed crawling runtime\n\n"
         "Usage: spiderhub COMMAND [OPTIONS]\n\n"
         "Commands:\n"
         "  broker          run the broker (gateway, sessions, scheduler, dispatcher, storage)\n"
         "  node            run a crawler node that connects to a broker\n"
         "  console         inspect a running broker (actors, nodes, jobs, runs, blocks)\n"
         "  worker-sample   run the sample spider worker (crawls a site following links)\n"
         "  cron            print the next fire times of a cron expression\n"
         "  token           print a fresh random secret for auth.token or auth.tokens\n\n"
         "Run 'spiderhub COMMAND --help' for the options of a command.\n"
         "Exit codes: 0 ok, 1 runtime failure, 2 bad usage or configuration.\n";
}

} // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    usage(std::cerr);
    return 2;
  }
  std::string cmd = argv[1];
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    usage(std::cout);
    return 0;
  }
  if (cmd == "--version" || cmd == "-V") {
    std::cout << "spiderhub " << spiderhub::version_string << "\n";
    return 0;
  }
  // Subcommands see argv[0] = "spiderhub COMMAND".
  std::string prog = std::string("spiderhub ") + cmd;
  argv[1] = prog.data();
  if (cmd == "broker")
    return broker_main(argc - 1, argv + 1);
  if (cmd == "node")
    return node_main(argc - 1, argv + 1);
  if (cmd == "console")
    return console_main(argc - 1, argv + 1);
  if (cmd == "worker-sample")
    return worker_main(argc - 1, argv + 1);
  if (cmd == "cron")
    return cron_main(argc - 1, argv + 1);
  if (cmd == "token") {
    if (argc > 2 && (std::strcmp(argv[2], "--help") == 0 || std::strcmp(argv[2], "-h") == 0)) {
      std::cout << "Usage: spiderhub token\n\nPrints a fresh random secret (32 bytes from "
                   "OpenSSL's generator, 64 hex characters)\nfor auth.token or a secret of "
                   "auth.tokens in broker.yaml, and the token of node.yaml\nor a worker.\n";
      return 0;
    }
    if (argc > 2) {
      std::cerr << "spiderhub token: takes no arguments (see --help)\n";
      return 2;
    }
    std::cout << spiderhub::core::new_secret() << "\n";
    return 0;
  }
  std::cerr << "spiderhub: unknown command '" << cmd << "'\n\n";
  usage(std::cerr);
  return 2;
}
