#pragma once
// Who may do what at the broker: credentials with roles, the bearer and connection-sign
// checks over them, the safe-start rule and a per-address limit on failed attempts.
// Pure code (no I/O): time comes in as unix milliseconds.
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace spiderhub::core {

/// Roles as bits: a principal may hold several (the single legacy token holds all).
enum role : unsigned {
  role_node = 1,    // node hub connection signs, package downloads
  role_worker = 2,  // worker hub connection signs
  role_viewer = 4,  // GET endpoints, dashboard, live feed, /metrics
  role_admin = 8,   // everything the API offers (a viewer's rights included)
};
/// "node" | "worker" | "viewer" | "admin" -> bit; nullopt otherwise.
std::optional<role> parse_role(std::string_view text);
/// "admin,viewer" etc.
std::string roles_text(unsigned roles);

struct credential {
  std::string name;    // shown in logs and the audit, never the secret
  role role_ = role_viewer;
  std::string secret;
};

/// Who a request authenticated as.
struct principal {
  std::string name;
  unsigned roles = 0;
  bool has(unsigned r) const { return (roles & r) != 0; }
};

/// Every credential the broker accepts. Empty: authentication is off (anyone may do
/// anything), which safe_start_problem refuses off loopback.
class keyring {
 public:
  keyring() = default;
  /// `token` (legacy, may be empty): one secret for every role, named "token".
  /// `list`: per-role secrets; several per role are allowed (rotation).
  keyring(const std::string& token, std::vector<credential> list);

  bool open() const { return creds_.empty(); }
  /// The principal whose secret is `secret` (its roles: those of every credential with
  /// that secret); nullopt when none matches. Compares in constant time per credential.
  std::optional<principal> bearer(std::string_view secret) const;
  /// A connection sign (core::verify_connection_sign) made with the secret of a credential
  /// holding `r`: the principal, or nullopt with `why` (the time window, or "wrong sign").
  std::optional<principal> verify_sign(role r, std::string_view subject, std::string_view ts,
                                       std::string_view sign, std::int64_t now_unix,
                                       std::int64_t window_s, std::string* why) const;
  /// The first secret of a credential holding `r` ("" when none): what the broker itself
  /// signs with (Scheduler.NET callback URLs use the admin secret).
  std::string first_secret(role r) const;
  const std::vector<credential>& credentials() const { return creds_; }

 private:
  std::vector<credential> creds_;
};

/// Whether `address` is a loopback listen address (127.0.0.0/8, ::1, localhost).
bool is_loopback_address(std::string_view address);
/// Secrets a careless setup has: empty, shorter than 16 characters, or well known
/// ("1234" of the original design, "changeme", "secret", ...).
bool is_weak_secret(std::string_view secret);
/// Why the broker must not start listening on `address` with `keys` (empty = fine):
/// off loopback, authentication must be on and no secret weak. `insecure` opts out.
std::string safe_start_problem(std::string_view address, const keyring& keys);
/// Whether users other than the file's owner may read `path` (a file holding a secret
/// should be 0600: a package running as another user must not read it).
bool readable_by_others(const std::string& path);
/// A fresh random secret: 32 bytes from OpenSSL's RNG as 64 hex characters.
std::string new_secret();

/// Failed authentications per source address: after `max_failures` within `window_ms`,
/// every request of that address is refused for `block_ms`. At most `max_entries`
/// addresses are tracked (the oldest window goes first). Thread-safe.
class failure_limiter {
 public:
  failure_limiter(int max_failures, std::int64_t window_ms, std::int64_t block_ms,
                  std::size_t max_entries = 10000);
  /// Milliseconds `address` must still wait (0: not blocked).
  std::int64_t blocked_for(const std::string& address, std::int64_t now_ms);
  /// Counts a failure; returns true when it blocks the address.
  bool failed(const std::string& address, std::int64_t now_ms);
  std::size_t tracked();

 private:
  struct entry {
    std::int64_t window_start = 0;
    int failures = 0;
    std::int64_t blocked_until = 0;
  };
  void make_room(std::int64_t now_ms);
  int max_failures_;
  std::int64_t window_ms_, block_ms_;
  std::size_t max_entries_;
  std::mutex mutex_;
  std::unordered_map<std::string, entry> entries_;
};

/// Connection signs already used, kept as long as they could be valid (twice the sign
/// window: a ts may lie that far before or after now), at most `max_entries`. Thread-safe.
class sign_ledger {
 public:
  sign_ledger(std::int64_t window_ms, std::size_t max_entries = 200000);
  /// True the first time `sign` is seen; false for a replay, and when the ledger is full
  /// of signs still valid (refusing is safer than forgetting).
  bool first_use(const std::string& sign, std::int64_t now_ms);
  std::size_t size();

 private:
  std::int64_t keep_ms_;
  std::size_t max_entries_;
  std::mutex mutex_;
  std::unordered_map<std::string, std::int64_t> expiry_;
  std::vector<std::pair<std::int64_t, std::string>> order_;  // (expiry, sign), FIFO
  std::size_t head_ = 0;
};

/// Process-wide counts of refusals for /metrics (by reason).
struct auth_refusals {
  std::uint64_t unauthenticated = 0;  // no or unknown credential (401)
  std::uint64_t forbidden = 0;        // known credential, role lacks the right (403)
  std::uint64_t bad_sign = 0;         // hub or package connection sign refused (401)
  std::uint64_t rate_limited = 0;     // address blocked after failures (429)
  std::uint64_t replayed = 0;         // a node connection sign used a second time (401)
};
void count_refusal(std::uint64_t auth_refusals::*which);
auth_refusals refusal_counts();

/// The latest refused /node connection of a node id (wrong sign, clock skew, replay),
/// kept process-wide for `spiderhub console nodes`: a node that never got in is in no
/// table. Bounded: the oldest entries go beyond 1,000 node ids.
struct node_refusal {
  std::string node_id;
  std::string address;
  std::string reason;
  std::uint64_t count = 0;     // refusals since the broker started
  std::int64_t last_ms = 0;    // unix ms of the latest
};
/// Records a refusal; true when it should be logged (the first of a node id, a new
/// reason, or a minute since the last line), so a node retrying every second does not
/// fill the log.
bool note_node_refusal(const std::string& node_id, const std::string& address,
                       const std::string& reason, std::int64_t now_ms);
/// Forgets a node's refusal once it connected.
void clear_node_refusal(const std::string& node_id);
std::vector<node_refusal> node_refusals();

} // namespace spiderhub::core
