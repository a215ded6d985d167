#pragma once
// Cron expressions evaluated in the wall time of an IANA time zone.
//
// Framework-free: depends only on the standard library here; the implementation uses
// Howard Hinnant's date/tz library (Debian libhowardhinnant-date-dev, -ldate-tz).
// Syntax, time-zone and DST rules are described in docs/cron.md.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace spiderhub::core {

/// An instant in UTC with one-second resolution.
using sys_seconds = std::chrono::time_point<std::chrono::system_clock, std::chrono::seconds>;

namespace detail {
class zone_rules;  // time-zone lookups; defined in cron.cpp to keep <date/tz.h> out of here
struct civil_time; // broken-down local wall time; defined in cron.cpp
} // namespace detail

/// A parsed cron schedule. Immutable after parse(), so one instance may be shared between
/// threads without locking.
class cron_schedule {
 public:
  /// Parses a 5-field (min hour dom month dow) or 6-field (sec min hour dom month dow)
  /// expression, or a macro (@yearly @annually @monthly @weekly @daily @midnight @hourly).
  /// `tz` is an IANA zone name ("UTC", "Europe/Berlin", ...).
  /// Throws input_error naming the offending field and value, or the unknown zone.
  static cron_schedule parse(std::string_view expr, std::string_view tz = "UTC");

  /// First fire time strictly after `after`, or nullopt if there is none within the next
  /// 8 years of local time (e.g. "0 0 30 2 *"); 8 years always include a Feb 29.
  std::optional<sys_seconds> next_after(sys_seconds after) const;

  /// Up to `n` consecutive fire times after `after`; fewer if the schedule runs dry.
  std::vector<sys_seconds> next_n(sys_seconds after, std::size_t n) const;

  /// True for 6-field expressions (the first field is seconds).
  bool has_seconds() const;
  /// The expression as given to parse().
  const std::string& expression() const;
  /// The time-zone name as given to parse().
  const std::string& zone_name() const;

  /// Bit masks of allowed values, bit i set = value i allowed. Public so that tests and
  /// diagnostics can inspect what a field expanded to.
  struct fields {
    std::uint64_t seconds = 0; // 0-59
    std::uint64_t minutes = 0; // 0-59
    std::uint64_t hours = 0;   // 0-23
    std::uint64_t days = 0;    // 1-31 (day of month)
    std::uint64_t months = 0;  // 1-12
    std::uint64_t weekdays = 0; // 0-6, 0 = Sunday (7 is folded into 0)
    bool last_day = false;     // 'L' in day-of-month: last day of the month
    // Vixie cron: a day field whose text starts with '*' or '?' is unrestricted; only when
    // both day fields are restricted does a day match if EITHER of them matches.
    bool days_wildcard = false;
    bool weekdays_wildcard = false;
  };
  const fields& expanded() const { return fields_; }

 private:
  bool day_matches(const detail::civil_time& c) const;
  std::optional<detail::civil_time> next_local_match(detail::civil_time c, int last_year) const;

  std::string expression_;
  std::string zone_name_;
  bool has_seconds_ = false;
  fields fields_;
  std::shared_ptr<const detail::zone_rules> zone_; // nullptr means UTC
};

/// Formats as "2026-11-24T10:00:00Z".
std::string format_iso8601_utc(sys_seconds t);

/// Parses "YYYY-MM-DDTHH:MM:SS" with an optional fraction (truncated to whole seconds) and
/// an optional zone: "Z", "+hh:mm", "-hh:mm" ("+hhmm" too); no zone means UTC.
/// Throws input_error on anything else.
sys_seconds parse_iso8601(std::string_view s);

} // namespace spiderhub::core
