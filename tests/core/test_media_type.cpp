#include <doctest/doctest.h>

#include "core/error.hpp"
#include "core/media_type.hpp"

using namespace spiderhub::core;

TEST_CASE("media type: ranges that are valid and those that are not") {
  for (const char* ok : {"text/html", "TEXT/HTML", "text/*", "*/*", "application/xhtml+xml",
                         "application/vnd.ms-excel", "image/svg+xml"})
    CHECK_MESSAGE(valid_media_range(ok), ok);
  for (const char* bad : {"", "text", "text/", "/html", "*/html", "te*t/html", "text/ht*",
                          "text/html; charset=utf-8", "text /html", "*", "**/*", "text/html/x"})
    CHECK_MESSAGE(!valid_media_range(bad), bad);
}

TEST_CASE("media type: the type of a Content-Type value") {
  struct row {
    const char* header;
    const char* type;
  };
  for (const auto& r : {row{"text/html", "text/html"},
                              row{"Text/HTML; charset=GBK", "text/html"},
                              row{"  application/pdf  ", "application/pdf"},
                              row{"text/html;charset=utf-8;x=y", "text/html"},
                              row{"application/xhtml+xml", "application/xhtml+xml"},
                              row{"", ""},
                              row{"html", ""},
                              row{"text/", ""},
                              row{"; charset=utf-8", ""},
                              row{" text/html\r\n", "text/html"},  // a header line's end
                              row{"text/html\r", "text/html"},
                              row{"text/ html", ""}})
    CHECK_MESSAGE(media_type_of(r.header) == r.type, r.header);
}

TEST_CASE("media type: allowed under a run's list") {
  const std::vector<std::string> html_only{"text/html"};
  const std::vector<std::string> text_any{"text/*", "application/xhtml+xml"};
  CHECK(media_allowed({}, "application/pdf"));  // no list: everything
  CHECK(media_allowed(html_only, "text/html; charset=gbk"));
  CHECK(media_allowed(html_only, "TEXT/HTML"));
  CHECK(!media_allowed(html_only, "application/pdf"));
  CHECK(!media_allowed(html_only, "text/plain"));
  CHECK(!media_allowed(html_only, "text/htmlx"));
  CHECK(media_allowed(html_only, ""));  // no type: benefit of the doubt
  CHECK(media_allowed(html_only, "garbage"));
  CHECK(media_allowed(text_any, "text/plain"));
  CHECK(media_allowed(text_any, "text/csv; header=present"));
  CHECK(media_allowed(text_any, "application/xhtml+xml"));
  CHECK(!media_allowed(text_any, "application/xml"));
  CHECK(!media_allowed(text_any, "textual/plain"));
  CHECK(media_allowed({"*/*"}, "video/mp4"));
  CHECK(media_allowed({"Image/*"}, "image/png"));
}

TEST_CASE("media type: the AllowedContentTypes property") {
  CHECK(parse_media_ranges("text/html") == std::vector<std::string>{"text/html"});
  CHECK(parse_media_ranges(" text/html , text/* ,") ==
        std::vector<std::string>{"text/html", "text/*"});
  CHECK(parse_media_ranges("").empty());
  CHECK_THROWS_WITH_AS(parse_media_ranges("text/html, pdf"),
                       "'pdf' is not a media type (type/subtype, type/* or */*)", input_error);
}
