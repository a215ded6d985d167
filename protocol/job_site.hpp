#pragma once
// The Site of a block job's runs: its `Site` property (JSON) with the job's politeness and
// download properties written into the fields the Site leaves unset. Used at job creation
// (validation, 400 naming the property) and when a run starts (the run carries the result,
// so a broker restart restores it).
#include <map>
#include <string>

#include "protocol/types.hpp"

namespace spiderhub::protocol {

/// Throws core::input_error naming the property that is wrong. Download properties:
/// MaxBodyBytes (1024-4294967296; the broker lowers it to its dispatch.max_body_bytes),
/// AllowedContentTypes (comma-separated media types, "type/*" and "*/*" allowed).
site site_of_job(const std::map<std::string, std::string>& properties);

/// A job's properties as the API and the console show them: proxy credentials (Proxies,
/// Site.proxies) never leave the broker; nodes get them in blocks.
std::map<std::string, std::string> shown_properties(std::map<std::string, std::string> props);

} // namespace spiderhub::protocol
