#include "actors/gateway/views.hpp"

#include <map>

namespace spiderhub::actors {

using json = nlohmann::json;

namespace {
// The stored {"reason": count} text of a run's cut requests; {} when none (or unreadable).
json cut_json(const std::string& text) {
  auto j = text.empty() ? json::object() : json::parse(text, nullptr, false);
  return j.is_object() ? j : json::object();
}
} // namespace

json status_json(const storage::job_status_row& s) {
  return {{"jobId", s.job_id},   {"identity", s.identity}, {"nodeId", s.node_id},
          {"status", s.status},  {"left", s.left},         {"success", s.success},
          {"error", s.error},    {"total", s.total},       {"reason", s.reason},
          {"skipped", s.skipped},
          {"cut", cut_json(s.cut)},
          {"updateTime", s.update_time},
          {"exitCode", s.exit_code ? json(*s.exit_code) : json(nullptr)}};
}

json node_json(const storage::node_row& n) {
  return {{"id", n.id},
          {"nodeType", n.node_type},
          {"ipAddress", n.ip},
          {"processorCount", n.processor_count},
          {"group", n.group},
          {"operatingSystem", n.os},
          {"memory", n.memory},
          {"isEnabled", n.is_enabled},
          {"isOnline", n.is_online},
          {"creationTime", n.creation_time},
          {"lastSeen", n.last_seen}};
}

json runs_json(const std::vector<storage::job_status_row>& rows) {
  std::map<std::string, json> runs;
  std::vector<std::string> order;
  for (auto& s : rows) {
    auto& run = runs[s.identity];
    if (run.is_null()) {
      order.push_back(s.identity);
      run = {{"identity", s.identity}, {"jobId", s.job_id}, {"nodes", json::array()}};
    }
    if (s.node_id.empty()) {
      auto whole = status_json(s);  // items() must not outlive its json
      for (auto& [k, v] : whole.items())
        if (k != "nodeId")
          run[k] = v;
    } else {
      run["nodes"].push_back(status_json(s));
    }
  }
  json out = json::array();
  for (auto& id : order)
    out.push_back(runs[id]);
  return out;
}

} // namespace spiderhub::actors
