#include <doctest/doctest.h>

#include <string>
#include <thread>
#include <vector>

#include "core/encoding.hpp"
#include "core/error.hpp"

using namespace spiderhub::core;

// Byte strings below were produced by Python's codecs (e.g. '中文首页'.encode('gbk')).

namespace {

// A news paragraph in each legacy encoding, as pages without any label send them.
const std::string gbk_page =
  "<html><head><title>\xd0\xc2\xce\xc5\xd6\xd0\xd0\xc4</title></head><body><p>\xbd\xf1\xcc"
  "\xec\xc9\xcf\xce\xe7\xa3\xac\xca\xd0\xd5\xfe\xb8\xae\xd5\xd9\xbf\xaa\xd0\xc2\xce\xc5\xb7"
  "\xa2\xb2\xbc\xbb\xe1\xa3\xac\xbd\xe9\xc9\xdc\xc1\xcb\xbd\xf1\xc4\xea\xd2\xd4\xc0\xb4\xc8"
  "\xab\xca\xd0\xbe\xad\xbc\xc3\xc9\xe7\xbb\xe1\xb7\xa2\xd5\xb9\xb5\xc4\xd7\xdc\xcc\xe5\xc7"
  "\xe9\xbf\xf6\xa1\xa3\xbb\xe1\xc9\xcf\xd6\xb8\xb3\xf6\xa3\xac\xc8\xab\xca\xd0\xb5\xd8\xc7"
  "\xf8\xc9\xfa\xb2\xfa\xd7\xdc\xd6\xb5\xcd\xac\xb1\xc8\xd4\xf6\xb3\xa4\xb0\xd9\xb7\xd6\xd6"
  "\xae\xc1\xf9\xb5\xe3\xce\xe5\xa3\xac\xb3\xc7\xcf\xe7\xbe\xd3\xc3\xf1\xca\xd5\xc8\xeb\xce"
  "\xc8\xb2\xbd\xcc\xe1\xb8\xdf\xa3\xac\xbe\xcd\xd2\xb5\xd0\xce\xca\xc6\xb1\xa3\xb3\xd6\xce"
  "\xc8\xb6\xa8\xa1\xa3\xcf\xc2\xd2\xbb\xb2\xbd\xa3\xac\xce\xd2\xc3\xc7\xbd\xab\xbc\xcc\xd0"
  "\xf8\xc9\xee\xbb\xaf\xb8\xc4\xb8\xef\xa3\xac\xc0\xa9\xb4\xf3\xbf\xaa\xb7\xc5\xa3\xac\xcd"
  "\xc6\xb6\xaf\xb8\xdf\xd6\xca\xc1\xbf\xb7\xa2\xd5\xb9\xa3\xac\xc5\xac\xc1\xa6\xc8\xc3\xc8"
  "\xcb\xc3\xf1\xc8\xba\xd6\xda\xb9\xfd\xc9\xcf\xb8\xfc\xbc\xd3\xc3\xc0\xba\xc3\xb5\xc4\xc9"
  "\xfa\xbb\xee\xa1\xa3</p></body></html>";
const std::string shift_jis_page =
  "<html><head><title>\x82\xa8\x92m\x82\xe7\x82\xb9</title></head><body><p>\x96{\x93\xfa"
  "\x82\xcd\x93\x96\x8e\xd0\x82\xcc\x83"
  "E\x83"
  "F\x83u\x83T\x83"
  "C\x83g\x82\xf0\x82\xb2"
  "\x97\x97\x82\xa2\x82\xbd\x82\xbe\x82\xab\x81"
  "A\x90\xbd\x82\xc9\x82\xa0\x82\xe8\x82\xaa"
  "\x82\xc6\x82\xa4\x82\xb2\x82\xb4\x82\xa2\x82\xdc\x82\xb7\x81"
  "B\x90V\x82\xb5\x82\xa2"
  "\x90\xbb\x95i\x82\xcc\x94\xad\x94\x84\x82\xc9\x94\xba\x82\xa2\x81"
  "A\x82\xa8\x96\xe2"
  "\x82\xa2\x8d\x87\x82\xed\x82\xb9\x91\x8b\x8c\xfb\x82\xcc\x8e\xf3\x95t\x8e\x9e\x8a\xd4"
  "\x82\xf0\x95\xcf\x8dX\x82\xa2\x82\xbd\x82\xb5\x82\xdc\x82\xb5\x82\xbd\x81"
  "B\x82\xb2"
  "\x95s\x96\xbe\x82\xc8\x93_\x82\xaa\x82\xb2\x82\xb4\x82\xa2\x82\xdc\x82\xb5\x82\xbd\x82"
  "\xe7\x81"
  "A\x82\xa8\x8b"
  "C\x8cy\x82\xc9\x82\xa8\x96\xe2\x82\xa2\x8d\x87\x82\xed\x82"
  "\xb9\x82\xad\x82\xbe\x82\xb3\x82\xa2\x81"
  "B\x8d\xa1\x8c\xe3\x82\xc6\x82\xe0\x95\xcf\x82"
  "\xed\x82\xe7\x82\xca\x82\xb2\x88\xa4\x8c\xda\x82\xf0\x8e\x92\x82\xe8\x82\xdc\x82\xb7\x82"
  "\xe6\x82\xa4\x81"
  "A\x82\xe6\x82\xeb\x82\xb5\x82\xad\x82\xa8\x8a\xe8\x82\xa2\x90\x5c\x82"
  "\xb5\x8f\xe3\x82\xb0\x82\xdc\x82\xb7\x81"
  "B</p></body></html>";
const std::string euc_kr_page =
  "<html><head><title>\xb0\xf8\xc1\xf6\xbb\xe7\xc7\xd7</title></head><body><p>\xbe\xc8\xb3"
  "\xe7\xc7\xcf\xbd\xca\xb4\xcf\xb1\xee. \xc0\xfa\xc8\xf1 \xc8\xa8\xc6\xe4\xc0\xcc\xc1\xf6"
  "\xb8\xa6 \xb9\xe6\xb9\xae\xc7\xd8 \xc1\xd6\xbc\xc5\xbc\xad \xc1\xf8\xbd\xc9\xc0\xb8\xb7"
  "\xce \xb0\xa8\xbb\xe7\xb5\xe5\xb8\xb3\xb4\xcf\xb4\xd9. \xc0\xcc\xb9\xf8 \xb4\xde\xba\xce"
  "\xc5\xcd \xb0\xed\xb0\xb4\xbc\xbe\xc5\xcd \xbf\xee\xbf\xb5 \xbd\xc3\xb0\xa3\xc0\xcc \xba"
  "\xaf\xb0\xe6\xb5\xc7\xbe\xfa\xc0\xb8\xb4\xcf \xc0\xcc\xbf\xeb\xbf\xa1 \xc2\xfc\xb0\xed"
  "\xc7\xcf\xbd\xc3\xb1\xe2 \xb9\xd9\xb6\xf8\xb4\xcf\xb4\xd9. \xb1\xc3\xb1\xdd\xc7\xcf\xbd"
  "\xc5 \xc1\xa1\xc0\xcc \xc0\xd6\xc0\xb8\xbd\xc3\xb8\xe9 \xbe\xf0\xc1\xa6\xb5\xe7\xc1\xf6 "
  "\xb9\xae\xc0\xc7\xc7\xd8 \xc1\xd6\xbd\xc3\xb1\xe2 \xb9\xd9\xb6\xf8\xb4\xcf\xb4\xd9. \xbe"
  "\xd5\xc0\xb8\xb7\xce\xb5\xb5 \xb4\xf5 \xc1\xc1\xc0\xba \xbc\xad\xba\xf1\xbd\xba\xb7\xce "
  "\xba\xb8\xb4\xe4\xc7\xcf\xb0\xda\xbd\xc0\xb4\xcf\xb4\xd9.</p></body></html>";
const std::string windows_1251_page =
  "<html><head><title>\xcd\xee\xe2\xee\xf1\xf2\xe8</title></head><body><p>\xd1\xe5\xe3\xee"
  "\xe4\xed\xff \xe2 \xe3\xee\xf0\xee\xe4\xf1\xea\xee\xe9 \xe0\xe4\xec\xe8\xed\xe8\xf1\xf2"
  "\xf0\xe0\xf6\xe8\xe8 \xf1\xee\xf1\xf2\xee\xff\xeb\xee\xf1\xfc \xf1\xee\xe2\xe5\xf9\xe0"
  "\xed\xe8\xe5, \xef\xee\xf1\xe2\xff\xf9\xb8\xed\xed\xee\xe5 \xef\xee\xe4\xe3\xee\xf2\xee"
  "\xe2\xea\xe5 \xea \xe7\xe8\xec\xed\xe5\xec\xf3 \xf1\xe5\xe7\xee\xed\xf3. \xd0\xf3\xea"
  "\xee\xe2\xee\xe4\xe8\xf2\xe5\xeb\xe8 \xf1\xeb\xf3\xe6\xe1 \xe4\xee\xeb\xee\xe6\xe8\xeb"
  "\xe8 \xee \xf5\xee\xe4\xe5 \xf0\xe5\xec\xee\xed\xf2\xe0 \xf2\xe5\xef\xeb\xee\xf1\xe5\xf2"
  "\xe5\xe9 \xe8 \xea\xee\xf2\xe5\xeb\xfc\xed\xfb\xf5. \xc3\xeb\xe0\xe2\xe0 \xe3\xee\xf0"
  "\xee\xe4\xe0 \xef\xee\xf0\xf3\xf7\xe8\xeb \xe7\xe0\xe2\xe5\xf0\xf8\xe8\xf2\xfc \xe2\xf1"
  "\xe5 \xf0\xe0\xe1\xee\xf2\xfb \xe4\xee \xea\xee\xed\xf6\xe0 \xec\xe5\xf1\xff\xf6\xe0 "
  "\xe8 \xee\xe1\xe5\xf1\xef\xe5\xf7\xe8\xf2\xfc \xe6\xe8\xf2\xe5\xeb\xe5\xe9 \xed\xe0\xe4"
  "\xb8\xe6\xed\xfb\xec \xf2\xe5\xef\xeb\xee\xf1\xed\xe0\xe1\xe6\xe5\xed\xe8\xe5\xec.</p></"
  "body></html>";

std::string repeat(std::string_view s, std::size_t n) {
  std::string out;
  for (std::size_t i = 0; i < n; ++i)
    out += s;
  return out;
}

// Every encoding of the standard that keeps ASCII bytes as they are.
const std::vector<std::string> ascii_compatible = {
  "UTF-8",         "IBM866",       "ISO-8859-2",   "ISO-8859-3",     "ISO-8859-4",
  "ISO-8859-5",    "ISO-8859-6",   "ISO-8859-7",   "ISO-8859-8",     "ISO-8859-8-I",
  "ISO-8859-10",   "ISO-8859-13",  "ISO-8859-14",  "ISO-8859-15",    "ISO-8859-16",
  "KOI8-R",        "KOI8-U",       "macintosh",    "windows-874",    "windows-1250",
  "windows-1251",  "windows-1252", "windows-1253", "windows-1254",   "windows-1255",
  "windows-1256",  "windows-1257", "windows-1258", "x-mac-cyrillic", "GBK",
  "gb18030",       "Big5",         "EUC-JP",       "Shift_JIS",      "EUC-KR",
  "x-user-defined"};

} // namespace

TEST_CASE("encoding: labels resolve to the standard's names") {
  struct row {
    const char* label;
    const char* name;
  };
  for (auto r : {
         row{"utf-8", "UTF-8"},
         row{"UTF8", "UTF-8"},
         row{"unicode-1-1-utf-8", "UTF-8"},
         row{"x-unicode20utf8", "UTF-8"},
         row{"  utf-8\t", "UTF-8"},
         row{"\n\f UTF-8 \r", "UTF-8"},
         row{"gb2312", "GBK"},
         row{"GB2312", "GBK"},
         row{"x-gbk", "GBK"},
         row{"chinese", "GBK"},
         row{"gbk", "GBK"},
         row{"gb18030", "gb18030"},
         row{"big5-hkscs", "Big5"},
         row{"x-x-big5", "Big5"},
         row{"sjis", "Shift_JIS"},
         row{"ms932", "Shift_JIS"},
         row{"Windows-31J", "Shift_JIS"},
         row{"x-euc-jp", "EUC-JP"},
         row{"csISO2022JP", "ISO-2022-JP"},
         row{"ks_c_5601-1987", "EUC-KR"},
         row{"windows-949", "EUC-KR"},
         row{"latin1", "windows-1252"},
         row{"ISO-8859-1", "windows-1252"},
         row{"ascii", "windows-1252"},
         row{"US-ASCII", "windows-1252"},
         row{"cp1251", "windows-1251"},
         row{"x-cp1250", "windows-1250"},
         row{"iso-8859-9", "windows-1254"},
         row{"tis-620", "windows-874"},
         row{"iso-8859-11", "windows-874"},
         row{"koi8", "KOI8-R"},
         row{"koi8-ru", "KOI8-U"},
         row{"x-mac-ukrainian", "x-mac-cyrillic"},
         row{"mac", "macintosh"},
         row{"logical", "ISO-8859-8-I"},
         row{"l9", "ISO-8859-15"},
         row{"iso-8859-16", "ISO-8859-16"},
         row{"cp866", "IBM866"},
         row{"utf-16", "UTF-16LE"},
         row{"unicode", "UTF-16LE"},
         row{"unicodefffe", "UTF-16BE"},
         row{"iso-2022-kr", "replacement"},
         row{"hz-gb-2312", "replacement"},
         row{"x-user-defined", "x-user-defined"},
       })
    CHECK_MESSAGE(encoding_for_label(r.label).value_or("(none)") == r.name, r.label);
  for (const char* unknown :
       {"", "   ", "utf-7", "utf-32", "latin-1", "utf 8", "gbk2", "euc-tw", "windows-1252x",
        "\vutf-8" /* not ASCII whitespace */, "iso-8859-1-and-then-much-longer-than-any-label",
        "\xef\xbc\xb5tf-8" /* full-width U */})
    CHECK_MESSAGE(!encoding_for_label(unknown), std::string(unknown));
}

TEST_CASE("encoding: the charset parameter of a Content-Type value") {
  struct row {
    const char* header;
    const char* charset;
  };
  for (auto r : {
         row{"text/html; charset=utf-8", "utf-8"},
         row{"text/html;charset=GBK", "GBK"},
         row{"text/html; charset=\"gbk\"", "gbk"},
         row{"text/html; charset='gbk'", "'gbk'"}, // single quotes are not quoting
         row{"text/html ;  charset=  utf-8  ", "utf-8"},
         row{"text/html; CHARSET=Shift_JIS", "Shift_JIS"},
         row{"text/html; format=flowed; charset=iso-8859-1; q=1", "iso-8859-1"},
         row{"text/html; charset=utf-8; charset=gbk", "utf-8"}, // the first one counts
         row{"text/html; foo=\"a;charset=gbk\"; charset=big5", "big5"},
         row{"text/html; charset=\"b\\\"ig5\"", "b\"ig5"},
         row{"text/html; charset=\"utf-8", "utf-8"},
         row{"text/html;;charset=koi8-r", "koi8-r"},
         row{"text/html; charset=utf-8\r\n", "utf-8"},
         row{"text/html; charset=", ""},
         row{"text/html; charset", ""},
         row{"text/html; xcharset=gbk", ""},
         row{"text/html; charset =gbk", ""},
         row{"charset=gbk", ""},
         row{"text/html", ""},
         row{"", ""},
       })
    CHECK_MESSAGE(charset_of_content_type(r.header) == r.charset, r.header);
}

TEST_CASE("encoding: the HTML meta prescan") {
  const std::string title_then_meta = "<!DOCTYPE html><html lang=\"zh\"><head><title>" +
                                      std::string(600, 'x') + "</title><meta charset=\"gbk\">";
  const std::string meta_past_1024 = std::string(1100, ' ') + "<meta charset=\"gbk\">";
  const std::string meta_across_1024 = std::string(1010, ' ') + "<meta charset=\"gbk\">";
  struct row {
    std::string head;
    const char* charset; // nullptr: none found
  };
  const std::vector<row> rows = {
    {"<meta charset=\"gbk\">", "GBK"},
    {"<meta charset=gbk>", "GBK"},
    {"<meta charset='Shift_JIS'>", "Shift_JIS"},
    {"<META CHARSET=\"EUC-KR\">", "EUC-KR"},
    {"<meta charset=\"  gb2312  \">", "GBK"},
    {"<meta/charset=gbk>", "GBK"},
    {"<meta http-equiv=\"Content-Type\" content=\"text/html; charset=windows-1251\">",
     "windows-1251"},
    {"<meta content=\"text/html; charset=gb2312\" http-equiv=\"content-type\">", "GBK"},
    {"<META HTTP-EQUIV=\"CONTENT-TYPE\" CONTENT=\"TEXT/HTML; CHARSET=KOI8-R\">", "KOI8-R"},
    {"<meta http-equiv=Content-Type content='text/html;charset=\"big5\"'>", "Big5"},
    {"<meta http-equiv=\"content-type\" content=\"text/html; charset = 'euc-jp'\">", "EUC-JP"},
    {"<meta content=\"text/html; charset=gb2312\">", nullptr}, // content without the pragma
    {"<meta http-equiv=\"refresh\" content=\"0; charset=gbk\">", nullptr},
    {"<meta http-equiv=content-type content=\"text/html; charset=gbk\" http-equiv=refresh>",
     "GBK"}, // a repeated attribute is ignored
    {"<meta content=\"charset=gbk\" content=\"charset=big5\" http-equiv=content-type>", "GBK"},
    {"<meta charset=\"bogus\" content=\"text/html; charset=gbk\" http-equiv=content-type>",
     nullptr}, // a charset attribute that fails is still the one that counts
    {"<meta charset=\"bogus\"><meta charset=\"gbk\">", "GBK"},
    {"<meta name=\"viewport\" content=\"width=device-width\"><meta charset=utf-8>", "UTF-8"},
    {"<meta charset=\"utf-16le\">", "UTF-8"},
    {"<meta charset=utf-16>", "UTF-8"},
    {"<meta http-equiv=content-type content=\"text/html; charset=UTF-16BE\">", "UTF-8"},
    {"<meta charset=\"x-user-defined\">", "windows-1252"},
    {"<!-- <meta charset=\"gbk\"> --><meta charset=\"koi8-r\">", "KOI8-R"},
    {"<!-- <meta charset=\"gbk\"> -->", nullptr},
    {"<!--><meta charset=\"gbk\">", "GBK"}, // "<!-->" is a whole comment
    {"<!-- unterminated <meta charset=\"gbk\">", nullptr},
    {"<?xml version=\"1.0\" encoding=\"gbk\"?><meta charset=big5>", "Big5"},
    {"<div data-x='<meta charset=gbk>'></div><p>", nullptr}, // inside another tag's attribute
    {"</div class='<meta charset=gbk>'>", nullptr},
    {"<metacharset=gbk>", nullptr},
    {"< meta charset=gbk>", nullptr},
    {"<meta charset=utf-8/>", nullptr}, // unquoted values run up to space or '>'
    {"<meta charset=\"gbk", nullptr},
    {title_then_meta, "GBK"},
    {meta_past_1024, nullptr},
    {meta_across_1024, nullptr},
    {"", nullptr},
    {std::string("\x00\xff\xfe<<<>>>\x1b$B<a <b", 17), nullptr},
  };
  for (auto& r : rows)
    CHECK_MESSAGE(prescan_meta_charset(r.head).value_or("(none)") ==
                    std::string(r.charset ? r.charset : "(none)"),
                  r.head);
}

TEST_CASE("encoding: the sniffing order") {
  struct row {
    std::string body;
    const char* content_type;
    const char* override_label;
    sniffed_encoding expected;
  };
  const std::string meta_big5 = "<html><head><meta charset=\"big5\"></head></html>";
  const std::string utf8_page = "<html><body><p>中文首页 — Ünïcödé</p></body></html>";
  const std::vector<row> rows = {
    {"\xEF\xBB\xBF<p>x</p>", "text/html; charset=gbk", "", {"UTF-8", "bom"}},
    {std::string("\xFF\xFE<\0p\0>\0", 8), "text/html; charset=utf-8", "", {"UTF-16LE", "bom"}},
    {std::string("\xFE\xFF\0<\0p\0>", 8), "text/html", "gbk", {"UTF-16BE", "bom"}},
    {meta_big5, "text/html; charset=utf-8", "gbk", {"GBK", "override"}},
    {meta_big5, "text/html; charset=utf-8", "Shift_JIS", {"Shift_JIS", "override"}},
    {meta_big5, "text/html; charset=euc-kr", "bogus", {"EUC-KR", "http"}},
    {meta_big5, "text/html; charset=gbk", "", {"GBK", "http"}},
    {meta_big5, "text/html; charset=\"Shift_JIS\"", "", {"Shift_JIS", "http"}},
    {meta_big5, "text/html; charset=latin1", "", {"windows-1252", "http"}},
    {meta_big5, "text/html; charset=x-unknown", "", {"Big5", "meta"}},
    {meta_big5, "text/html", "", {"Big5", "meta"}},
    {meta_big5, "", "", {"Big5", "meta"}},
    {utf8_page, "text/html; charset=utf-8", "", {"UTF-8", "http"}},
    {utf8_page, "text/html", "", {"UTF-8", "detector"}},
    {"<p>plain ASCII</p>", "", "", {"UTF-8", "detector"}},
    {"", "", "", {"UTF-8", "detector"}},
    {"<p>cut off in the middle of \xE4\xB8", "", "", {"UTF-8", "detector"}},
    {gbk_page, "text/html", "", {"GBK", "detector"}},
    {shift_jis_page, "text/html", "", {"Shift_JIS", "detector"}},
    {euc_kr_page, "text/html", "", {"EUC-KR", "detector"}},
    {windows_1251_page, "text/html", "", {"windows-1251", "detector"}},
    {repeat("<!-- padding -->\n", 100) + gbk_page, "", "", {"GBK", "detector"}},
    {gbk_page, "text/html; charset=gbk", "", {"GBK", "http"}},
  };
  for (auto& r : rows) {
    auto got = sniff_encoding(r.body, r.content_type, r.override_label);
    CHECK_MESSAGE(got.name == r.expected.name, r.body.substr(0, 60));
    CHECK_MESSAGE(got.source == r.expected.source, r.body.substr(0, 60));
  }
}

TEST_CASE("encoding: what the detector makes of short texts") {
  struct row {
    std::string body;
    sniffed_encoding expected;
  };
  const std::vector<row> rows = {
    // 8 bytes are too few for uchardet: it answers nothing, and the default applies.
    {"\xd6\xd0\xce\xc4\xca\xd7\xd2\xb3", {"windows-1252", "default"}},
    {"\xbb\xb6\xd3\xad\xb7\xc3\xce\xca\xce\xd2\xc3\xc7\xb5\xc4\xcd\xf8\xd5\xbe\xa3\xac\xd5\xe2"
     "\xc0\xef\xd3\xd0\xd7\xee\xd0\xc2\xb5\xc4\xd0\xc2\xce\xc5\xba\xcd\xb2\xfa\xc6\xb7\xd0\xc5"
     "\xcf\xa2\xa1\xa3",
     {"GBK", "detector"}},
    {"\x93\xfa\x96{\x8c\xea\x82\xcc\x83y\x81[\x83W", {"Shift_JIS", "detector"}},
    {"\xc7\xd1\xb1\xb9\xbe\xee \xc6\xe4\xc0\xcc\xc1\xf6", {"EUC-KR", "detector"}},
    {"\xd0\xf3\xf1\xf1\xea\xe0\xff \xf1\xf2\xf0\xe0\xed\xe8\xf6\xe0", {"windows-1251", "detector"}},
    {"\xc5w\xaa\xef\xa5\xfa\xc1{\xa5\xbb\xba\xf4\xaf\xb8\xa1"
     "A\xb3o\xb8\xcc\xa6\xb3\xb3\xcc"
     "\xb7s\xaa\xba\xae\xf8\xae\xa7\xbbP\xb2\xa3\xab~\xb8\xea\xb0T\xa1"
     "A\xbd\xd0\xa6h\xa6h"
     "\xab\xfc\xb1\xd0\xa1"
     "C",
     {"Big5", "detector"}},
    {"\xc5\xec\xb5\xfe\xc5\xd4\xa4\xce\xc5\xb7\xb5\xa4\xcd\xbd\xca\xf3\xa4\xc7\xa4\xb9\xa1\xa3"
     "\xcc\xc0\xc6\xfc\xa4\xcf\xc0\xb2\xa4\xec\xa4\xce\xa4\xc1\xc6\xde\xa4\xea\xa4\xc7\xa4\xb7"
     "\xa4\xe7\xa4\xa6\xa1\xa3\xb8\xe1\xb8\xe5\xa4\xab\xa4\xe9\xb1\xab\xa4\xac\xb9\xdf\xa4\xeb"
     "\xbd\xea\xa4\xe2\xa4\xa2\xa4\xea\xa4\xde\xa4\xb9\xa1\xa3",
     {"EUC-JP", "detector"}},
    {"\xe4\xcf\xc2\xd2\xcf \xd0\xcf\xd6\xc1\xcc\xcf\xd7\xc1\xd4\xd8 \xce\xc1 \xce\xc1\xdb \xd3"
     "\xc1\xca\xd4. \xfa\xc4\xc5\xd3\xd8 \xd7\xd9 \xce\xc1\xca\xc4\xa3\xd4\xc5 \xd0\xcf\xd3"
     "\xcc\xc5\xc4\xce\xc9\xc5 \xce\xcf\xd7\xcf\xd3\xd4\xc9 \xc7\xcf\xd2\xcf\xc4\xc1.",
     {"KOI8-R", "detector"}},
    {"V\xedtejte na na\x9aich str\xe1nk\xe1"
     "ch. Najdete zde nejnov\xecj\x9a\xed zpr\xe1vy a "
     "informace o m\xecst\xec.",
     {"windows-1250", "detector"}},
    {"Bienvenue sur notre site. Vous y trouverez les derni\xe8res nouvelles de la r\xe9gion, l"
     "es \xe9v\xe9nements \xe0 venir et bien plus encore.",
     {"windows-1252", "detector"}},
  };
  for (auto& r : rows) {
    auto got = sniff_encoding(r.body, "text/html");
    CHECK_MESSAGE(got.name == r.expected.name, decode_to_utf8(r.body, got.name));
    CHECK_MESSAGE(got.source == r.expected.source, decode_to_utf8(r.body, got.name));
  }
}

TEST_CASE("encoding: decoding to UTF-8") {
  struct row {
    std::string bytes;
    const char* encoding;
    const char* utf8;
  };
  const std::vector<row> rows = {
    {"\xd6\xd0\xce\xc4\xca\xd7\xd2\xb3", "GBK", "中文首页"},
    {"\xd6\xd0\xce\xc4\xca\xd7\xd2\xb3", "gb2312", "中文首页"}, // a label works as well
    {"\xd6\xd0\xce\xc4\x94"
     "9\xfc"
     "6",
     "gb18030", "中文😀"},
    {"\xd6\xd0\xce\xc4\x94"
     "9\xfc"
     "6",
     "GBK", "中文😀"}, // GBK decodes as gb18030
    {"\x80", "GBK", "€"},
    {"\x93\xfa\x96{\x8c\xea\x82\xcc\x83y\x81[\x83W", "Shift_JIS", "日本語のページ"},
    {"\xb6\xc0\xb6\xc5", "Shift_JIS", "ｶﾀｶﾅ"}, // half-width katakana, single bytes
    {"\xc6\xfc\xcb\xdc\xb8\xec\xa4\xce\xa5\xda\xa1\xbc\xa5\xb8", "EUC-JP", "日本語のページ"},
    {"\x1b$BF|K\x5c"
     "8l$N%Z!<%8\x1b(B",
     "ISO-2022-JP", "日本語のページ"},
    {"\xc7\xd1\xb1\xb9\xbe\xee \xc6\xe4\xc0\xcc\xc1\xf6", "EUC-KR", "한국어 페이지"},
    {"\x8c"
     "c\xb9\xe6\xb0\xa2\xc7\xcf",
     "EUC-KR", "똠방각하"}, // beyond KS X 1001: windows-949
    {"\xc1"
     "c\xc5\xe9\xa4\xa4\xa4\xe5\xba\xf4\xad\xb6",
     "Big5", "繁體中文網頁"},
    {"\xd0\xf3\xf1\xf1\xea\xe0\xff \xf1\xf2\xf0\xe0\xed\xe8\xf6\xe0", "windows-1251",
     "Русская страница"},
    {"\xf2\xd5\xd3\xd3\xcb\xc1\xd1 \xd3\xd4\xd2\xc1\xce\xc9\xc3\xc1", "KOI8-R", "Русская страница"},
    {"\x8f\xe0\xa8\xa2\xa5\xe2", "IBM866", "Привет"},
    {"\x8f\xf0\xe8\xe2\xe5\xf2", "x-mac-cyrillic", "Привет"},
    {"caf\xe9 \x80", "windows-1252", "café €"},
    {"caf\xe9 \x80", "iso-8859-1", "café €"}, // latin1 is windows-1252
    {"\x81\x8d\x8f\x90\x9d", "windows-1252", "\u0081\u008d\u008f\u0090\u009d"},
    {"\xaf\xf3\xb3\xe6", "windows-1250", "Żółć"},
    {"\xaf\xf3\xb3\xe6", "ISO-8859-2", "Żółć"},
    {"\xc5\xeb\xeb\xe7\xed\xe9\xea\xdc", "ISO-8859-7", "Ελληνικά"},
    {"\xf2\xe1\xf8\xe9\xfa", "windows-1255", "עברית"},
    {"\xda\xd1\xc8\xed", "windows-1256", "عربي"},
    {"\xc0\xd2\xc9\xd2\xe4\xb7\xc2", "windows-874", "ภาษาไทย"},
    {"T\xfcrk\xe7"
     "e",
     "windows-1254", "Türkçe"},
    {"\xaatiin\xfe"
     "e",
     "ISO-8859-16", "Științe"},
    {"\xa4uro", "ISO-8859-15", "€uro"},
    {"caf\x8e", "macintosh", "café"},
    {"\xef\xbb\xbf中文", "UTF-8", "中文"},       // the BOM goes
    {"中文\xef\xbb\xbf", "UTF-8", "中文\ufeff"}, // only at the start
    {std::string("\xff\xfe-N\x87"
                 "eo\x00k\x00",
                 10),
     "UTF-16LE", "中文ok"},
    {std::string("-N\x87"
                 "eo\x00k\x00",
                 8),
     "UTF-16LE", "中文ok"},
    {std::string("\xfe\xffN-e\x87\x00o\x00k", 10), "UTF-16BE", "中文ok"},
    {std::string("=\xd8\x00\xde", 4), "UTF-16LE", "😀"},
    {"a\x80\xff", "x-user-defined", "a\uf780\uf7ff"},
    {"<script>", "replacement", "\ufffd"},
    {"", "replacement", ""},
    {"", "GBK", ""},
  };
  for (auto& r : rows)
    CHECK_MESSAGE(decode_to_utf8(r.bytes, r.encoding) == r.utf8,
                  (std::string(r.encoding) + " " + r.utf8));
}

TEST_CASE("encoding: invalid bytes decode as U+FFFD") {
  struct row {
    std::string bytes;
    const char* encoding;
    const char* utf8;
  };
  const std::vector<row> rows = {
    {"a\xff"
     "b",
     "UTF-8", "a\ufffdb"},
    {"a\xe4\xb8", "UTF-8", "a\ufffd"}, // cut off at the end: one U+FFFD
    {"\xe4\xb8"
     "a",
     "UTF-8", "\ufffda"},
    {"\xc0\xaf", "UTF-8", "\ufffd\ufffd"},                     // overlong
    {"\xed\xa0\x80", "UTF-8", "\ufffd\ufffd\ufffd"},           // a surrogate
    {"\xf4\x90\x80\x80", "UTF-8", "\ufffd\ufffd\ufffd\ufffd"}, // past U+10FFFF
    {"\xf0\x9f\x98", "UTF-8", "\ufffd"},
    {"\xff", "GBK", "\ufffd"},
    {"\x81 ", "GBK", "\ufffd "},
    {"\xd6\xd0\xd6", "GBK", "中\ufffd"},
    {"\x82", "Shift_JIS", "\ufffd"},
    {"\xa0", "Shift_JIS", "\ufffd"},
    {"\x80", "Shift_JIS", "\u0080"},
    {"\xc7"
     "a",
     "EUC-KR", "\ufffda"},
    {"\xa4", "Big5", "\ufffd"},
    {"\xd2", "windows-1253", "\ufffd"},
    {"\xa1", "ISO-8859-8", "\ufffd"},
    {std::string("a\0b", 3), "UTF-16LE", "a\ufffd"}, // an odd byte at the end
    {std::string("\0\xd8"
                 "a\0",
                 4),
     "UTF-16LE", "\ufffda"}, // a lone surrogate
    {"\x85"
     "a",
     "Shift_JIS", "\ufffda"}, // an unmapped pair: the ASCII byte stays
    {"\x9b"
     "a",
     "Big5", "\ufffda"},
  };
  for (auto& r : rows)
    CHECK_MESSAGE(decode_to_utf8(r.bytes, r.encoding) == r.utf8,
                  (std::string(r.encoding) + " " + r.utf8));
  CHECK(decode_to_utf8("\x1b$B\xff\xff", "ISO-2022-JP").rfind("\ufffd", 0) == 0);
}

TEST_CASE("encoding: encoding from UTF-8, unmappable characters as &#NNNN;") {
  struct row {
    const char* utf8;
    const char* encoding;
    std::string bytes;
  };
  const std::vector<row> rows = {
    {"中文", "GBK", "\xd6\xd0\xce\xc4"},
    {"中文", "gb2312", "\xd6\xd0\xce\xc4"},
    {"€", "GBK", "\x80"},
    {"€", "gb18030", "\xa2\xe3"},
    {"😀", "gb18030",
     "\x94"
     "9\xfc"
     "6"},
    {"😀", "GBK", "&#128512;"}, // GBK has no four-byte forms
    {"€", "windows-1252", "\x80"},
    {"café", "windows-1252", "caf\xe9"},
    {"中", "windows-1252", "&#20013;"},
    {"Привет", "windows-1251", "\xcf\xf0\xe8\xe2\xe5\xf2"},
    {"€", "windows-1251", "\x88"},
    {"中文 ok", "windows-1251", "&#20013;&#25991; ok"},
    {"😀", "windows-1251", "&#128512;"},
    {"日本語", "Shift_JIS", "\x93\xfa\x96{\x8c\xea"},
    {"日本語", "EUC-JP", "\xc6\xfc\xcb\xdc\xb8\xec"},
    {"日本語", "ISO-2022-JP",
     "\x1b$BF|K\x5c"
     "8l\x1b(B"},
    {"한국어", "EUC-KR", "\xc7\xd1\xb1\xb9\xbe\xee"},
    {"繁體", "Big5",
     "\xc1"
     "c\xc5\xe9"},
    {"Привет", "KOI8-R", "\xf0\xd2\xc9\xd7\xc5\xd4"},
    {"Științe", "ISO-8859-16",
     "\xaatiin\xfe"
     "e"},
    {"中", "ISO-8859-16", "&#20013;"},
    {"a\uf780\uf7ff", "x-user-defined", "a\x80\xff"},
    {"é", "x-user-defined", "&#233;"},
    {"中文", "UTF-8", "中文"},
    {"中文", "UTF-16LE", "中文"}, // UTF-16's output encoding is UTF-8
    {"中文", "UTF-16BE", "中文"},
    {"中文", "replacement", "中文"},
    {"a\xff", "windows-1252", "a&#65533;"}, // broken UTF-8 in: U+FFFD, then unmappable
    {"a\xff", "UTF-8", "a\ufffd"},
    {"", "GBK", ""},
  };
  for (auto& r : rows)
    CHECK_MESSAGE(encode_from_utf8(r.utf8, r.encoding) == r.bytes,
                  (std::string(r.encoding) + " " + r.utf8));
}

TEST_CASE("encoding: ASCII stays ASCII in every ASCII-compatible encoding") {
  std::string ascii;
  for (int c = 0; c < 0x80; ++c)
    ascii += static_cast<char>(c);
  for (auto& name : ascii_compatible) {
    CHECK_MESSAGE(decode_to_utf8(ascii, name) == ascii, name);
    CHECK_MESSAGE(encode_from_utf8(ascii, name) == ascii, name);
  }
  std::string printable; // ISO-2022-JP uses ESC, SO and SI itself
  for (int c = 0x20; c < 0x7F; ++c)
    printable += static_cast<char>(c);
  CHECK(decode_to_utf8(printable, "ISO-2022-JP") == printable);
  CHECK(encode_from_utf8(printable, "ISO-2022-JP") == printable);
}

TEST_CASE("encoding: text survives a round trip through each encoding") {
  struct row {
    const char* encoding;
    const char* text;
  };
  for (auto r : {
         row{"GBK", "中文首页，欢迎光临"},
         row{"gb18030", "中文首页 😀 𠀀"},
         row{"Big5", "繁體中文網頁"},
         row{"Shift_JIS", "日本語のページ、ｶﾀｶﾅ"},
         row{"EUC-JP", "日本語のページ"},
         row{"ISO-2022-JP", "日本語のページ abc"},
         row{"EUC-KR", "한국어 페이지 똠방각하"},
         row{"windows-1251", "Русская страница"},
         row{"KOI8-U", "Українська мова"},
         row{"windows-1252", "Déjà vu — €5"},
         row{"ISO-8859-16", "Științe"},
         row{"IBM866", "Привет"},
       }) {
    auto bytes = encode_from_utf8(r.text, r.encoding);
    CHECK_MESSAGE(bytes.find("&#") == std::string::npos, r.encoding);
    CHECK_MESSAGE(decode_to_utf8(bytes, r.encoding) == r.text, r.encoding);
  }
}

TEST_CASE("encoding: whole pages") {
  auto gbk = repeat(gbk_page, 4000); // ~1.3 MB: the output buffer grows
  auto text = decode_to_utf8(gbk, "GBK");
  CHECK(text.find("新闻中心") != std::string::npos);
  CHECK(encode_from_utf8(text, "GBK") == gbk);
  auto high = std::string(100000, '\x80'); // each byte becomes 3 UTF-8 bytes
  CHECK(decode_to_utf8(high, "windows-1252") == repeat("€", 100000));
  auto utf8 = repeat("<p>中文首页</p>\n", 50000);
  CHECK(decode_to_utf8(utf8, "UTF-8") == utf8);
  CHECK(sniff_encoding(utf8, "text/html") == sniffed_encoding{"UTF-8", "detector"});
}

TEST_CASE("encoding: converters are per thread") {
  std::vector<std::thread> threads;
  std::vector<int> ok(4, 0);
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      auto japanese = decode_to_utf8(shift_jis_page, "Shift_JIS");
      auto korean = decode_to_utf8(euc_kr_page, "EUC-KR");
      for (int i = 0; i < 200; ++i)
        ok[t] += decode_to_utf8(shift_jis_page, "Shift_JIS") == japanese &&
                 decode_to_utf8(euc_kr_page, "EUC-KR") == korean;
    });
  for (auto& th : threads)
    th.join();
  for (int t = 0; t < 4; ++t)
    CHECK(ok[t] == 200);
}

TEST_CASE("encoding: an unknown encoding is bad input") {
  CHECK_THROWS_AS(decode_to_utf8("abc", "utf-7"), input_error);
  CHECK_THROWS_AS(decode_to_utf8("abc", ""), input_error);
  CHECK_THROWS_AS(encode_from_utf8("abc", "ebcdic"), input_error);
}
