// spiderhub cron: prints the next fire times of an expression, to check it.
#include <boost/program_options.hpp>

#include <chrono>
#include <iostream>

#include "core/cron.hpp"
#include "core/error.hpp"

namespace po = boost::program_options;
using namespace spiderhub;

int cron_main(int argc, char** argv) {
  po::options_description opts("Options");
  opts.add_options()("help,h", "show this help")(
    "count,n", po::value<int>()->default_value(5), "how many fire times (1-1000)")(
    "from", po::value<std::string>(), "start instant, ISO-8601 (default: now)")(
    "tz", po::value<std::string>()->default_value("UTC"), "IANA time zone of the expression");
  po::options_description hidden;
  hidden.add_options()("expr", po::value<std::string>());
  po::positional_options_description pos;
  pos.add("expr", 1);
  po::options_description all;
  all.add(opts).add(hidden);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(all).positional(pos).run(), vm);
    po::notify(vm);
  } catch (const std::exception& e) {
    std::cerr << "spiderhub cron: " << e.what() << "\n";
    return 2;
  }
  if (vm.count("help") || !vm.count("expr")) {
    (vm.count("help") ? std::cout : std::cerr)
      << "Usage: spiderhub cron EXPR [--count N] [--from ISO-8601] [--tz ZONE]\n\n"
         "Prints the next fire times of a 5-field (min hour dom month dow) or 6-field\n"
         "(sec min hour dom month dow) cron expression or macro (@hourly, @daily, ...),\n"
         "one ISO-8601 UTC timestamp a line.\n\n"
      << opts;
    return vm.count("help") ? 0 : 2;
  }
  try {
    auto count = vm["count"].as<int>();
    if (count < 1 || count > 1000)
      throw core::input_error("--count must be 1-1000");
    auto sched = core::cron_schedule::parse(vm["expr"].as<std::string>(), vm["tz"].as<std::string>());
    auto from = vm.count("from")
                  ? core::parse_iso8601(vm["from"].as<std::string>())
                  : std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
    auto times = sched.next_n(from, static_cast<std::size_t>(count));
    if (times.empty()) {
      std::cerr << "spiderhub cron: the expression never fires\n";
      return 1;
    }
    for (auto t : times)
      std::cout << core::format_iso8601_utc(t) << "\n";
  } catch (const core::input_error& e) {
    std::cerr << "spiderhub cron: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
