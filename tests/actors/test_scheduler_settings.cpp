#include <doctest/doctest.h>

#include <caf/all.hpp>
#include <caf/policy/work_sharing.hpp>
#include <caf/policy/work_stealing.hpp>
#include <caf/scheduler/coordinator.hpp>

#include "actors/runtime/scheduler_settings.hpp"

using namespace spiderhub;

namespace {
template <class Policy> bool uses(caf::actor_system& sys) {
  return dynamic_cast<caf::scheduler::coordinator<Policy>*>(&sys.scheduler()) != nullptr;
}
} // namespace

TEST_CASE("scheduler settings: sharing by default, one thread per core but at least 2") {
  caf::actor_system_config cfg;
  actors::apply_scheduler_settings(core::actors_config{}, cfg);
  caf::actor_system sys{cfg};
  CHECK(uses<caf::policy::work_sharing>(sys));
  CHECK_FALSE(uses<caf::policy::work_stealing>(sys));
  CHECK(sys.scheduler().num_workers() == actors::scheduler_threads(0));
  CHECK(actors::scheduler_threads(0) >= 2);
  // Actors still run and answer under the sharing policy.
  // With an argument: CAF 0.17 binds a null tuple for argument-less function actors.
  auto echo =
    sys.spawn([](caf::event_based_actor*,
                 int offset) -> caf::behavior { return {[offset](int x) { return x + offset; }}; },
              1);
  caf::scoped_actor self{sys};
  int got = 0;
  self->request(echo, std::chrono::seconds(5), 41)
    .receive([&](int y) { got = y; }, [](caf::error&) {});
  CHECK(got == 42);
}

TEST_CASE("scheduler settings: explicit threads and the stealing policy") {
  caf::actor_system_config cfg;
  core::actors_config c;
  c.threads = 3;
  c.policy = "stealing";
  actors::apply_scheduler_settings(c, cfg);
  caf::actor_system sys{cfg};
  CHECK(uses<caf::policy::work_stealing>(sys));
  CHECK(sys.scheduler().num_workers() == 3);
}
