#include "sdk/link_filter.hpp"

#include <algorithm>
#include <iterator>
#include <string>

namespace spiderhub::sdk {
namespace {

// Sorted for binary search; lower case, without the dot.
constexpr std::string_view binary_extensions[] = {
  "3g2", "3gp", "7z", "7zip", "aac", "ace", "ai", "aif", "aiff", "amr", "ape", "apk",
  "appimage", "arj", "asf", "asx", "au", "avi", "avif", "bin", "bmp", "bz2", "cab", "cdr",
  "class", "deb", "djvu", "dll", "dmg", "doc", "docm", "docx", "dot", "dotx", "drw", "dxf",
  "eot", "eps", "epub", "exe", "f4v", "flac", "flv", "gif", "gz", "heic", "heif", "ico", "img",
  "iso", "jar", "jp2", "jpe", "jpeg", "jpg", "lz", "lzma", "m2ts", "m4a", "m4v", "mid", "midi",
  "mka", "mkv", "mng", "mobi", "mov", "mp3", "mp4", "mpeg", "mpg", "msi", "mts", "odg", "odp",
  "ods", "odt", "oga", "ogg", "ogv", "opus", "otf", "pct", "pdf", "pkg", "png", "pps", "ppsx",
  "ppt", "pptm", "pptx", "ps", "psd", "psp", "pst", "qt", "ra", "rar", "rm", "rmvb", "rpm",
  "rtf", "so", "svg", "svgz", "swf", "tar", "tbz", "tbz2", "tgz", "tif", "tiff", "ttf", "txz",
  "vob", "wav", "webm", "webp", "wma", "wmv", "woff", "woff2", "xls", "xlsb", "xlsm", "xlsx",
  "xps", "xz", "z", "zip", "zst",
};

} // namespace

bool has_binary_extension(std::string_view url) {
  // The path: after "scheme://authority", up to the query or fragment.
  auto start = url.find("://");
  start = start == std::string_view::npos ? 0 : url.find('/', start + 3);
  if (start == std::string_view::npos)
    return false;
  auto path = url.substr(start);
  path = path.substr(0, path.find_first_of("?#"));
  auto last = path.substr(path.rfind('/') + 1);
  last = last.substr(0, last.find(';'));
  auto dot = last.rfind('.');
  if (dot == std::string_view::npos || dot == 0 || dot + 1 == last.size() ||
      last.size() - dot - 1 > 8)
    return false;
  std::string ext(last.substr(dot + 1));
  for (auto& c : ext)
    if (c >= 'A' && c <= 'Z')
      c = static_cast<char>(c - 'A' + 'a');
  return std::binary_search(std::begin(binary_extensions), std::end(binary_extensions),
                            std::string_view(ext));
}

} // namespace spiderhub::sdk
