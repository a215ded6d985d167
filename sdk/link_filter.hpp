#pragma once
// Which links a sample spider follows: not the ones whose path names a binary file
// (archives, media, documents, executables, fonts). Scrapy's IGNORED_EXTENSIONS is the
// model; the Python SDK keeps the same list (clients/python/spiderhub/worker.py).
#include <string_view>

namespace spiderhub::sdk {

/// Whether the last segment of the URL's path ends in a binary file extension, in any
/// case ("/a/b.PDF?x=1" yes; "/v1.2/page", "/a.pdf/", "/download?f=a.pdf" no). The
/// query, fragment and ";params" are not looked at.
bool has_binary_extension(std::string_view url);

} // namespace spiderhub::sdk
