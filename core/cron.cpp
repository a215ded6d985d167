#include "core/cron.hpp"

// Debian's libdate-tz is built with USE_OS_TZDB=1 (it reads /usr/share/zoneinfo) and
// ONLY_C_LOCALE=1. USE_OS_TZDB changes the layout of date::time_zone, so it must match the
// library even when the build does not pass it (the CMake target date::date-tz does).
#ifndef USE_OS_TZDB
#define USE_OS_TZDB 1
#endif
#ifndef ONLY_C_LOCALE
#define ONLY_C_LOCALE 1
#endif
#include <date/date.h>
#include <date/ptz.h>
#include <date/tz.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <utility>

#include "core/error.hpp"

namespace spiderhub::core {

using namespace std::chrono_literals;

// ---------------------------------------------------------------------------------------
// Time zones
// ---------------------------------------------------------------------------------------

namespace detail {

/// Maps instants to local wall time and back for one IANA zone.
///
/// date 3.0.1 reading the OS database ignores the POSIX TZ rule at the end of each TZif
/// file, so on its own every zone would stop observing DST after its last listed
/// transition (2037 in Debian's files). Past that instant the footer rule is used instead.
class zone_rules {
 public:
  /// Throws input_error if the zone is unknown.
  static std::shared_ptr<const zone_rules> load(const std::string& name);

  explicit zone_rules(const date::time_zone* zone);

  date::local_seconds to_local(sys_seconds t) const {
    return date::local_seconds{t.time_since_epoch() + info_at(t).offset};
  }

  /// The instant a cron job scheduled at local time `l` fires: the only instant for a
  /// unique local time, the first one when the local time repeats (fall-back overlap), and
  /// the end of the gap (the transition instant) when it is skipped (spring-forward gap).
  sys_seconds resolve(date::local_seconds l) const {
    const date::local_info info = info_at(l);
    if (info.result == date::local_info::nonexistent) return info.second.begin;
    return sys_seconds{l.time_since_epoch() - info.first.offset};
  }

 private:
  date::sys_info info_at(sys_seconds t) const {
    return tail_ && t >= tail_from_ ? tail_->get_info(t) : zone_->get_info(t);
  }

  date::local_info info_at(date::local_seconds l) const {
    // UTC offsets stay within ±26 h, so this local time is surely past tail_from_.
    const bool past_tail = sys_seconds{l.time_since_epoch()} - 26h >= tail_from_;
    return tail_ && past_tail ? tail_->get_info(l) : zone_->get_info(l);
  }

  const date::time_zone* zone_;
  std::optional<Posix::time_zone> tail_; // the footer rule, used from tail_from_ on
  sys_seconds tail_from_{};              // the zone's last listed transition
};

namespace {

constexpr const char* kZoneinfoDir = "/usr/share/zoneinfo/"; // where Debian's libdate-tz looks

/// The POSIX TZ string that TZif version 2+ files end with ("\nCET-1CEST,M3.5.0,...\n"),
/// or nullopt if the file has none.
std::optional<std::string> read_tzif_footer(const std::string& zone_name) {
  std::ifstream in(kZoneinfoDir + zone_name, std::ios::binary);
  const std::string data{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (data.size() < 6 || data.compare(0, 4, "TZif") != 0 || data[4] < '2' || data.back() != '\n')
    return std::nullopt;
  const auto start = data.rfind('\n', data.size() - 2);
  if (start == std::string::npos || start + 2 >= data.size()) return std::nullopt;
  return data.substr(start + 1, data.size() - start - 2);
}

} // namespace

zone_rules::zone_rules(const date::time_zone* zone) : zone_(zone) {
  // The period holding a far-future instant starts at the zone's last listed transition.
  tail_from_ = zone_->get_info(date::sys_days{date::year{9999} / 1 / 1}).begin;
  const auto footer = read_tzif_footer(zone_->name());
  if (!footer) return;
  try {
    Posix::time_zone rule{*footer};
    // Only trust a footer that agrees with the listed data where they meet.
    if (rule.get_info(tail_from_).offset == zone_->get_info(tail_from_).offset)
      tail_.emplace(std::move(rule));
  } catch (const std::exception&) {
    // A footer this version of ptz.h cannot parse: keep date's last listed offset.
  }
}

std::shared_ptr<const zone_rules> zone_rules::load(const std::string& name) {
  // Zones are immutable and few; sharing them makes parse() cheap after the first use.
  static std::mutex mutex;
  static std::map<std::string, std::shared_ptr<const zone_rules>, std::less<>> cache;
  const std::lock_guard<std::mutex> lock(mutex);
  if (auto it = cache.find(name); it != cache.end()) return it->second;
  const date::time_zone* zone = nullptr;
  try {
    zone = date::locate_zone(name);
  } catch (const std::exception& e) {
    throw input_error("cron: unknown time zone '" + name + "' (" + e.what() + ")");
  }
  auto rules = std::make_shared<const zone_rules>(zone);
  cache.emplace(name, rules);
  return rules;
}

// ---------------------------------------------------------------------------------------
// Local calendar arithmetic
// ---------------------------------------------------------------------------------------

/// A local wall time broken into fields; always a valid calendar date.
struct civil_time {
  int year;
  unsigned month;  // 1-12
  unsigned day;    // 1-31
  unsigned hour;   // 0-23
  unsigned minute; // 0-59
  unsigned second; // 0-59
};

} // namespace detail

namespace {

using detail::civil_time;

civil_time to_civil(date::local_seconds l) {
  const auto midnight = date::floor<date::days>(l);
  const date::year_month_day ymd{midnight};
  const auto since_midnight = static_cast<unsigned>((l - midnight).count()); // seconds
  return {int(ymd.year()), unsigned(ymd.month()), unsigned(ymd.day()), since_midnight / 3600,
          since_midnight / 60 % 60, since_midnight % 60};
}

date::local_seconds to_local_seconds(const civil_time& c) {
  const date::local_days day{date::year{c.year} / date::month{c.month} / date::day{c.day}};
  return day + std::chrono::hours{c.hour} + std::chrono::minutes{c.minute} +
         std::chrono::seconds{c.second};
}

unsigned days_in_month(int year, unsigned month) {
  return unsigned((date::year{year} / date::month{month} / date::last).day());
}

unsigned weekday_of(const civil_time& c) { // 0 = Sunday
  const date::year_month_day ymd{date::year{c.year}, date::month{c.month}, date::day{c.day}};
  return date::weekday{date::sys_days{ymd}}.c_encoding();
}

bool has_bit(std::uint64_t mask, unsigned value) { return (mask >> value) & 1U; }

/// Smallest allowed value in [from, limit), or `limit` if there is none.
unsigned next_bit(std::uint64_t mask, unsigned from, unsigned limit) {
  while (from < limit && !has_bit(mask, from)) ++from;
  return from;
}

// The advance_* and skip_to_* helpers move `c` forward to the start of a later unit and
// zero the smaller fields; the search loop then re-checks every field, largest first.

void advance_day(civil_time& c) {
  c.hour = c.minute = c.second = 0;
  if (++c.day <= days_in_month(c.year, c.month)) return;
  c.day = 1;
  if (++c.month <= 12) return;
  c.month = 1;
  ++c.year;
}

void advance_hour(civil_time& c) {
  c.minute = c.second = 0;
  if (++c.hour == 24) advance_day(c);
}

void advance_minute(civil_time& c) {
  c.second = 0;
  if (++c.minute == 60) advance_hour(c);
}

/// Jumps to the first day of the next allowed month.
void skip_to_month(civil_time& c, std::uint64_t months) {
  c.day = 1;
  c.hour = c.minute = c.second = 0;
  c.month = next_bit(months, c.month + 1, 13);
  if (c.month == 13) {
    ++c.year;
    c.month = next_bit(months, 1, 13);
  }
}

void skip_to_hour(civil_time& c, std::uint64_t hours) {
  const unsigned hour = next_bit(hours, c.hour + 1, 24);
  if (hour == 24) return advance_day(c);
  c.hour = hour;
  c.minute = c.second = 0;
}

void skip_to_minute(civil_time& c, std::uint64_t minutes) {
  const unsigned minute = next_bit(minutes, c.minute + 1, 60);
  if (minute == 60) return advance_hour(c);
  c.minute = minute;
  c.second = 0;
}

void skip_to_second(civil_time& c, std::uint64_t seconds) {
  const unsigned second = next_bit(seconds, c.second + 1, 60);
  if (second == 60) return advance_minute(c);
  c.second = second;
}

// Far enough that every possible schedule fires: Feb 29 can be 8 years apart (2096, 2104).
constexpr int kSearchYears = 8;

} // namespace

// ---------------------------------------------------------------------------------------
// Expression parsing
// ---------------------------------------------------------------------------------------

namespace {

constexpr std::string_view kMonthNames[] = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                           "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
constexpr std::string_view kDayNames[] = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"};

struct field_spec {
  const char* name; // as shown in error messages
  unsigned min;
  unsigned max;
  const std::string_view* names = nullptr; // three-letter names; value = index + names_base
  std::size_t name_count = 0;
  unsigned names_base = 0;
  bool is_day_of_month = false; // allows '?' and 'L'
  bool is_day_of_week = false;  // allows '?'; a range may end at SUN (0 read as 7)
};

constexpr field_spec kSecondField{"second", 0, 59};
constexpr field_spec kMinuteField{"minute", 0, 59};
constexpr field_spec kHourField{"hour", 0, 23};
constexpr field_spec kDayField{"day-of-month", 1, 31, nullptr, 0, 0, true};
constexpr field_spec kMonthField{"month", 1, 12, kMonthNames, 12, 1};
constexpr field_spec kWeekdayField{"day-of-week", 0, 7, kDayNames, 7, 0, false, true};

/// Expands the text of one field into a bit mask; bad input throws input_error naming the
/// field and the value and quoting the whole expression.
class field_parser {
 public:
  field_parser(const field_spec& spec, std::string_view expr) : spec_(spec), expr_(expr) {}

  struct result {
    std::uint64_t mask = 0;
    bool last_day = false; // 'L' seen (day-of-month only)
  };

  result parse(std::string_view text) const {
    result out;
    std::size_t start = 0;
    while (true) {
      const std::size_t comma = text.find(',', start);
      parse_item(text.substr(start, comma - start), out);
      if (comma == std::string_view::npos) break;
      start = comma + 1;
    }
    return out;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw input_error("cron: field '" + std::string(spec_.name) + "' " + what + " in \"" +
                      std::string(expr_) + "\"");
  }

  std::string range_text() const {
    return std::to_string(spec_.min) + "-" + std::to_string(spec_.max);
  }

  // One list item: *, ?, L, a, a-b, with an optional /step.
  void parse_item(std::string_view item, result& out) const {
    if (item.empty()) fail("has an empty list item");
    const std::size_t slash = item.find('/');
    const std::string_view base = item.substr(0, slash);
    const bool stepped = slash != std::string_view::npos;
    const unsigned step = stepped ? parse_step(item.substr(slash + 1)) : 1;

    if (base == "L" && spec_.is_day_of_month && !stepped) {
      out.last_day = true;
      return;
    }
    unsigned lo = spec_.min;
    unsigned hi = spec_.max;
    if (base == "?" && !spec_.is_day_of_month && !spec_.is_day_of_week)
      fail("does not allow '?'");
    if (base != "*" && base != "?") {
      const std::size_t dash = base.find('-');
      lo = parse_value(base.substr(0, dash), item);
      hi = dash != std::string_view::npos ? parse_value(base.substr(dash + 1), item)
                                          : (stepped ? spec_.max : lo); // "a/n" runs to max
      if (spec_.is_day_of_week && hi == 0 && lo > 0) hi = 7; // FRI-SUN
      if (lo > hi) fail("range " + std::string(base) + " is reversed");
    }
    for (unsigned v = lo; v <= hi; v += step) out.mask |= std::uint64_t{1} << v;
  }

  unsigned parse_step(std::string_view text) const {
    unsigned step = 0;
    if (!parse_digits(text, step)) fail("invalid step '" + std::string(text) + "'");
    const unsigned span = spec_.max - spec_.min + 1;
    if (step == 0 || step > span)
      fail("step " + std::string(text) + " out of range 1-" + std::to_string(span));
    return step;
  }

  unsigned parse_value(std::string_view token, std::string_view item) const {
    if (token.empty()) fail("invalid item '" + std::string(item) + "'");
    unsigned value = 0;
    if (parse_digits(token, value) && value >= spec_.min && value <= spec_.max) return value;
    if (is_digits(token))
      fail("value " + std::string(token) + " out of range " + range_text());
    if (auto named = lookup_name(token)) return *named;
    fail("invalid value '" + std::string(token) + "'");
  }

  std::optional<unsigned> lookup_name(std::string_view token) const {
    if (token.size() != 3) return std::nullopt;
    for (std::size_t i = 0; i < spec_.name_count; ++i) {
      const std::string_view name = spec_.names[i];
      bool same = true;
      for (std::size_t k = 0; k < 3; ++k)
        same = same && std::toupper(static_cast<unsigned char>(token[k])) == name[k];
      if (same) return static_cast<unsigned>(i) + spec_.names_base;
    }
    return std::nullopt;
  }

  static bool is_digits(std::string_view text) {
    if (text.empty()) return false;
    for (char ch : text)
      if (ch < '0' || ch > '9') return false;
    return true;
  }

  /// Whole-token unsigned decimal; false for anything else, including overflow.
  static bool parse_digits(std::string_view text, unsigned& out) {
    if (!is_digits(text)) return false;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return ec == std::errc{} && end == text.data() + text.size();
  }

  const field_spec& spec_;
  std::string_view expr_;
};

std::vector<std::string_view> split_fields(std::string_view expr) {
  std::vector<std::string_view> fields;
  std::size_t pos = 0;
  while (true) {
    pos = expr.find_first_not_of(" \t", pos);
    if (pos == std::string_view::npos) break;
    const std::size_t end = expr.find_first_of(" \t", pos);
    fields.push_back(expr.substr(pos, end - pos));
    if (end == std::string_view::npos) break;
    pos = end;
  }
  return fields;
}

/// The 5-field equivalent of a macro such as "@daily".
std::string_view expand_macro(std::string_view macro) {
  static constexpr std::pair<std::string_view, std::string_view> kMacros[] = {
      {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
      {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
      {"@hourly", "0 * * * *"}};
  std::string lowered(macro);
  for (char& ch : lowered) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  for (const auto& [name, expansion] : kMacros)
    if (lowered == name) return expansion;
  throw input_error("cron: unknown macro '" + std::string(macro) +
                    "' (supported: @yearly @annually @monthly @weekly @daily @midnight "
                    "@hourly)");
}

bool is_utc_name(std::string_view tz) { return tz == "UTC" || tz == "Etc/UTC"; }

} // namespace

cron_schedule cron_schedule::parse(std::string_view expr, std::string_view tz) {
  cron_schedule s;
  s.expression_ = std::string(expr);
  s.zone_name_ = std::string(tz);

  std::vector<std::string_view> parts = split_fields(expr);
  if (parts.empty()) throw input_error("cron: empty expression");
  std::string_view quoted = expr; // the text error messages quote
  if (parts.size() == 1 && parts[0].front() == '@') {
    quoted = expand_macro(parts[0]);
    parts = split_fields(quoted);
  } else if (parts.size() != 5 && parts.size() != 6) {
    throw input_error("cron: expected 5 or 6 fields, got " + std::to_string(parts.size()) +
                      " in \"" + std::string(expr) + "\"");
  }
  s.has_seconds_ = parts.size() == 6;
  const std::size_t first = s.has_seconds_ ? 1 : 0; // index of the minute field

  fields& f = s.fields_;
  f.seconds = s.has_seconds_ ? field_parser(kSecondField, quoted).parse(parts[0]).mask : 1;
  f.minutes = field_parser(kMinuteField, quoted).parse(parts[first]).mask;
  f.hours = field_parser(kHourField, quoted).parse(parts[first + 1]).mask;
  const auto days = field_parser(kDayField, quoted).parse(parts[first + 2]);
  f.days = days.mask;
  f.last_day = days.last_day;
  f.months = field_parser(kMonthField, quoted).parse(parts[first + 3]).mask;
  f.weekdays = field_parser(kWeekdayField, quoted).parse(parts[first + 4]).mask;
  if (has_bit(f.weekdays, 7)) f.weekdays = (f.weekdays & ~(std::uint64_t{1} << 7)) | 1U;
  f.days_wildcard = parts[first + 2].front() == '*' || parts[first + 2].front() == '?';
  f.weekdays_wildcard = parts[first + 4].front() == '*' || parts[first + 4].front() == '?';

  if (tz.empty()) throw input_error("cron: empty time zone name for \"" + s.expression_ + "\"");
  if (!is_utc_name(tz)) s.zone_ = detail::zone_rules::load(s.zone_name_);
  return s;
}

// ---------------------------------------------------------------------------------------
// Next fire time
// ---------------------------------------------------------------------------------------

bool cron_schedule::day_matches(const detail::civil_time& c) const {
  const bool dom = has_bit(fields_.days, c.day) ||
                   (fields_.last_day && c.day == days_in_month(c.year, c.month));
  const bool dow = has_bit(fields_.weekdays, weekday_of(c));
  if (fields_.days_wildcard || fields_.weekdays_wildcard) return dom && dow;
  return dom || dow;
}

// Skips by field: a mismatching field jumps straight to its next allowed value (or rolls
// the next larger unit), so one call costs at most a few steps per month plus one per day
// in a matching month.
std::optional<detail::civil_time> cron_schedule::next_local_match(detail::civil_time c,
                                                                  int last_year) const {
  while (c.year <= last_year) {
    if (!has_bit(fields_.months, c.month)) {
      skip_to_month(c, fields_.months);
    } else if (!day_matches(c)) {
      advance_day(c);
    } else if (!has_bit(fields_.hours, c.hour)) {
      skip_to_hour(c, fields_.hours);
    } else if (!has_bit(fields_.minutes, c.minute)) {
      skip_to_minute(c, fields_.minutes);
    } else if (!has_bit(fields_.seconds, c.second)) {
      skip_to_second(c, fields_.seconds);
    } else {
      return c;
    }
  }
  return std::nullopt;
}

std::optional<sys_seconds> cron_schedule::next_after(sys_seconds after) const {
  const auto to_local = [this](sys_seconds t) {
    return zone_ ? zone_->to_local(t) : date::local_seconds{t.time_since_epoch()};
  };
  const auto resolve = [this](date::local_seconds l) {
    return zone_ ? zone_->resolve(l) : sys_seconds{l.time_since_epoch()};
  };

  civil_time from = to_civil(to_local(after) + 1s);
  const int last_year = from.year + kSearchYears;
  while (const auto found = next_local_match(from, last_year)) {
    const date::local_seconds local = to_local_seconds(*found);
    const sys_seconds when = resolve(local);
    // Not after `after` only when `after` lies in the second pass of a fall-back overlap
    // and `local` repeats: it already fired on its first pass.
    if (when > after) return when;
    from = to_civil(local + 1s);
  }
  return std::nullopt;
}

std::vector<sys_seconds> cron_schedule::next_n(sys_seconds after, std::size_t n) const {
  std::vector<sys_seconds> out;
  out.reserve(std::min<std::size_t>(n, 1024));
  while (out.size() < n) {
    const auto next = next_after(out.empty() ? after : out.back());
    if (!next) break;
    out.push_back(*next);
  }
  return out;
}

bool cron_schedule::has_seconds() const { return has_seconds_; }
const std::string& cron_schedule::expression() const { return expression_; }
const std::string& cron_schedule::zone_name() const { return zone_name_; }

// ---------------------------------------------------------------------------------------
// ISO-8601
// ---------------------------------------------------------------------------------------

std::string format_iso8601_utc(sys_seconds t) {
  const auto midnight = date::floor<date::days>(t);
  const date::year_month_day ymd{midnight};
  const auto since_midnight = (t - midnight).count(); // seconds
  char buf[40];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02dZ", int(ymd.year()),
                unsigned(ymd.month()), unsigned(ymd.day()), int(since_midnight / 3600),
                int(since_midnight / 60 % 60), int(since_midnight % 60));
  return buf;
}

namespace {

/// Reads a timestamp left to right; every method returns false without consuming on mismatch.
class iso_reader {
 public:
  explicit iso_reader(std::string_view text) : text_(text) {}

  bool number(std::size_t digits, int& out) {
    if (text_.size() - pos_ < digits) return false;
    int value = 0;
    for (std::size_t i = 0; i < digits; ++i) {
      const char ch = text_[pos_ + i];
      if (ch < '0' || ch > '9') return false;
      value = value * 10 + (ch - '0');
    }
    pos_ += digits;
    out = value;
    return true;
  }

  bool literal(char ch) {
    if (pos_ >= text_.size() || text_[pos_] != ch) return false;
    ++pos_;
    return true;
  }

  /// One or more digits, value ignored (fractions of a second are truncated).
  bool skip_digits() {
    const std::size_t start = pos_;
    while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') ++pos_;
    return pos_ > start;
  }

  bool at_end() const { return pos_ == text_.size(); }

 private:
  std::string_view text_;
  std::size_t pos_ = 0;
};

[[noreturn]] void fail_iso(std::string_view text, const std::string& what) {
  throw input_error("iso8601: " + what + " in \"" + std::string(text) + "\"");
}

[[noreturn]] void fail_iso_format(std::string_view text) {
  fail_iso(text, "expected YYYY-MM-DDTHH:MM:SS[.fff][Z|+hh:mm|-hh:mm]");
}

/// Reads an optional zone designator; returns the UTC offset in minutes (east positive).
int read_utc_offset(iso_reader& in, std::string_view text) {
  if (in.literal('Z') || in.literal('z') || in.at_end()) return 0;
  const bool east = in.literal('+');
  if (!east && !in.literal('-')) fail_iso_format(text);
  int hours = 0;
  int minutes = 0;
  if (!in.number(2, hours)) fail_iso_format(text);
  in.literal(':'); // "+hh:mm" and "+hhmm" are both ISO-8601
  if (!in.number(2, minutes)) fail_iso_format(text);
  if (hours > 23 || minutes > 59) fail_iso(text, "UTC offset out of range");
  return (east ? 1 : -1) * (hours * 60 + minutes);
}

} // namespace

sys_seconds parse_iso8601(std::string_view text) {
  iso_reader in{text};
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  const bool ok = in.number(4, year) && in.literal('-') && in.number(2, month) &&
                  in.literal('-') && in.number(2, day) &&
                  (in.literal('T') || in.literal('t') || in.literal(' ')) &&
                  in.number(2, hour) && in.literal(':') && in.number(2, minute) &&
                  in.literal(':') && in.number(2, second);
  if (!ok) fail_iso_format(text);
  if (in.literal('.') && !in.skip_digits()) fail_iso_format(text);
  const int offset_minutes = read_utc_offset(in, text);
  if (!in.at_end()) fail_iso_format(text);

  const date::year_month_day ymd{date::year{year}, date::month{unsigned(month)},
                                 date::day{unsigned(day)}};
  if (!ymd.ok()) fail_iso(text, "invalid calendar date");
  if (hour > 23 || minute > 59 || second > 59) fail_iso(text, "invalid time of day");
  return sys_seconds{date::sys_days{ymd}} + std::chrono::hours{hour} +
         std::chrono::minutes{minute - offset_minutes} + std::chrono::seconds{second};
}

} // namespace spiderhub::core
