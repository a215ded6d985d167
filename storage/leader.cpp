#include "storage/leader.hpp"

#include "storage/postgres.hpp"
#include "storage/repositories.hpp"

namespace spiderhub::storage {

leader_lease::leader_lease(const std::string& conninfo, std::string holder, std::string url,
                           std::chrono::milliseconds lease)
  : db_(std::make_unique<pg_database>(conninfo)), holder_(std::move(holder)), url_(std::move(url)),
    lease_(lease) {
  // A paused leader may hold the row's share lock inside a transaction until the server
  // ends its session: do not queue behind it, try again at the next poll.
  db_->exec("SET lock_timeout = 1000");
}

leader_lease::~leader_lease() = default;

std::optional<std::int64_t> leader_lease::try_acquire() {
  auto& q = db_->prepare("UPDATE BrokerLeader SET Holder=?1, Url=?2, Token=Token+1, "
                         "Expires=clock_timestamp() + ?3::float8 * interval '1 millisecond' "
                         "WHERE Id=1 AND Expires < clock_timestamp() RETURNING Token");
  q.bind(1, holder_);
  q.bind(2, url_);
  q.bind(3, static_cast<std::int64_t>(lease_.count()));
  std::optional<std::int64_t> token;
  if (q.executeStep())
    token = q.getColumn(0).getInt64();
  q.reset();
  return token;
}

leader_lease::renewal leader_lease::renew(std::int64_t token) {
  auto& q = db_->prepare(
    "UPDATE BrokerLeader SET Expires=clock_timestamp() + ?2::float8 * interval '1 millisecond' "
    "WHERE Id=1 AND Token=?1 RETURNING Token");
  q.bind(1, token);
  q.bind(2, static_cast<std::int64_t>(lease_.count()));
  bool ok = q.executeStep();
  q.reset();
  return ok ? renewal::renewed : renewal::deposed;
}

void leader_lease::release(std::int64_t token) {
  auto& q = db_->prepare("UPDATE BrokerLeader SET Expires='epoch' WHERE Id=1 AND Token=?1");
  q.bind(1, token);
  q.exec();
}

leader_lease::holder_info leader_lease::current() {
  auto& q = db_->prepare(
    "SELECT Holder, Url, Token, Expires > clock_timestamp() FROM BrokerLeader WHERE Id=1");
  holder_info out;
  if (q.executeStep()) {
    out.holder = q.getColumn(0).getString();
    out.url = q.getColumn(1).getString();
    out.token = q.getColumn(2).getInt64();
    out.live = q.getColumn(3).getInt64() != 0;
  }
  q.reset();
  return out;
}

} // namespace spiderhub::storage

namespace spiderhub::storage {

void leader_lease::announce(const std::string& role) {
  broker_repository(*db_).announce({holder_, url_, role, ""});
}

} // namespace spiderhub::storage
