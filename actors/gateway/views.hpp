#pragma once
// JSON views of stored rows shared by the REST API and the dashboard's live feed.
#include <nlohmann/json.hpp>

#include <vector>

#include "storage/records.hpp"

namespace spiderhub::actors {

nlohmann::json status_json(const storage::job_status_row& s);
nlohmann::json node_json(const storage::node_row& n);
/// One object per run (newest first): the NodeId "" row's fields plus `nodes`, the
/// per-node rows.
nlohmann::json runs_json(const std::vector<storage::job_status_row>& rows);

} // namespace spiderhub::actors
