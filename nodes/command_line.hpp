#pragma once
// The command line shared by the config-driven programs (broker, node):
// -c/--config FILE, --check, --help, --version.
#include <optional>
#include <string>

namespace spiderhub::nodes {

struct config_command {
  std::string config_path;
  bool check_only = false;  // --check: validate the configuration and exit
};

/// Parses argv; returns the parsed command, or the exit code when the program is done
/// (help or version printed: 0; bad usage: 2, with the message on stderr).
std::optional<config_command> parse_config_command(int argc, char** argv,
                                                   const std::string& default_config,
                                                   const std::string& usage, int& exit_code);

} // namespace spiderhub::nodes
