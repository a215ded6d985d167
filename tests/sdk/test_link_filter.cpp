#include <doctest/doctest.h>

#include "sdk/link_filter.hpp"

using spiderhub::sdk::has_binary_extension;

TEST_CASE("link filter: links to binary files are recognised by their path's extension") {
  struct row {
    const char* url;
    bool binary;
  };
  for (const auto& r : {
         row{"http://h/a.pdf", true},
         row{"http://h/dir/REPORT.PDF", true},
         row{"http://h/a.pdf?download=1", true},
         row{"http://h/a.pdf#page=2", true},
         row{"http://h/a.pdf;jsessionid=1", true},
         row{"http://h/pkg.tar.gz", true},
         row{"https://h:8443/m/v.mp4", true},
         row{"http://h/font.woff2", true},
         row{"http://h/img/photo.JpEg", true},
         row{"http://h/a.html", false},
         row{"http://h/a.php?f=a.pdf", false},
         row{"http://h/download?file=report.pdf", false},
         row{"http://h/v1.2/page", false},
         row{"http://h/a.pdf/", false},
         row{"http://h/a.pdf/view", false},
         row{"http://h/", false},
         row{"http://h", false},
         row{"http://h?x=a.zip", false},
         row{"http://h/.zip", false},
         row{"http://h/a.", false},
         row{"http://h/archive.zipx", false},
         row{"http://h/a.css", false},
         row{"http://h/feed.rss", false},
         row{"http://h/notes.txt", false},
       })
    CHECK_MESSAGE(has_binary_extension(r.url) == r.binary, r.url);
}
