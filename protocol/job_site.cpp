#include "protocol/job_site.hpp"

#include <nlohmann/json.hpp>

#include <optional>
#include <type_traits>

#include "core/error.hpp"
#include "core/media_type.hpp"
#include "core/politeness.hpp"
#include "core/proxy.hpp"
#include "core/text_pattern.hpp"
#include "protocol/json_codec.hpp"

namespace spiderhub::protocol {
namespace {

const std::string* find(const std::map<std::string, std::string>& props, const char* key) {
  auto it = props.find(key);
  return it == props.end() || it->second.empty() ? nullptr : &it->second;
}

// An integer property from `min` to `max`; nullopt when absent or empty.
std::optional<long long> integer(const std::map<std::string, std::string>& props,
                                 const char* key, long long min, long long max,
                                 const char* unit) {
  auto* text = find(props, key);
  if (!text)
    return std::nullopt;
  std::size_t used = 0;
  long long n = -1;
  try {
    n = std::stoll(*text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text->size() || n < min || n > max)
    throw core::input_error(std::string("property '") + key + "' must be an integer from " +
                            std::to_string(min) + " to " + std::to_string(max) + " (" + unit +
                            "), not '" + *text + "'");
  return n;
}

} // namespace

site site_of_job(const std::map<std::string, std::string>& properties) {
  site s;
  if (auto* text = find(properties, "Site")) {
    auto j = nlohmann::json::parse(*text, nullptr, false);
    if (!j.is_object())
      throw core::input_error("property 'Site' must be a JSON object");
    s = decode<site>(j, "properties.Site");
  }
  auto o = core::parse_politeness_properties(properties);  // throws naming the property
  if (o.max_concurrency && s.max_concurrency_per_host == 0)
    s.max_concurrency_per_host = *o.max_concurrency;
  if (o.delay_ms && s.delay_ms < 0)
    s.delay_ms = static_cast<std::int32_t>(*o.delay_ms);
  if (o.robots && s.robots_txt.empty())
    s.robots_txt = *o.robots ? "obey" : "ignore";
  if (o.adaptive && s.adaptive_throttle.empty())
    s.adaptive_throttle = *o.adaptive ? "on" : "off";
  if (o.key_kind && s.politeness_key.empty())
    s.politeness_key = core::to_string(*o.key_kind);
  if (auto n = integer(properties, "MaxBodyBytes", 1024, 1LL << 32, "bytes"); n && s.max_body_bytes == 0)
    s.max_body_bytes = *n;
  // Scope and trap limits: 0 = none; the Site's own values win.
  auto limit = [&](const char* key, auto& field, long long max) {
    if (auto n = integer(properties, key, 0, max, "0 = no limit"); n && field < 0)
      field = static_cast<std::remove_reference_t<decltype(field)>>(*n);
  };
  limit("MaxUrlLength", s.max_url_length, 1LL << 20);
  limit("MaxDepth", s.max_depth, 100000);
  limit("MaxPages", s.max_pages, 1LL << 40);
  limit("MaxPagesPerHost", s.max_pages_per_host, 1LL << 40);
  limit("MaxRepeatedSegments", s.max_repeated_segments, 1000);
  auto flag = [&](const char* key, bool& field) {
    if (auto* text = find(properties, key)) {
      if (*text != "true" && *text != "false")
        throw core::input_error(std::string("property '") + key +
                                "' must be true or false, not '" + *text + "'");
      field = *text == "true";
    }
  };
  flag("VerifyTls", s.verify_tls);
  flag("AllowPrivateAddresses", s.allow_private_addresses);
  flag("SortQuery", s.sort_query);
  flag("StripSessionIds", s.strip_session_ids);
  flag("StripTracking", s.strip_tracking);
  if (auto n = integer(properties, "WorkersPerRun", 0, 1000, "0 = every worker of the class"))
    s.workers_per_run = static_cast<std::int32_t>(*n);
  if (auto* text = find(properties, "Proxies")) {
    try {
      if (s.proxies.empty())
        s.proxies = core::parse_proxy_list(*text);
    } catch (const core::input_error& e) {
      throw core::input_error(std::string("property 'Proxies': ") + e.what());
    }
  }
  if (auto* text = find(properties, "ProxyRotation")) {
    if (!core::valid_proxy_rotation(*text))
      throw core::input_error("property 'ProxyRotation' must be round_robin, random or "
                              "per_host, not '" + *text + "'");
    if (s.proxy_rotation.empty())
      s.proxy_rotation = *text;
  }
  if (auto* text = find(properties, "ChangeIpPattern")) {
    if (auto why = core::pattern_problem(*text); !why.empty())
      throw core::input_error("property 'ChangeIpPattern' is not a usable pattern: " + why);
    if (s.change_ip_pattern.empty())
      s.change_ip_pattern = *text;
  }
  if (auto n = integer(properties, "ProxyMaxFailures", 1, 1000, "failures in a row"))
    s.proxy_max_failures = static_cast<std::int32_t>(*n);
  if (auto n = integer(properties, "ProxyBenchMs", 0, 86400000, "ms"))
    s.proxy_bench_ms = static_cast<std::int32_t>(*n);
  if (auto* text = find(properties, "AllowedContentTypes")) {
    try {
      if (s.allowed_content_types.empty())
        s.allowed_content_types = core::parse_media_ranges(*text);
    } catch (const core::input_error& e) {
      throw core::input_error(std::string("property 'AllowedContentTypes': ") + e.what());
    }
  }
  return s;
}

std::map<std::string, std::string> shown_properties(std::map<std::string, std::string> props) {
  if (auto it = props.find("Proxies"); it != props.end())
    it->second = core::redacted_proxy_list(it->second);
  if (auto it = props.find("Site"); it != props.end()) {
    auto site = nlohmann::json::parse(it->second, nullptr, false);
    if (site.is_object() && site.contains("proxies") && site["proxies"].is_array()) {
      for (auto& p : site["proxies"])
        if (p.is_string())
          p = core::redacted_proxy(p.get<std::string>());
      it->second = site.dump();
    }
  }
  return props;
}

} // namespace spiderhub::protocol
