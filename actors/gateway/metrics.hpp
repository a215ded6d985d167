#pragma once
// GET /metrics: Prometheus text exposition built from the stats (stats_atom) of the
// broker's registered actors — gateway, api, job manager, dispatcher, storage, scheduler,
// session registry, inspector — asked from a detached actor, each with a 3 s timeout, so
// a slow actor delays the scrape by at most that and never blocks the api actor.
// An actor that does not answer is reported in spiderhub_scrape_errors.
#include <nlohmann/json.hpp>

#include <memory>

#include "protocol/messages.hpp"

namespace spiderhub::net {
class http_responder;
}

namespace spiderhub::actors {

void serve_metrics(caf::actor_system& sys, std::shared_ptr<net::http_responder> r);

/// Renders the exposition from each actor's stats JSON (registry name -> object).
/// Separate from serve_metrics so it can be tested without actors.
std::string render_metrics(const nlohmann::json& stats);

} // namespace spiderhub::actors
