// Credentials, roles, safe start and the limit on failed authentications.
#include "core/auth.hpp"

#include <doctest/doctest.h>

#include <algorithm>

#include "core/digest.hpp"

using namespace spiderhub::core;

TEST_CASE("auth: the legacy token holds every role; listed secrets hold theirs") {
  keyring legacy("tok-tok-tok-tok-tok", {});
  auto p = legacy.bearer("tok-tok-tok-tok-tok");
  REQUIRE(p);
  CHECK(p->has(role_admin));
  CHECK(p->has(role_node));
  CHECK(p->name == "token");
  CHECK_FALSE(legacy.bearer("tok"));
  CHECK_FALSE(legacy.bearer(""));

  keyring k("", {{"crawlers", role_node, "n-secret"},
                 {"ops", role_admin, "a-old"},
                 {"ops2", role_admin, "a-new"},
                 {"dash", role_viewer, "v-secret"}});
  CHECK_FALSE(k.open());
  CHECK(keyring().open());
  auto v = k.bearer("v-secret");
  REQUIRE(v);
  CHECK(v->roles == role_viewer);
  CHECK(v->name == "dash");
  CHECK(k.bearer("a-old")->roles == role_admin);
  CHECK(k.bearer("a-new")->name == "ops2");  // two admin secrets at once: rotation
  CHECK_FALSE(k.bearer("n-secre"));
  CHECK(k.first_secret(role_admin) == "a-old");
  CHECK(k.first_secret(role_worker) == "");
  CHECK(roles_text(role_admin | role_viewer) == "admin,viewer");
  CHECK(roles_text(0) == "none");
  CHECK(parse_role("worker") == role_worker);
  CHECK_FALSE(parse_role("root"));
}

TEST_CASE("auth: connection signs are checked against the secrets of their role only") {
  keyring k("", {{"crawlers", role_node, "n1"}, {"crawlers-next", role_node, "n2"},
                 {"spiders", role_worker, "w1"}});
  const std::string id = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";
  std::string why;
  auto ok = k.verify_sign(role_node, id, "1000", connection_sign("n2", id, 1000), 1000, 300, &why);
  REQUIRE(ok);
  CHECK(ok->name == "crawlers-next");
  CHECK_FALSE(k.verify_sign(role_node, id, "1000", connection_sign("w1", id, 1000), 1000, 300, &why));
  CHECK(why == "wrong sign");
  CHECK_FALSE(k.verify_sign(role_worker, "x.Y", "1000", connection_sign("n1", "x.Y", 1000), 1000,
                            300, &why));
  CHECK_FALSE(k.verify_sign(role_node, id, "1000", connection_sign("n1", id, 1000), 1700, 300, &why));
  CHECK(why.find("clock skew: ts is 700 s behind") != std::string::npos);
  CHECK_FALSE(k.verify_sign(role_viewer, id, "1000", "00", 1000, 300, &why));
  CHECK(why == "no secret of role viewer");
}

TEST_CASE("auth: safe start refuses weak or no secrets off loopback") {
  CHECK(is_loopback_address("127.0.0.1"));
  CHECK(is_loopback_address("127.1.2.3"));
  CHECK(is_loopback_address("::1"));
  CHECK(is_loopback_address("localhost"));
  CHECK_FALSE(is_loopback_address("0.0.0.0"));
  CHECK_FALSE(is_loopback_address("127.0.0.1.example.com"));
  CHECK_FALSE(is_loopback_address("10.0.0.1"));
  CHECK(is_weak_secret("1234"));
  CHECK(is_weak_secret(""));
  CHECK(is_weak_secret("fifteen-chars!!"));
  CHECK(is_weak_secret("aaaaaaaaaaaaaaaaaaaa"));
  CHECK(is_weak_secret("ChangeMeChangeMe"));
  CHECK_FALSE(is_weak_secret(new_secret()));
  CHECK(new_secret().size() == 64);
  CHECK(new_secret() != new_secret());

  CHECK(safe_start_problem("127.0.0.1", keyring("1234", {})).empty());
  CHECK(safe_start_problem("127.0.0.1", keyring()).empty());
  CHECK(safe_start_problem("0.0.0.0", keyring()).find("without authentication") !=
        std::string::npos);
  auto weak = safe_start_problem("0.0.0.0", keyring("1234", {}));
  CHECK(weak.find("weak or well-known secret") != std::string::npos);
  CHECK(weak.find("1234") == std::string::npos);  // never print a secret
  CHECK(safe_start_problem("0.0.0.0", keyring(new_secret(), {})).empty());
  CHECK(safe_start_problem("10.1.1.1", keyring("", {{"ops", role_admin, new_secret()},
                                                    {"dash", role_viewer, "view"}}))
          .find("'dash'") != std::string::npos);
}

TEST_CASE("auth: failures block an address for a while, within bounded memory") {
  failure_limiter l(3, 10000, 5000, 4);
  CHECK_FALSE(l.failed("a", 0));
  CHECK_FALSE(l.failed("a", 1));
  CHECK(l.blocked_for("a", 2) == 0);
  CHECK(l.failed("a", 2));                 // the third within the window blocks
  CHECK(l.blocked_for("a", 3) == 4999);
  CHECK(l.blocked_for("b", 3) == 0);       // other addresses are not affected
  CHECK(l.blocked_for("a", 5002) == 0);    // the block ends
  CHECK_FALSE(l.failed("a", 5003));        // and counting starts again
  // Failures spread wider than the window never block.
  failure_limiter slow(3, 1000, 5000);
  for (int i = 0; i < 10; ++i)
    CHECK_FALSE(slow.failed("c", i * 600));
  // Many addresses: at most max_entries are kept (the oldest windows go first).
  for (int i = 0; i < 100; ++i)
    l.failed("x" + std::to_string(i), 6000 + i);
  CHECK(l.tracked() <= 4);
}

TEST_CASE("auth: a sign is good once while it could be valid, in bounded memory") {
  sign_ledger l(300000, 3);
  CHECK(l.first_use("s1", 0));
  CHECK_FALSE(l.first_use("s1", 1000));    // replay
  CHECK(l.first_use("s2", 1000));
  CHECK(l.first_use("s3", 2000));
  CHECK_FALSE(l.first_use("s4", 3000));    // full of signs still valid: refused
  CHECK(l.size() == 3);
  CHECK(l.first_use("s4", 600001));        // s1 expired (2 x window after its use)
  CHECK_FALSE(l.first_use("s2", 600500));  // s2 still remembered until 601000
  CHECK_FALSE(l.first_use("s5", 600600));  // still full (s2, s3, s4)
  CHECK(l.first_use("s1", 602001));        // s2 and s3 gone; s1 long gone
}

TEST_CASE("auth: refused node connections are kept per node and logged a minute apart") {
  const std::string id = "6f1c2d3e-0000-4000-8000-00000000abcd";
  clear_node_refusal(id);
  CHECK(note_node_refusal(id, "10.0.0.5", "clock skew: ts is 600 s ahead", 1000));
  CHECK_FALSE(note_node_refusal(id, "10.0.0.5", "clock skew: ts is 601 s ahead", 2000));  // same kind
  CHECK(note_node_refusal(id, "10.0.0.5", "wrong sign", 3000));                             // new kind
  CHECK(note_node_refusal(id, "10.0.0.5", "wrong sign", 63000));                            // a minute on
  auto all = node_refusals();
  auto it = std::find_if(all.begin(), all.end(), [&](auto& r) { return r.node_id == id; });
  REQUIRE(it != all.end());
  CHECK(it->count == 4);
  CHECK(it->reason == "wrong sign");
  CHECK(it->address == "10.0.0.5");
  CHECK(it->last_ms == 63000);
  clear_node_refusal(id);
  all = node_refusals();
  CHECK(std::none_of(all.begin(), all.end(), [&](auto& r) { return r.node_id == id; }));
}
