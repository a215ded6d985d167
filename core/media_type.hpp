#pragma once
// Content-type policy of a run (job property AllowedContentTypes): which responses a node
// downloads past their headers. Pure code, shared by the broker (validation at job
// creation) and the node (the check after the response headers).
#include <string>
#include <string_view>
#include <vector>

namespace spiderhub::core {

/// "type/subtype", "type/*" or "*/*" (RFC 9110 tokens, any case, no parameters).
bool valid_media_range(std::string_view range);

/// The media type of a Content-Type value, lower case, without parameters or spaces
/// ("Text/HTML; charset=gbk" -> "text/html"); "" when the value holds none.
std::string media_type_of(std::string_view content_type);

/// Whether a response with this Content-Type may be downloaded under `ranges`. An empty
/// list allows everything; a response without a usable Content-Type is allowed (browsers
/// and Scrapy sniff such pages, and refusing them would lose real HTML).
bool media_allowed(const std::vector<std::string>& ranges, std::string_view content_type);

/// "text/html, text/*" (the job property) -> {"text/html", "text/*"}; throws
/// core::input_error naming the entry that is not a media range.
std::vector<std::string> parse_media_ranges(std::string_view list);

} // namespace spiderhub::core
