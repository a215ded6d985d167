#include "sdk/site_spider.hpp"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string_view>

#include "core/canonical_url.hpp"
#include "core/encoding.hpp"
#include "core/error.hpp"
#include "core/url.hpp"
#include "sdk/html_links.hpp"
#include "sdk/link_filter.hpp"
#include "sdk/sitemap.hpp"

namespace spiderhub::sdk {

namespace {

using json = nlohmann::json;

// Deeper than this is a mistake rather than a crawl plan, and the cap keeps depth + 1
// far from overflowing the int32 wire field.
constexpr std::int32_t max_depth_limit = 1000;

constexpr const char* arguments_example =
  R"({"startUrl": "https://example.com/", "maxDepth": 3, "output": "items.jsonl", "sameDomain": true, "sitemaps": false})";

[[noreturn]] void bad_arguments(const std::string& why) {
  throw core::input_error("site_spider: bad run arguments: " + why + " (expected e.g. " +
                          arguments_example + ")");
}

/// Only HTML pages have links worth following; a missing Content-Type is given the
/// benefit of the doubt (gumbo copes with anything).
bool looks_like_html(const protocol::header_map& headers) {
  for (const auto& [name, value] : headers) {
    if (name.size() != 12)
      continue;
    std::string lname;
    for (char c : name)
      lname += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    if (lname != "content-type")
      continue;
    std::string lvalue;
    for (char c : value)
      lvalue += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    return lvalue.find("html") != std::string::npos;
  }
  return true;
}

/// What sameDomain compares: the registrable domain of a named host (public suffix list:
/// www.example.com and example.com are one site, so a start URL redirecting from one to
/// the other keeps its crawl), the host and port of an IP address.
std::string scope_of(const std::string& url) {
  auto origin = core::parse_url_origin(url);
  if (!origin)
    return {};
  const auto& host = origin->host;
  bool ip = host.front() == '[' ||
            host.find_first_not_of("0123456789.") == std::string::npos;
  return ip ? core::url_host(url) : core::registrable_domain(host);
}

/// Key of a URL in the run's sets (libstdc++'s 64-bit Murmur hash: well mixed in every bit,
/// which the digest set's sharding and probing rely on).
std::uint64_t url_key(std::string_view url) {
  return std::hash<std::string_view>{}(url);
}

} // namespace

site_arguments parse_site_arguments(const std::string& arguments) {
  if (arguments.find_first_not_of(" \t\r\n") == std::string::npos)
    bad_arguments("arguments are empty");
  json j;
  try {
    j = json::parse(arguments);
  } catch (const json::exception& e) {
    bad_arguments(std::string("not valid JSON: ") + e.what());
  }
  if (!j.is_object())
    bad_arguments("expected a JSON object, got " + std::string(j.type_name()));
  for (auto kv = j.begin(); kv != j.end(); ++kv) {
    const auto& key = kv.key();
    if (key != "startUrl" && key != "maxDepth" && key != "output" && key != "sameDomain" &&
        key != "sitemaps")
      bad_arguments("unknown key '" + key + "'");
  }
  site_arguments a;
  if (!j.contains("startUrl"))
    bad_arguments("'startUrl' is required");
  if (!j["startUrl"].is_string())
    bad_arguments("'startUrl' must be a string");
  auto raw = j["startUrl"].get<std::string>();
  a.start_url = core::normalize_url(raw);
  if (a.start_url.empty())
    bad_arguments("'startUrl' must be an absolute http or https URL, got '" + raw + "'");
  if (j.contains("maxDepth")) {
    const auto& d = j["maxDepth"];
    if (!d.is_number_integer())
      bad_arguments("'maxDepth' must be an integer");
    auto v = d.get<std::int64_t>();
    if (v < 0 || v > max_depth_limit)
      bad_arguments("'maxDepth' must be between 0 and " + std::to_string(max_depth_limit) +
                    ", got " + std::to_string(v));
    a.max_depth = static_cast<std::int32_t>(v);
  }
  if (j.contains("output")) {
    if (!j["output"].is_string() || j["output"].get<std::string>().empty())
      bad_arguments("'output' must be a non-empty file name");
    a.output = j["output"].get<std::string>();
  }
  if (j.contains("sameDomain")) {
    if (!j["sameDomain"].is_boolean())
      bad_arguments("'sameDomain' must be true or false");
    a.same_domain = j["sameDomain"].get<bool>();
  }
  if (j.contains("sitemaps")) {
    if (!j["sitemaps"].is_boolean())
      bad_arguments("'sitemaps' must be true or false");
    a.sitemaps = j["sitemaps"].get<bool>();
  }
  return a;
}

site_spider::site_spider(std::FILE* progress)
    : progress_(progress), last_report_(std::chrono::steady_clock::now()) {}

site_spider::~site_spider() = default;

std::uintmax_t drop_partial_last_line(const std::string& path) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec || size == 0)
    return 0; // no file yet, or one open_output reports on
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return 0; // unreadable: leave the file as it is (open_output reports what it can't do)
  // Back from the end in 64 KiB steps to the last newline.
  std::uintmax_t end = size;
  std::uintmax_t keep = 0;
  std::string chunk;
  while (end > 0) {
    const std::uintmax_t start = end > (64u << 10) ? end - (64u << 10) : 0;
    chunk.resize(static_cast<std::size_t>(end - start));
    in.seekg(static_cast<std::streamoff>(start));
    in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    if (!in)
      return 0; // unreadable: leave the file as it is
    if (end == size && chunk.back() == '\n')
      return 0; // ends with a whole line
    if (auto nl = chunk.rfind('\n'); nl != std::string::npos) {
      keep = start + nl + 1;
      break;
    }
    end = start;
  }
  in.close();
  std::filesystem::resize_file(path, keep, ec);
  if (ec)
    throw core::input_error("site_spider: cannot cut the partial last line of '" + path +
                            "': " + ec.message());
  return size - keep;
}

std::shared_ptr<std::ofstream> site_spider::open_output(const std::string& path) {
  if (auto existing = files_[path].lock())
    return existing;
  // A worker killed while writing a batch can leave the file ending in part of a line.
  // Those items were not acked, so they come again; appending after the fragment would
  // glue the next item to it.
  if (auto cut = drop_partial_last_line(path); cut > 0 && progress_) {
    std::fprintf(progress_,
                 "site_spider: %s ended in a partial line (%ju bytes, left by a crash); cut "
                 "it: its items come again\n",
                 path.c_str(), cut);
    std::fflush(progress_);
  }
  auto out = std::make_shared<std::ofstream>(path, std::ios::out | std::ios::app | std::ios::binary);
  if (!out->is_open())
    throw core::input_error("site_spider: cannot open output file '" + path +
                            "': " + std::strerror(errno));
  files_[path] = out;
  return out;
}

site_spider::run_state& site_spider::state_for(const protocol::worker_run& run) {
  auto it = runs_.find(run.identity);
  if (it != runs_.end())
    return it->second;
  run_state s;
  s.args = parse_site_arguments(run.arguments);
  s.start_host = scope_of(s.args.start_url);
  s.out = open_output(s.args.output); // cuts a partial last line a crash left
  // A worker restarted in the middle of a run gets unacked results again; items this run
  // already wrote (lines tagged with its identity) are not written a second time.
  {
    std::ifstream in(s.args.output);
    std::string line;
    while (std::getline(in, line)) {
      auto j = json::parse(line, nullptr, false);
      if (j.is_object() && j.value("run", std::string{}) == run.identity)
        s.written.insert(url_key(j.value("url", std::string{})));
    }
  }
  return runs_.emplace(run.identity, std::move(s)).first->second;
}

std::vector<protocol::request> site_spider::start_requests(const protocol::worker_run& run) {
  std::lock_guard<std::mutex> lk(mu_);
  auto& s = state_for(run);
  protocol::request r;
  r.url = s.args.start_url;
  r.depth = 0;
  s.requested.insert(url_key(r.url));
  std::vector<protocol::request> out{r};
  if (s.args.sitemaps) {
    auto robots = core::resolve_url(s.args.start_url, "/robots.txt");
    if (!robots.empty() && s.requested.insert(url_key(robots))) {
      protocol::request rr;
      rr.url = robots;
      out.push_back(std::move(rr));
    }
  }
  return out;
}

bool site_spider::read_sitemap_file(run_state& s, const protocol::result& r,
                                    std::string_view body, parse_result& out) {
  const auto& where = r.final_url.empty() ? r.url : r.final_url;
  std::vector<std::string> locs;
  std::int32_t depth = 0;  // robots.txt and sitemap files are not pages
  if (core::resolve_url(r.url, "/robots.txt") == r.url) {
    locs = robots_sitemaps(body, where);  // none when it failed
  } else {
    if (body.empty() || looks_like_html(r.headers))
      return false;
    auto map = parse_sitemap(body, where);
    if (!map.error.empty())
      std::fprintf(stderr, "site_spider: %s: %s\n", where.c_str(), map.error.c_str());
    if (map.type == sitemap::kind::none)
      return !map.error.empty();  // a damaged sitemap is still not a page
    if (map.type == sitemap::kind::urlset)
      depth = 1;
    locs = std::move(map.locs);
  }
  if (depth > s.args.max_depth)
    return true;
  for (auto& url : locs) {
    if (s.args.same_domain && scope_of(url) != s.start_host)
      continue;
    if (has_binary_extension(url) && depth == 1)
      continue;
    if (!s.requested.insert(url_key(url)))
      continue;
    protocol::request child;
    child.url = std::move(url);
    child.depth = depth;
    out.requests.push_back(std::move(child));
  }
  return true;
}

parse_result site_spider::parse(const protocol::worker_run& run, const protocol::result& r,
                                const std::string& body) {
  ++pages_;
  parse_result out;
  page_info info;
  bool ok = r.error.empty() && r.status_code >= 200 && r.status_code < 300;
  // The expensive part, outside the lock: parse_concurrently() lets several threads in.
  if (ok && !body.empty() && looks_like_html(r.headers)) {
    // Links and title from the page as the node decoded it would read: in Unicode, its
    // links' queries in the page's own encoding, relative links against where it ended.
    const auto& base = r.final_url.empty() ? r.url : r.final_url;
    std::string decoded;
    if (!r.encoding.empty() && r.encoding != "UTF-8") {
      try {
        decoded = core::decode_to_utf8(body, r.encoding);
      } catch (const std::exception&) {
        // An encoding this worker does not know: read the bytes as UTF-8.
      }
    }
    info = decoded.empty() ? extract_links(body, base)
                           : extract_links(decoded, base, r.encoding);
  }

  json item = {{"url", r.url},          {"title", info.title}, {"status", r.status_code},
               {"depth", r.depth},      {"run", run.identity}};
  if (!r.error.empty())
    item["error"] = r.error;
  if (!r.error_kind.empty())
    item["errorKind"] = r.error_kind;
  if (!r.final_url.empty())  // redirected (or a rendered page that navigated)
    item["finalUrl"] = r.final_url;
  if (!r.encoding.empty() && r.encoding != "UTF-8")
    item["encoding"] = r.encoding;
  if (!r.screenshot.empty())
    item["screenshotBase64Bytes"] = r.screenshot.size();

  std::lock_guard<std::mutex> lk(mu_);
  auto& s = state_for(run);
  // robots.txt and sitemaps of a sitemaps run: their URLs, no item.
  if (s.args.sitemaps &&
      read_sitemap_file(s, r, ok ? std::string_view(body) : std::string_view(), out))
    return out;
  out.items.push_back(std::move(item));
  if (r.depth < s.args.max_depth) {
    // A short <meta refresh> is where a browser goes next: followed first, like a link.
    if (info.refresh_delay >= 0 && info.refresh_delay < meta_refresh_max_delay &&
        !info.refresh_url.empty() && info.refresh_url != r.url)
      info.links.insert(info.links.begin(), info.refresh_url);
    for (auto& link : info.links) {
      if (s.args.same_domain && scope_of(link) != s.start_host)
        continue;
      if (has_binary_extension(link))  // a PDF, image or archive: not a page
        continue;
      // The broker's dedup key includes request.referer, so the referer travels as a
      // header instead: the broker then dedups by URL, also across worker restarts. The
      // local set only saves pushing links already requested by this process.
      if (!s.requested.insert(url_key(link)))
        continue;
      protocol::request child;
      child.url = link;
      child.depth = r.depth + 1;
      child.headers["Referer"] = r.url;
      out.requests.push_back(std::move(child));
    }
  }
  report_progress();
  return out;
}

void site_spider::on_items(const protocol::worker_run& run, const std::vector<json>& items) {
  std::lock_guard<std::mutex> lk(mu_);
  auto& s = state_for(run);
  std::size_t n = 0;
  std::string lines;
  for (const auto& item : items) {
    auto url = item.value("url", std::string{});
    // Results are at-least-once: a page seen again after a reconnect is not written twice.
    if (!s.written.insert(url_key(url)))
      continue;
    // Titles come from arbitrary pages; replace invalid UTF-8 rather than fail the batch.
    lines += item.dump(-1, ' ', false, json::error_handler_t::replace);
    lines += '\n';
    ++n;
  }
  // The batch goes out in one write and one flush, so the file is complete up to the last
  // ack; only a crash inside that write leaves a partial line (cut at the next start).
  s.out->write(lines.data(), static_cast<std::streamsize>(lines.size()));
  s.out->flush();
  if (!*s.out)
    throw std::runtime_error("site_spider: cannot write to '" + s.args.output + "'");
  items_written_ += n;
  report_progress();
}

void site_spider::on_run_finished(const protocol::worker_run& run) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = runs_.find(run.identity);
  if (it == runs_.end())
    return;
  if (progress_) {
    std::fprintf(progress_, "site_spider: run %s finished: %zu pages requested, %zu items in %s\n",
                 run.identity.c_str(), it->second.requested.size(), it->second.written.size(),
                 it->second.args.output.c_str());
    std::fflush(progress_);
  }
  runs_.erase(it);  // closes the output file when no other run shares it
  for (auto f = files_.begin(); f != files_.end();)
    f = f->second.expired() ? files_.erase(f) : std::next(f);
}

void site_spider::report_progress() {
  if (!progress_)
    return;
  auto now = std::chrono::steady_clock::now();
  auto elapsed = std::chrono::duration<double>(now - last_report_).count();  // seconds
  if (elapsed < 1.0)  // at most one line per second
    return;
  auto pages = pages_.load();
  double rate = elapsed > 0 ? static_cast<double>(pages - pages_at_last_report_) / elapsed : 0.0;
  std::fprintf(progress_, "site_spider: %llu pages, %llu items, %.1f pages/s\n",
               static_cast<unsigned long long>(pages),
               static_cast<unsigned long long>(items_written_.load()), rate);
  std::fflush(progress_);
  last_report_ = now;
  pages_at_last_report_ = pages;
}

} // namespace spiderhub::sdk
