#pragma once
// The dashboard's files (web/), compiled into the binary by cmake/EmbedAssets.cmake.
#include <string_view>

namespace spiderhub::web {

struct asset {
  std::string_view path;          // "/index.html", "/app.js", ...
  std::string_view content_type;
  std::string_view bytes;
};

/// The asset at `path`, or nullptr.
const asset* find_asset(std::string_view path);

} // namespace spiderhub::web
