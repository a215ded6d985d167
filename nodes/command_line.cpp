#include "nodes/command_line.hpp"

#include <boost/program_options.hpp>

#include <iostream>

#include "spiderhub/version.hpp"

namespace spiderhub::nodes {

namespace po = boost::program_options;

std::optional<config_command> parse_config_command(int argc, char** argv,
                                                   const std::string& default_config,
                                                   const std::string& usage, int& exit_code) {
  po::options_description opts("Options");
  opts.add_options()("help,h", "show this help")("version", "print the version")(
    "config,c", po::value<std::string>()->default_value(default_config),
    ("configuration file (YAML; every key is documented in " + default_config + ")").c_str())(
    "check", "load and validate the configuration, then exit");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, opts), vm);
    po::notify(vm);
  } catch (const std::exception& e) {
    std::cerr << argv[0] << ": " << e.what() << "\n" << opts;
    exit_code = 2;
    return std::nullopt;
  }
  if (vm.count("help")) {
    std::cout << usage << "\n" << opts;
    exit_code = 0;
    return std::nullopt;
  }
  if (vm.count("version")) {
    std::cout << "spiderhub " << version_string << "\n";
    exit_code = 0;
    return std::nullopt;
  }
  return config_command{vm["config"].as<std::string>(), vm.count("check") > 0};
}

} // namespace spiderhub::nodes
