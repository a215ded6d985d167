#include "core/auth.hpp"

#include <openssl/rand.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <stdexcept>

#include "core/digest.hpp"
#include "core/text.hpp"

namespace spiderhub::core {

std::optional<role> parse_role(std::string_view text) {
  if (text == "node")
    return role_node;
  if (text == "worker")
    return role_worker;
  if (text == "viewer")
    return role_viewer;
  if (text == "admin")
    return role_admin;
  return std::nullopt;
}

std::string roles_text(unsigned roles) {
  std::string out;
  for (auto [bit, name] : {std::pair{role_admin, "admin"}, std::pair{role_viewer, "viewer"},
                           std::pair{role_node, "node"}, std::pair{role_worker, "worker"}})
    if (roles & bit)
      out += (out.empty() ? "" : ",") + std::string(name);
  return out.empty() ? "none" : out;
}

keyring::keyring(const std::string& token, std::vector<credential> list) : creds_(std::move(list)) {
  if (!token.empty())
    for (auto r : {role_admin, role_viewer, role_node, role_worker})
      creds_.push_back({"token", r, token});
}

std::optional<principal> keyring::bearer(std::string_view secret) const {
  if (secret.empty())
    return std::nullopt;
  std::optional<principal> p;
  for (auto& c : creds_) {
    if (!secure_equals(c.secret, secret))
      continue;
    if (!p)
      p = principal{c.name, 0};
    p->roles |= c.role_;
  }
  return p;
}

std::optional<principal> keyring::verify_sign(role r, std::string_view subject,
                                              std::string_view ts, std::string_view sign,
                                              std::int64_t now_unix, std::int64_t window_s,
                                              std::string* why) const {
  std::string first_error = "no secret of role " + roles_text(r);
  bool any = false;
  for (auto& c : creds_) {
    if (c.role_ != r)
      continue;
    auto e = verify_connection_sign(c.secret, subject, ts, sign, now_unix, window_s);
    if (e.empty())
      return principal{c.name, static_cast<unsigned>(r)};
    if (!any)
      first_error = e;  // the same for every secret unless it is "wrong sign"
    any = true;
  }
  if (why)
    *why = first_error;
  return std::nullopt;
}

std::string keyring::first_secret(role r) const {
  for (auto& c : creds_)
    if (c.role_ == r)
      return c.secret;
  return {};
}

bool is_loopback_address(std::string_view address) {
  if (address == "localhost" || address == "::1" || address == "[::1]")
    return true;
  if (address.substr(0, 4) != "127.")
    return false;
  int dots = 0;
  for (char c : address.substr(4)) {
    if (c == '.')
      ++dots;
    else if (c < '0' || c > '9')
      return false;
  }
  return dots == 2;
}

bool is_weak_secret(std::string_view secret) {
  // Shorter ones are weak anyway; these are long defaults of sample configs.
  static const std::array<std::string_view, 5> known = {
    "1234567890123456", "0123456789abcdef", "changemechangeme", "spiderhub-secret",
    "e2e-token-e2e-token"};
  if (secret.size() < 16)
    return true;
  return std::any_of(known.begin(), known.end(), [&](auto k) { return iequals(secret, k); }) ||
         std::all_of(secret.begin(), secret.end(), [&](char c) { return c == secret[0]; });
}

std::string safe_start_problem(std::string_view address, const keyring& keys) {
  if (is_loopback_address(address))
    return {};
  auto where = "on " + std::string(address) + " (not loopback)";
  if (keys.open())
    return "refusing to listen " + where + " without authentication: auth.token is empty";
  for (auto& c : keys.credentials())
    if (is_weak_secret(c.secret))
      return "refusing to listen " + where + " with a weak or well-known secret (credential '" +
             c.name + "', role " + roles_text(c.role_) +
             "): use 16 or more random characters";
  return {};
}

bool readable_by_others(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && (st.st_mode & (S_IRGRP | S_IROTH)) != 0;
}

std::string new_secret() {
  unsigned char b[32];
  if (RAND_bytes(b, sizeof b) != 1)
    throw std::runtime_error("RAND_bytes failed");
  static const char* hex = "0123456789abcdef";
  std::string out;
  out.reserve(64);
  for (auto c : b) {
    out += hex[c >> 4];
    out += hex[c & 15];
  }
  return out;
}

failure_limiter::failure_limiter(int max_failures, std::int64_t window_ms, std::int64_t block_ms,
                                 std::size_t max_entries)
  : max_failures_(std::max(1, max_failures)),
    window_ms_(std::max<std::int64_t>(1, window_ms)),
    block_ms_(std::max<std::int64_t>(1, block_ms)),
    max_entries_(std::max<std::size_t>(1, max_entries)) {}

std::int64_t failure_limiter::blocked_for(const std::string& address, std::int64_t now_ms) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = entries_.find(address);
  if (it == entries_.end() || it->second.blocked_until <= now_ms)
    return 0;
  return it->second.blocked_until - now_ms;
}

void failure_limiter::make_room(std::int64_t now_ms) {
  for (auto it = entries_.begin(); it != entries_.end();) {
    auto& e = it->second;
    if (e.blocked_until <= now_ms && e.window_start + window_ms_ <= now_ms)
      it = entries_.erase(it);
    else
      ++it;
  }
  while (entries_.size() >= max_entries_) {
    auto oldest = std::min_element(entries_.begin(), entries_.end(), [](auto& a, auto& b) {
      return a.second.window_start < b.second.window_start;
    });
    entries_.erase(oldest);
  }
}

bool failure_limiter::failed(const std::string& address, std::int64_t now_ms) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = entries_.find(address);
  if (it == entries_.end()) {
    if (entries_.size() >= max_entries_)
      make_room(now_ms);
    it = entries_.emplace(address, entry{now_ms, 0, 0}).first;
  }
  auto& e = it->second;
  if (e.window_start + window_ms_ <= now_ms) {
    e.window_start = now_ms;
    e.failures = 0;
  }
  if (++e.failures >= max_failures_ && e.blocked_until <= now_ms) {
    e.blocked_until = now_ms + block_ms_;
    e.failures = 0;
    e.window_start = now_ms;
    return true;
  }
  return false;
}

std::size_t failure_limiter::tracked() {
  std::lock_guard<std::mutex> lock(mutex_);
  return entries_.size();
}

sign_ledger::sign_ledger(std::int64_t window_ms, std::size_t max_entries)
  : keep_ms_(2 * std::max<std::int64_t>(1, window_ms)), max_entries_(std::max<std::size_t>(1, max_entries)) {}

bool sign_ledger::first_use(const std::string& sign, std::int64_t now_ms) {
  std::lock_guard<std::mutex> lock(mutex_);
  // Expired signs leave in the order they came (their expiry only grows with now).
  while (head_ < order_.size() && order_[head_].first <= now_ms) {
    auto it = expiry_.find(order_[head_].second);
    if (it != expiry_.end() && it->second <= now_ms)
      expiry_.erase(it);
    ++head_;
  }
  if (head_ > 1024 && head_ * 2 > order_.size()) {
    order_.erase(order_.begin(), order_.begin() + static_cast<std::ptrdiff_t>(head_));
    head_ = 0;
  }
  if (expiry_.count(sign) || expiry_.size() >= max_entries_)
    return false;
  expiry_.emplace(sign, now_ms + keep_ms_);
  order_.emplace_back(now_ms + keep_ms_, sign);
  return true;
}

std::size_t sign_ledger::size() {
  std::lock_guard<std::mutex> lock(mutex_);
  return expiry_.size();
}

namespace {
std::mutex refusal_mutex;
auth_refusals refusals;
} // namespace

void count_refusal(std::uint64_t auth_refusals::*which) {
  std::lock_guard<std::mutex> lock(refusal_mutex);
  ++(refusals.*which);
}

auth_refusals refusal_counts() {
  std::lock_guard<std::mutex> lock(refusal_mutex);
  return refusals;
}

namespace {
constexpr std::size_t max_node_refusals = 1000;
constexpr std::int64_t refusal_log_every_ms = 60000;
struct refusal_entry {
  node_refusal r;
  std::int64_t logged_ms = 0;
};
std::unordered_map<std::string, refusal_entry> node_refusal_map;  // under refusal_mutex
} // namespace

bool note_node_refusal(const std::string& node_id, const std::string& address,
                       const std::string& reason, std::int64_t now_ms) {
  std::lock_guard<std::mutex> lock(refusal_mutex);
  auto it = node_refusal_map.find(node_id);
  if (it == node_refusal_map.end()) {
    if (node_refusal_map.size() >= max_node_refusals) {
      auto oldest = std::min_element(node_refusal_map.begin(), node_refusal_map.end(),
                                     [](auto& a, auto& b) { return a.second.r.last_ms < b.second.r.last_ms; });
      node_refusal_map.erase(oldest);
    }
    it = node_refusal_map.emplace(node_id, refusal_entry{}).first;
    it->second.r.node_id = node_id;
  }
  auto& e = it->second;
  // Reasons that name numbers (the skew in seconds) change every attempt: compare the
  // text before the first digit.
  auto kind = [](const std::string& s) { return s.substr(0, s.find_first_of("0123456789")); };
  bool log = e.r.count == 0 || kind(e.r.reason) != kind(reason) ||
             now_ms - e.logged_ms >= refusal_log_every_ms;
  e.r.address = address;
  e.r.reason = reason;
  ++e.r.count;
  e.r.last_ms = now_ms;
  if (log)
    e.logged_ms = now_ms;
  return log;
}

void clear_node_refusal(const std::string& node_id) {
  std::lock_guard<std::mutex> lock(refusal_mutex);
  node_refusal_map.erase(node_id);
}

std::vector<node_refusal> node_refusals() {
  std::lock_guard<std::mutex> lock(refusal_mutex);
  std::vector<node_refusal> out;
  for (auto& [id, e] : node_refusal_map)
    out.push_back(e.r);
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.last_ms > b.last_ms; });
  return out;
}

} // namespace spiderhub::core
