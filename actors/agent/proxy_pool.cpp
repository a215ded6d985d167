#include "actors/agent/proxy_pool.hpp"

#include <curl/curl.h>

#include <functional>

#include "core/proxy.hpp"

namespace spiderhub::actors {

proxy_pool::proxy_pool(std::vector<std::string> urls, std::string rotation, int max_failures,
                       std::chrono::milliseconds bench, std::uint32_t seed)
    : urls_(std::move(urls)), rotation_(std::move(rotation)),
      max_failures_(std::max(1, max_failures)), bench_(bench), rng_(seed) {
  for (const auto& u : urls_)
    entries_.push_back(entry{u, core::redacted_proxy(u)});
}

bool proxy_pool::benched(int i, clock::time_point now) const {
  return entries_[static_cast<std::size_t>(i)].bench_until > now;
}

int proxy_pool::pick(std::string_view host, clock::time_point now) {
  const auto n = entries_.size();
  if (n == 0)
    return -1;
  std::vector<int> healthy;
  for (std::size_t i = 0; i < n; ++i)
    if (!benched(static_cast<int>(i), now))
      healthy.push_back(static_cast<int>(i));
  if (healthy.empty()) {
    std::size_t first = 0;
    for (std::size_t i = 1; i < n; ++i)
      if (entries_[i].bench_until < entries_[first].bench_until)
        first = i;
    return static_cast<int>(first);
  }
  if (rotation_ == "random")
    return healthy[std::uniform_int_distribution<std::size_t>(0, healthy.size() - 1)(rng_)];
  if (rotation_ == "per_host") {
    // The host's own proxy while it is healthy, else the next healthy one after it.
    auto home = std::hash<std::string_view>{}(host) % n;
    for (std::size_t k = 0; k < n; ++k)
      if (!benched(static_cast<int>((home + k) % n), now))
        return static_cast<int>((home + k) % n);
  }
  for (std::size_t k = 0; k < n; ++k) {
    auto i = (next_ + k) % n;
    if (!benched(static_cast<int>(i), now)) {
      next_ = i + 1;
      return static_cast<int>(i);
    }
  }
  return healthy.front();
}

void proxy_pool::succeeded(int i) {
  auto& e = entries_[static_cast<std::size_t>(i)];
  e.failures = 0;
  e.bench_until = {};
}

bool proxy_pool::failed(int i, clock::time_point now) {
  auto& e = entries_[static_cast<std::size_t>(i)];
  if (++e.failures < max_failures_)
    return false;
  e.failures = max_failures_ - 1;  // after the bench, one failed re-test benches it again
  e.bench_until = now + bench_;
  return true;
}

bool proxy_pool::same_settings(const std::vector<std::string>& urls, const std::string& rotation,
                               int max_failures, std::chrono::milliseconds bench) const {
  return urls == urls_ && rotation == rotation_ && std::max(1, max_failures) == max_failures_ &&
         bench == bench_;
}

bool proxy_failure(int curl_code, long status) {
  switch (curl_code) {
  case CURLE_OK:
    return status == 407;
  case CURLE_COULDNT_RESOLVE_PROXY:
  case CURLE_COULDNT_CONNECT:
  case CURLE_SEND_ERROR:
  case CURLE_RECV_ERROR:
  case CURLE_GOT_NOTHING:
  case CURLE_OPERATION_TIMEDOUT:
  case CURLE_SSL_CONNECT_ERROR:
#if LIBCURL_VERSION_NUM >= 0x074900
  case CURLE_PROXY:
#endif
    return true;
  default:
    return false;
  }
}

} // namespace spiderhub::actors
