// Cron expressions (first line) in a zone (second line, optional): parse, then the next
// fire times must be strictly increasing.
#include <exception>

#include "common.hpp"
#include "core/cron.hpp"
#include "core/error.hpp"

using namespace spiderhub;
using spiderhub::fuzz::require;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto s = fuzz::text(data, size);
  auto nl = s.find('\n');
  auto expr = s.substr(0, nl);
  std::string_view tz = "UTC";
  if (nl != std::string_view::npos) {
    // A few real zones with DST, chosen by the byte after the newline.
    static const char* zones[] = {"UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe",
                                  "Asia/Kolkata", "Not/AZone"};
    tz = nl + 1 < s.size() ? zones[static_cast<unsigned char>(s[nl + 1]) % 6] : "UTC";
  }
  try {
    auto c = core::cron_schedule::parse(expr, tz);
    auto start = core::sys_seconds{std::chrono::seconds{1700000000}};
    auto fires = c.next_n(start, 4);
    auto last = start;
    for (auto t : fires) {
      require(t > last, "fire times strictly increase");
      last = t;
    }
  } catch (const core::input_error&) {
  }
  return 0;
}
