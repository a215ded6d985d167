// Unit tests for core/cron: parsing, next-fire search, time zones and DST, ISO-8601.
// Expected instants are written in UTC; comments give the local wall time where it helps.
#include "core/cron.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <vector>

#include "core/error.hpp"

namespace {

using spiderhub::core::cron_schedule;
using spiderhub::core::format_iso8601_utc;
using spiderhub::core::input_error;
using spiderhub::core::parse_iso8601;
using spiderhub::core::sys_seconds;

std::vector<std::string> next_fires(const std::string& expr, const std::string& tz,
                                    const std::string& start, std::size_t n) {
  const auto schedule = cron_schedule::parse(expr, tz);
  std::vector<std::string> out;
  for (sys_seconds t : schedule.next_n(parse_iso8601(start), n))
    out.push_back(format_iso8601_utc(t));
  return out;
}

/// The message of the input_error that `fn` throws, or "" if it throws none.
template <class Fn>
std::string error_of(Fn fn) {
  try {
    fn();
  } catch (const input_error& e) {
    return e.what();
  }
  return "";
}

struct fire_case {
  const char* expr;
  const char* tz;
  const char* start; // next fires are strictly after this instant
  std::vector<std::string> expected;
};

void check_fires(const std::vector<fire_case>& cases) {
  for (const fire_case& c : cases) {
    CAPTURE(c.expr);
    CAPTURE(c.tz);
    CAPTURE(c.start);
    CHECK(next_fires(c.expr, c.tz, c.start, c.expected.size()) == c.expected);
  }
}

} // namespace

TEST_CASE("cron: basic fields, steps, ranges, lists and names") {
  check_fires({
      {"*/15 * * * *", "UTC", "2026-01-01T00:00:00Z",
       {"2026-01-01T00:15:00Z", "2026-01-01T00:30:00Z", "2026-01-01T00:45:00Z",
        "2026-01-01T01:00:00Z"}},
      {"10-12 * * * *", "UTC", "2026-01-01T00:11:00Z",
       {"2026-01-01T00:12:00Z", "2026-01-01T01:10:00Z", "2026-01-01T01:11:00Z"}},
      {"5/20 * * * *", "UTC", "2026-01-01T00:00:00Z", // a/n runs from a to the maximum
       {"2026-01-01T00:05:00Z", "2026-01-01T00:25:00Z", "2026-01-01T00:45:00Z",
        "2026-01-01T01:05:00Z"}},
      {"5,10 8 * * *", "UTC", "2026-01-01T08:07:00Z",
       {"2026-01-01T08:10:00Z", "2026-01-02T08:05:00Z", "2026-01-02T08:10:00Z"}},
      {"0 9-17/4 * * MON-FRI", "UTC", "2026-11-20T10:00:00Z", // Fri 20th -> Mon 23rd
       {"2026-11-20T13:00:00Z", "2026-11-20T17:00:00Z", "2026-11-23T09:00:00Z",
        "2026-11-23T13:00:00Z"}},
      {"0 0 1 JAN,jul *", "UTC", "2026-03-01T00:00:00Z",
       {"2026-07-01T00:00:00Z", "2027-01-01T00:00:00Z", "2027-07-01T00:00:00Z"}},
      {"0 0 1 */3 *", "UTC", "2026-01-01T00:00:00Z",
       {"2026-04-01T00:00:00Z", "2026-07-01T00:00:00Z", "2026-10-01T00:00:00Z",
        "2027-01-01T00:00:00Z"}},
      {"0 12 * * Sun", "UTC", "2026-01-01T00:00:00Z",
       {"2026-01-04T12:00:00Z", "2026-01-11T12:00:00Z"}},
      {"0 12 * * 7", "UTC", "2026-01-01T00:00:00Z", // 7 is Sunday too
       {"2026-01-04T12:00:00Z", "2026-01-11T12:00:00Z"}},
      {"0 0 * * FRI-SUN", "UTC", "2026-01-01T00:00:00Z", // range may end at SUN
       {"2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z", "2026-01-04T00:00:00Z",
        "2026-01-09T00:00:00Z"}},
      {"0 0 * * 1-5/2", "UTC", "2026-01-01T00:00:00Z", // Mon, Wed, Fri
       {"2026-01-02T00:00:00Z", "2026-01-05T00:00:00Z", "2026-01-07T00:00:00Z",
        "2026-01-09T00:00:00Z"}},
      {"\t0  0 * *\tmon ", "UTC", "2026-01-01T00:00:00Z", // tabs, extra blanks, lower case
       {"2026-01-05T00:00:00Z"}},
      {"59 23 31 12 *", "UTC", "2026-06-01T00:00:00Z",
       {"2026-12-31T23:59:00Z", "2027-12-31T23:59:00Z"}},
  });
}

TEST_CASE("cron: day-of-month and day-of-week") {
  check_fires({
      // Both restricted: a day matches if EITHER matches (Fridays and every 13th).
      {"0 0 13 * FRI", "UTC", "2026-01-01T00:00:00Z",
       {"2026-01-02T00:00:00Z", "2026-01-09T00:00:00Z", "2026-01-13T00:00:00Z",
        "2026-01-16T00:00:00Z"}},
      // Vixie: a field starting with '*' counts as unrestricted, so both must match
      // (odd days that are Mondays).
      {"0 0 */2 * MON", "UTC", "2026-01-01T00:00:00Z",
       {"2026-01-05T00:00:00Z", "2026-01-19T00:00:00Z", "2026-02-09T00:00:00Z"}},
      {"0 0 ? * MON", "UTC", "2026-01-01T00:00:00Z",
       {"2026-01-05T00:00:00Z", "2026-01-12T00:00:00Z"}},
      {"0 0 1 * ?", "UTC", "2026-01-01T00:00:00Z",
       {"2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z"}},
      {"0 0 L * *", "UTC", "2026-01-01T00:00:00Z",
       {"2026-01-31T00:00:00Z", "2026-02-28T00:00:00Z", "2026-03-31T00:00:00Z",
        "2026-04-30T00:00:00Z"}},
      {"0 0 15,L 2 *", "UTC", "2027-03-01T00:00:00Z", // leap-year February ends on the 29th
       {"2028-02-15T00:00:00Z", "2028-02-29T00:00:00Z", "2029-02-15T00:00:00Z"}},
      {"0 0 31 2 MON", "UTC", "2026-01-01T00:00:00Z", // impossible dom, but OR with Mondays
       {"2026-02-02T00:00:00Z", "2026-02-09T00:00:00Z"}},
      {"0 0 29 2 *", "UTC", "2025-03-01T00:00:00Z",
       {"2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"}},
      {"0 0 29 2 *", "UTC", "2097-03-01T00:00:00Z", // 2100 is no leap year
       {"2104-02-29T00:00:00Z"}},
  });
}

TEST_CASE("cron: 6-field expressions have seconds") {
  check_fires({
      {"*/20 * * * * *", "UTC", "2026-01-01T00:00:00Z",
       {"2026-01-01T00:00:20Z", "2026-01-01T00:00:40Z", "2026-01-01T00:01:00Z"}},
      {"* * * * * *", "UTC", "2026-12-31T23:59:58Z",
       {"2026-12-31T23:59:59Z", "2027-01-01T00:00:00Z", "2027-01-01T00:00:01Z"}},
      {"30 0 0 1 1 *", "UTC", "2026-01-01T00:00:30Z", {"2027-01-01T00:00:30Z"}},
      {"0 0 12 * * ?", "UTC", "2026-01-01T12:00:00Z", {"2026-01-02T12:00:00Z"}},
  });
  CHECK(cron_schedule::parse("0 * * * * *").has_seconds());
  CHECK_FALSE(cron_schedule::parse("0 * * * *").has_seconds());
}

TEST_CASE("cron: macros") {
  check_fires({
      {"@yearly", "UTC", "2026-05-05T00:00:00Z", {"2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z"}},
      {"@annually", "UTC", "2026-05-05T00:00:00Z", {"2027-01-01T00:00:00Z"}},
      {"@monthly", "UTC", "2026-05-05T00:00:00Z", {"2026-06-01T00:00:00Z", "2026-07-01T00:00:00Z"}},
      {"@weekly", "UTC", "2026-01-01T00:00:00Z", {"2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z"}},
      {"@daily", "UTC", "2026-01-01T00:00:00Z", {"2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"}},
      {"@midnight", "UTC", "2026-01-01T10:00:00Z", {"2026-01-02T00:00:00Z"}},
      {"@hourly", "UTC", "2026-01-01T10:00:00Z", {"2026-01-01T11:00:00Z", "2026-01-01T12:00:00Z"}},
      {" @DAILY ", "UTC", "2026-01-01T00:00:00Z", {"2026-01-02T00:00:00Z"}},
  });
  const auto daily = cron_schedule::parse("@daily");
  CHECK(daily.expression() == "@daily");
  CHECK_FALSE(daily.has_seconds());
}

TEST_CASE("cron: impossible schedules run dry") {
  for (const char* expr : {"0 0 30 2 *", "0 0 31 4 *", "0 0 31 APR,JUN,SEP,NOV *",
                           "0 0 0 30 2 ?"}) {
    CAPTURE(expr);
    const auto schedule = cron_schedule::parse(expr);
    CHECK_FALSE(schedule.next_after(parse_iso8601("2026-01-01T00:00:00Z")).has_value());
    CHECK(schedule.next_n(parse_iso8601("2026-01-01T00:00:00Z"), 3).empty());
  }
  CHECK(cron_schedule::parse("* * * * *").next_n(parse_iso8601("2026-01-01T00:00:00Z"), 0).empty());
}

TEST_CASE("cron: spring-forward gap fires once at the end of the gap") {
  check_fires({
      // Berlin 2026-03-29: 02:00 CET -> 03:00 CEST at 01:00Z; 02:30 does not exist.
      {"30 2 * * *", "Europe/Berlin", "2026-03-28T00:00:00Z",
       {"2026-03-28T01:30:00Z", "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"}},
      // Every 02:xx time maps onto 03:00 CEST; it fires once, not twice.
      {"*/30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z",
       {"2026-03-29T01:00:00Z", "2026-03-30T00:00:00Z", "2026-03-30T00:30:00Z"}},
      {"0 2,3 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z",
       {"2026-03-29T01:00:00Z", "2026-03-30T00:00:00Z", "2026-03-30T01:00:00Z"}},
      // Hourly keeps a one-hour rhythm in UTC across the gap.
      {"0 * * * *", "Europe/Berlin", "2026-03-28T23:30:00Z",
       {"2026-03-29T00:00:00Z", "2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z"}},
      // New York 2026-03-08: 02:00 EST -> 03:00 EDT at 07:00Z.
      {"30 2 * * *", "America/New_York", "2026-03-07T12:00:00Z",
       {"2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"}},
      {"0 * * * *", "America/New_York", "2026-03-08T05:30:00Z",
       {"2026-03-08T06:00:00Z", "2026-03-08T07:00:00Z", "2026-03-08T08:00:00Z"}},
      // Past 2037 the zone's POSIX rule applies (Berlin 2040-03-25 at 01:00Z).
      {"30 2 * * *", "Europe/Berlin", "2040-03-23T12:00:00Z",
       {"2040-03-24T01:30:00Z", "2040-03-25T01:00:00Z", "2040-03-26T00:30:00Z"}},
  });
}

TEST_CASE("cron: fall-back overlap fires once, at the first occurrence") {
  check_fires({
      // Berlin 2026-10-25: 03:00 CEST -> 02:00 CET at 01:00Z; 02:30 happens twice.
      {"30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z",
       {"2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"}},
      // Hourly: 02:00 CEST fires, the repeated 02:00 CET does not.
      {"0 * * * *", "Europe/Berlin", "2026-10-24T22:30:00Z",
       {"2026-10-24T23:00:00Z", "2026-10-25T00:00:00Z", "2026-10-25T02:00:00Z",
        "2026-10-25T03:00:00Z"}},
      // Starting inside the second pass (02:10 CET): the 02:xx times already fired.
      {"*/15 2 * * *", "Europe/Berlin", "2026-10-25T01:10:00Z",
       {"2026-10-26T01:00:00Z"}},
      // New York 2026-11-01: 02:00 EDT -> 01:00 EST at 06:00Z; 01:30 happens twice.
      {"30 1 * * *", "America/New_York", "2026-10-31T12:00:00Z",
       {"2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"}},
      {"0 * * * *", "America/New_York", "2026-11-01T04:30:00Z",
       {"2026-11-01T05:00:00Z", "2026-11-01T07:00:00Z", "2026-11-01T08:00:00Z"}},
      {"30 1 * * *", "America/New_York", "2040-11-03T12:00:00Z", // POSIX rule past 2037
       {"2040-11-04T05:30:00Z", "2040-11-05T06:30:00Z"}},
  });
}

TEST_CASE("cron: local wall time in zones without a transition") {
  check_fires({
      {"0 9 * * *", "Europe/Berlin", "2026-07-01T00:00:00Z", {"2026-07-01T07:00:00Z"}},
      {"0 9 * * *", "Europe/Berlin", "2026-01-01T00:00:00Z", {"2026-01-01T08:00:00Z"}},
      {"0 9 * * *", "Asia/Kolkata", "2026-01-01T00:00:00Z", {"2026-01-01T03:30:00Z"}},
      {"0 9 * * *", "Etc/UTC", "2026-01-01T00:00:00Z", {"2026-01-01T09:00:00Z"}},
      // Local midnight of Jan 1 is still Dec 31 in UTC.
      {"@yearly", "America/New_York", "2026-06-01T00:00:00Z", {"2027-01-01T05:00:00Z"}},
  });
  const auto s = cron_schedule::parse("0 9 * * *", "Europe/Berlin");
  CHECK(s.zone_name() == "Europe/Berlin");
  CHECK(s.expression() == "0 9 * * *");
}

TEST_CASE("cron: fields expand to the expected values") {
  const auto all_weekdays = cron_schedule::parse("0 0 * * 0-7").expanded();
  CHECK(all_weekdays.weekdays == 0x7FU);
  CHECK(all_weekdays.weekdays_wildcard == false);
  CHECK(all_weekdays.days_wildcard == true);
  CHECK(cron_schedule::parse("0 0 * * 7").expanded().weekdays == 0x1U);
  CHECK(cron_schedule::parse("0 0 * jan-MAR *").expanded().months == 0xEU);
  CHECK(cron_schedule::parse("0 0 * * */3").expanded().weekdays == 0x49U); // 0, 3, 6
  CHECK(cron_schedule::parse("0 0 L * *").expanded().last_day);
  CHECK(cron_schedule::parse("0 0,12 * * *").expanded().hours == 0x1001U);
  CHECK(cron_schedule::parse("0 0 * * *").expanded().seconds == 0x1U);
}

TEST_CASE("cron: parse errors name the field and value") {
  struct error_case {
    const char* expr;
    const char* message;
  };
  const std::vector<error_case> cases = {
      {"", "cron: empty expression"},
      {" \t ", "cron: empty expression"},
      {"* * * *", "cron: expected 5 or 6 fields, got 4 in \"* * * *\""},
      {"* * * * * * *", "cron: expected 5 or 6 fields, got 7 in \"* * * * * * *\""},
      {"0 25 * * *", "cron: field 'hour' value 25 out of range 0-23 in \"0 25 * * *\""},
      {"60 * * * *", "cron: field 'minute' value 60 out of range 0-59 in \"60 * * * *\""},
      {"61 * * * * *", "cron: field 'second' value 61 out of range 0-59 in \"61 * * * * *\""},
      {"0 0 0 * *", "cron: field 'day-of-month' value 0 out of range 1-31 in \"0 0 0 * *\""},
      {"0 0 * 13 *", "cron: field 'month' value 13 out of range 1-12 in \"0 0 * 13 *\""},
      {"0 0 * * 8", "cron: field 'day-of-week' value 8 out of range 0-7 in \"0 0 * * 8\""},
      {"0 0-24 * * *", "cron: field 'hour' value 24 out of range 0-23 in \"0 0-24 * * *\""},
      {"99999999999 * * * *",
       "cron: field 'minute' value 99999999999 out of range 0-59 in \"99999999999 * * * *\""},
      {"*/0 * * * *", "cron: field 'minute' step 0 out of range 1-60 in \"*/0 * * * *\""},
      {"0 0 1-31/0 * *",
       "cron: field 'day-of-month' step 0 out of range 1-31 in \"0 0 1-31/0 * *\""},
      {"0 */25 * * *", "cron: field 'hour' step 25 out of range 1-24 in \"0 */25 * * *\""},
      {"*/x * * * *", "cron: field 'minute' invalid step 'x' in \"*/x * * * *\""},
      {"*/ * * * *", "cron: field 'minute' invalid step '' in \"*/ * * * *\""},
      {"5-1 * * * *", "cron: field 'minute' range 5-1 is reversed in \"5-1 * * * *\""},
      {"0 0 * DEC-JAN *", "cron: field 'month' range DEC-JAN is reversed in \"0 0 * DEC-JAN *\""},
      {"abc * * * *", "cron: field 'minute' invalid value 'abc' in \"abc * * * *\""},
      {"0 MON * * *", "cron: field 'hour' invalid value 'MON' in \"0 MON * * *\""},
      {"0 0 * * FOO", "cron: field 'day-of-week' invalid value 'FOO' in \"0 0 * * FOO\""},
      {"0 0 * JANUARY *", "cron: field 'month' invalid value 'JANUARY' in \"0 0 * JANUARY *\""},
      {"0 0 * * MON#2", "cron: field 'day-of-week' invalid value 'MON#2' in \"0 0 * * MON#2\""},
      {"0 0 15W * *", "cron: field 'day-of-month' invalid value '15W' in \"0 0 15W * *\""},
      {"0 L * * *", "cron: field 'hour' invalid value 'L' in \"0 L * * *\""},
      {"0 0 L/2 * *", "cron: field 'day-of-month' invalid value 'L' in \"0 0 L/2 * *\""},
      {"-5 * * * *", "cron: field 'minute' invalid item '-5' in \"-5 * * * *\""},
      {"1,,2 * * * *", "cron: field 'minute' has an empty list item in \"1,,2 * * * *\""},
      {"1, * * * *", "cron: field 'minute' has an empty list item in \"1, * * * *\""},
      {"? * * * *", "cron: field 'minute' does not allow '?' in \"? * * * *\""},
      {"@reboot", "cron: unknown macro '@reboot' (supported: @yearly @annually @monthly "
                  "@weekly @daily @midnight @hourly)"},
      {"@daily extra", "cron: expected 5 or 6 fields, got 2 in \"@daily extra\""},
  };
  for (const error_case& c : cases) {
    CAPTURE(c.expr);
    CHECK(error_of([&] { cron_schedule::parse(c.expr); }) == c.message);
  }
}

TEST_CASE("cron: unknown time zones are input errors") {
  for (const char* tz : {"Mars/Base", "europe/berlin", "../../etc/passwd", "CEST"}) {
    CAPTURE(tz);
    const std::string message = error_of([&] { cron_schedule::parse("0 * * * *", tz); });
    CHECK(message.rfind("cron: unknown time zone '" + std::string(tz) + "'", 0) == 0);
  }
  CHECK(error_of([] { cron_schedule::parse("0 * * * *", ""); }) ==
        "cron: empty time zone name for \"0 * * * *\"");
  // Field errors are reported before the zone is looked up.
  CHECK(error_of([] { cron_schedule::parse("0 25 * * *", "Mars/Base"); }).find("'hour'") !=
        std::string::npos);
}

TEST_CASE("cron: search skips by field instead of by second") {
  const auto start = std::chrono::steady_clock::now();

  const auto every_second = cron_schedule::parse("* * * * * *", "Europe/Berlin");
  const sys_seconds from = parse_iso8601("2026-06-01T00:00:00Z");
  const auto fires = every_second.next_n(from, 1000);
  REQUIRE(fires.size() == 1000);
  CHECK(fires.front() == from + std::chrono::seconds{1});
  CHECK(fires.back() == from + std::chrono::seconds{1000});

  // Searching second by second would take ~10^8 steps per call here.
  const auto leap_day = cron_schedule::parse("0 0 29 2 *", "America/New_York");
  const auto never = cron_schedule::parse("0 0 30 2 *", "Europe/Berlin");
  for (int i = 0; i < 100; ++i) {
    const sys_seconds t = from + std::chrono::hours{24 * i};
    CHECK(format_iso8601_utc(*leap_day.next_after(t)) == "2028-02-29T05:00:00Z");
    CHECK_FALSE(never.next_after(t).has_value());
  }

  const auto elapsed = std::chrono::steady_clock::now() - start;
  CHECK(elapsed < std::chrono::seconds{1});
}

TEST_CASE("iso8601: formatting") {
  CHECK(format_iso8601_utc(sys_seconds{}) == "1970-01-01T00:00:00Z");
  CHECK(format_iso8601_utc(sys_seconds{std::chrono::seconds{-1}}) == "1969-12-31T23:59:59Z");
  CHECK(format_iso8601_utc(sys_seconds{std::chrono::seconds{1795514400}}) ==
        "2026-11-24T10:00:00Z");
}

TEST_CASE("iso8601: parsing accepts Z, offsets and no zone") {
  struct parse_case {
    const char* text;
    const char* utc;
  };
  const std::vector<parse_case> cases = {
      {"2026-11-24T10:00:00Z", "2026-11-24T10:00:00Z"},
      {"2026-11-24T10:00:00", "2026-11-24T10:00:00Z"},
      {"2026-11-24t10:00:00z", "2026-11-24T10:00:00Z"},
      {"2026-11-24 10:00:00Z", "2026-11-24T10:00:00Z"},
      {"2026-11-24T12:00:00+02:00", "2026-11-24T10:00:00Z"},
      {"2026-11-24T05:00:00-05:00", "2026-11-24T10:00:00Z"},
      {"2026-11-24T15:30:00+0530", "2026-11-24T10:00:00Z"},
      {"2026-11-24T00:30:00+01:00", "2026-11-23T23:30:00Z"},
      {"2026-11-24T10:00:00.999Z", "2026-11-24T10:00:00Z"}, // fractions are truncated
      {"2028-02-29T23:59:59Z", "2028-02-29T23:59:59Z"},
      {"1970-01-01T00:00:00Z", "1970-01-01T00:00:00Z"},
  };
  for (const parse_case& c : cases) {
    CAPTURE(c.text);
    CHECK(format_iso8601_utc(parse_iso8601(c.text)) == c.utc);
  }
  CHECK(parse_iso8601("2026-11-24T10:00:00Z").time_since_epoch().count() == 1795514400);
}

TEST_CASE("iso8601: round trip") {
  for (long long secs : {0LL, -1LL, 951782400LL, 1795514400LL, 4107542399LL, 253402300799LL}) {
    CAPTURE(secs);
    const sys_seconds t{std::chrono::seconds{secs}};
    CHECK(parse_iso8601(format_iso8601_utc(t)) == t);
  }
}

TEST_CASE("iso8601: parse errors") {
  const std::string format = "expected YYYY-MM-DDTHH:MM:SS[.fff][Z|+hh:mm|-hh:mm]";
  struct error_case {
    const char* text;
    std::string what;
  };
  const std::vector<error_case> cases = {
      {"", format},
      {"2026-11-24", format},
      {"2026-11-24T10:00Z", format},
      {"26-11-24T10:00:00Z", format},
      {"2026/11/24T10:00:00Z", format},
      {"2026-11-24T10:00:00Zjunk", format},
      {"2026-11-24T10:00:00.Z", format},
      {"2026-11-24T10:00:00+2", format},
      {"2026-11-24T10:00:00 ", format},
      {"2026-13-01T00:00:00Z", "invalid calendar date"},
      {"2026-02-29T00:00:00Z", "invalid calendar date"},
      {"2026-11-00T00:00:00Z", "invalid calendar date"},
      {"2026-11-24T24:00:00Z", "invalid time of day"},
      {"2026-11-24T10:60:00Z", "invalid time of day"},
      {"2026-11-24T10:00:60Z", "invalid time of day"}, // leap seconds are not representable
      {"2026-11-24T10:00:00+24:00", "UTC offset out of range"},
      {"2026-11-24T10:00:00-01:60", "UTC offset out of range"},
  };
  for (const error_case& c : cases) {
    CAPTURE(c.text);
    CHECK(error_of([&] { parse_iso8601(c.text); }) ==
          "iso8601: " + c.what + " in \"" + c.text + "\"");
  }
}
