// spiderhub worker-sample: the sample site spider (sdk/site_spider) on the worker SDK.
#include <boost/program_options.hpp>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdint>
#include <ctime>
#include <iostream>
#include <string>

#include "core/config.hpp"
#include "core/error.hpp"
#include "core/process.hpp"
#include "core/url.hpp"
#include "sdk/site_spider.hpp"
#include "sdk/worker.hpp"
#include "spiderhub/version.hpp"

namespace po = boost::program_options;
using namespace spiderhub;

namespace {

constexpr const char* help_text =
  "Usage: spiderhub worker-sample [OPTIONS]\n"
  "\n"
  "Runs the sample spider as a worker: connects to the broker's /worker hub (signed with\n"
  "the token) under a class name, and serves every run the broker starts for that class.\n"
  "A run crawls one site breadth-first: it requests the start URL, follows the links of\n"
  "each HTML page (within the start URL's registrable domain, www.a.com and a.com alike,\n"
  "unless sameDomain is false) up to maxDepth, skips links to binary files (.pdf, .zip,\n"
  ".jpg, ...), and appends\n"
  "one JSON line per page to the output file:\n"
  "  {\"url\": \"...\", \"title\": \"...\", \"status\": 200, \"depth\": 1}\n"
  "Progress (pages, items, pages/s) goes to stderr at most once per second.\n"
  "\n"
  "The run arguments (the `arguments` of the job) are a JSON object:\n"
  "  {\"startUrl\": \"https://example.com/\",  required, http or https\n"
  "   \"maxDepth\": 3,                        optional (default 3), 0 = start page only\n"
  "   \"output\": \"items.jsonl\",              optional (default items.jsonl), appended to\n"
  "   \"sameDomain\": true}                   optional (default true)\n"
  "\n"
  "Reconnects by itself; results not yet acked are redelivered and not written twice.\n"
  "After a crash (kill -9) the next start cuts a partial last line of the output file;\n"
  "the pages in it were not acked and come again.\n"
  "Stops cleanly on SIGINT/SIGTERM.\n"
  "Exit codes: 0 ok (--runs reached, signal, or --timeout without --runs), 1 runtime\n"
  "failure (e.g. --timeout passed before --runs finished), 2 bad usage or configuration.\n";

} // namespace

int worker_main(int argc, char** argv) {
  // Before any thread exists, so that every SDK thread leaves the signals to us.
  core::block_termination_signals();
  const std::string prog = argc > 0 ? argv[0] : "spiderhub worker-sample";

  po::options_description opts("Options");
  opts.add_options()("help,h", "show this help")("version", "print the version")(
    "config,c", po::value<std::string>(),
    "worker configuration file (YAML, see conf/worker.yaml); optional")(
    "broker", po::value<std::string>(),
    "broker base URL, or several comma-separated (brokers sharing one database: the worker "
    "connects to the active one); overrides the config, e.g. http://127.0.0.1:55626/")(
    "token", po::value<std::string>(), "secret for the connection sign: auth.token or a worker-role secret (overrides the config)")(
    "class", po::value<std::string>(), "worker class name the broker routes runs by (overrides the config)")(
    "runs", po::value<std::int64_t>()->default_value(0),
    "exit 0 after this many runs finished; 0 = run until SIGINT/SIGTERM")(
    "timeout", po::value<double>()->default_value(0),
    "stop after this many seconds: exit 1 if --runs were not reached, else 0; 0 = never")(
    "log-level", po::value<std::string>(), "trace, debug, info, warn, error, critical or off");

  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, opts), vm);
    po::notify(vm);
  } catch (const std::exception& e) {
    std::cerr << prog << ": " << e.what() << "\n\n" << opts;
    return 2;
  }
  if (vm.count("help")) {
    std::cout << help_text << "\n" << opts;
    return 0;
  }
  if (vm.count("version")) {
    std::cout << "spiderhub " << version_string << "\n";
    return 0;
  }

  const auto runs = vm["runs"].as<std::int64_t>();
  const auto timeout_s = vm["timeout"].as<double>();
  core::worker_config cfg;
  try {
    if (runs < 0)
      throw core::input_error("--runs must be 0 or more");
    // A week is far beyond any crawl; the bound keeps the conversion to ms in range.
    if (!(timeout_s >= 0 && timeout_s <= 7 * 24 * 3600.0))
      throw core::input_error("--timeout must be between 0 and 604800 seconds");
    if (vm.count("config"))
      cfg = core::load_worker_config(vm["config"].as<std::string>());
    if (vm.count("broker"))
      cfg.brokers = core::parse_broker_urls(vm["broker"].as<std::string>(), "--broker");
    if (vm.count("token"))
      cfg.token = vm["token"].as<std::string>();
    if (vm.count("class"))
      cfg.full_class_name = vm["class"].as<std::string>();
    if (vm.count("log-level"))
      cfg.log.level = vm["log-level"].as<std::string>();
    if (cfg.full_class_name.empty())
      throw core::input_error("the worker class name is empty");
    core::setup_logging(cfg.log, "worker");
    core::check_client_tls(cfg.tls, cfg.brokers,
                           vm.count("config") ? vm["config"].as<std::string>() : "worker");
  } catch (const core::input_error& e) {
    std::cerr << prog << ": " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << prog << ": " << e.what() << "\n";
    return 1;
  }

  std::string brokers;  // the SDK takes them comma-separated
  for (const auto& b : cfg.brokers)
    brokers += (brokers.empty() ? "" : ",") + b;
  sdk::worker_options wo;
  wo.broker = brokers;
  wo.token = cfg.token;
  wo.full_class_name = cfg.full_class_name;
  wo.poll_max = cfg.poll_max;
  wo.poll_max_bytes = cfg.poll_max_bytes;
  wo.poll_idle = cfg.poll_idle;
  wo.poll_wait = cfg.poll_wait;
  wo.parse_threads = static_cast<unsigned>(cfg.parse_threads);
  wo.reconnect_max = cfg.reconnect_max;
  wo.idle_timeout = cfg.idle_timeout;
  wo.tls_verify = cfg.tls.verify;
  wo.tls_ca_file = cfg.tls.ca_file;

  sdk::site_spider spider;  // declared first: the worker calls into it until destroyed
  int code = 0;
  try {
    sdk::worker w(wo, spider);
    w.start();
    spdlog::info("worker-sample: class {} on {}{}", cfg.full_class_name, brokers,
                 runs > 0 ? " until " + std::to_string(runs) + " runs finished" : std::string{});

    using clock = std::chrono::steady_clock;
    const bool has_deadline = timeout_s > 0;
    const auto deadline =
      clock::now() + std::chrono::milliseconds(static_cast<std::int64_t>(timeout_s * 1000));
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    for (;;) {
      // Wake every 200 ms to look at signals, finished runs and the deadline.
      if (runs > 0 && w.wait_runs_finished(static_cast<std::size_t>(runs),
                                           std::chrono::milliseconds(200))) {
        spdlog::info("worker-sample: {} runs finished", runs);
        break;
      }
      timespec wait{};
      wait.tv_nsec = runs > 0 ? 0 : 200'000'000;  // runs > 0 already waited above
      int sig = sigtimedwait(&set, nullptr, &wait);
      if (sig > 0) {
        spdlog::info("worker-sample: signal {} received, stopping", sig);
        break;
      }
      if (has_deadline && clock::now() >= deadline) {
        if (runs == 0) {
          // No run target: the timeout only bounds how long we serve.
          spdlog::info("worker-sample: {} s passed, stopping", timeout_s);
          break;
        }
        auto st = w.stats();
        spdlog::error("worker-sample: timed out after {} s with {} of {} runs finished{}",
                      timeout_s, st.runs_finished, runs,
                      w.connected() ? "" : " (not connected to the broker)");
        code = 1;
        break;
      }
    }
    w.stop();
    auto st = w.stats();
    spdlog::info("worker-sample: runs {} started / {} finished, {} requests pushed ({} new), "
                 "{} results, {} items written, {} acked, {} retries",
                 st.runs, st.runs_finished, st.pushed, st.accepted, st.results,
                 spider.items_written(), st.acked, st.retries);
  } catch (const core::input_error& e) {
    spdlog::error("worker-sample: {}", e.what());
    return 2;
  } catch (const std::exception& e) {
    spdlog::error("worker-sample: {}", e.what());
    return 1;
  }
  spdlog::shutdown();
  return code;
}
