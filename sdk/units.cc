#include "sbx/units.h"

#include <cstdint>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace sbx {
namespace {

constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();
// More fraction digits than this cannot change the byte count of any
// int64 size, so they are dropped (truncation is the documented rounding).
constexpr int kMaxFractionDigits = 18;

absl::Status InvalidSize(absl::string_view text, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("invalid size \"", text, "\": ", why));
}

// Maps the suffix of a size ("", "b", "k", "kb", "ki", "kib", ...) to a
// power of two; -1 when it is not one.
int SuffixShift(absl::string_view suffix) {
  std::string s = absl::AsciiStrToLower(suffix);
  if (s.empty() || s == "b") return 0;
  static constexpr absl::string_view kUnits = "kmgtpe";
  size_t unit = kUnits.find(s[0]);
  if (unit == absl::string_view::npos) return -1;
  absl::string_view rest = absl::string_view(s).substr(1);
  if (!rest.empty() && rest[0] == 'i') rest.remove_prefix(1);
  if (!rest.empty() && rest[0] == 'b') rest.remove_prefix(1);
  if (!rest.empty()) return -1;
  return 10 * static_cast<int>(unit + 1);
}

}  // namespace

absl::StatusOr<int64_t> ParseSize(std::string_view user_text) {
  // This abseil's string_view is its own type, not std::string_view.
  const absl::string_view text(user_text.data(), user_text.size());
  if (text.empty()) return InvalidSize(text, "empty");
  size_t pos = 0;
  uint64_t whole = 0;
  while (pos < text.size() && absl::ascii_isdigit(text[pos])) {
    whole = whole * 10 + static_cast<uint64_t>(text[pos] - '0');
    if (whole > static_cast<uint64_t>(kInt64Max)) {
      return InvalidSize(text, "too large");
    }
    ++pos;
  }
  if (pos == 0) {
    return InvalidSize(text, "expected a non-negative number such as 64M");
  }
  uint64_t fraction = 0;
  uint64_t fraction_scale = 1;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    size_t digits = 0;
    while (pos < text.size() && absl::ascii_isdigit(text[pos])) {
      if (digits < kMaxFractionDigits) {
        fraction = fraction * 10 + static_cast<uint64_t>(text[pos] - '0');
        fraction_scale *= 10;
      }
      ++digits;
      ++pos;
    }
    if (digits == 0) return InvalidSize(text, "expected digits after '.'");
  }
  const int shift = SuffixShift(text.substr(pos));
  if (shift < 0) {
    return InvalidSize(text, absl::StrCat("unknown unit \"", text.substr(pos),
                                          "\" (use B, K, M, G, T)"));
  }
  if (fraction_scale > 1 && shift == 0) {
    return InvalidSize(text, "a byte count must be a whole number");
  }
  if (shift > 0 && whole > (static_cast<uint64_t>(kInt64Max) >> shift)) {
    return InvalidSize(text, "too large");
  }
  const unsigned __int128 fraction_bytes =
      (static_cast<unsigned __int128>(fraction) << shift) / fraction_scale;
  const unsigned __int128 total =
      (static_cast<unsigned __int128>(whole) << shift) + fraction_bytes;
  if (total > static_cast<unsigned __int128>(kInt64Max)) {
    return InvalidSize(text, "too large");
  }
  return static_cast<int64_t>(total);
}

absl::StatusOr<absl::Duration> ParseDuration(std::string_view user_text) {
  const absl::string_view text(user_text.data(), user_text.size());
  auto invalid = [text](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid duration \"", text, "\": ", why));
  };
  if (text.empty()) return invalid("empty");
  if (text[0] == '-') return invalid("must not be negative");
  if (text[0] == '+') return invalid("expected a number such as 500ms or 2s");
  absl::Duration d;
  if (!absl::ParseDuration(text, &d)) {
    int64_t bare;
    if (absl::SimpleAtoi(text, &bare)) {
      return invalid("missing unit (ns, us, ms, s, m, h), e.g. 10s");
    }
    return invalid("expected a number with a unit such as 500ms, 2s, 5m, 1h");
  }
  if (d == absl::InfiniteDuration()) return invalid("must be finite");
  return d;
}

std::string FormatSize(int64_t bytes) {
  if (bytes < 1024) return absl::StrCat(bytes, "B");
  static constexpr char kUnits[] = "KMGTPE";
  int unit = 0;
  while (unit + 1 < 6 && bytes >= (int64_t{1} << (10 * (unit + 2)))) ++unit;
  const int shift = 10 * (unit + 1);
  if (bytes % (int64_t{1} << shift) == 0) {
    return absl::StrCat(bytes >> shift, std::string(1, kUnits[unit]));
  }
  double value =
      static_cast<double>(bytes) / static_cast<double>(int64_t{1} << shift);
  // 1023.96K would print as "1024.0K"; say "1.0M" instead.
  if (value >= 1023.95 && unit + 1 < 6) {
    ++unit;
    value /= 1024;
  }
  return absl::StrFormat("%.1f%c", value, kUnits[unit]);
}

std::string FormatDurationShort(absl::Duration d) {
  if (d < absl::ZeroDuration()) return "0s";
  if (d < absl::Seconds(1)) {
    return absl::StrCat(absl::ToInt64Milliseconds(d), "ms");
  }
  if (d < absl::Minutes(1)) return absl::StrCat(absl::ToInt64Seconds(d), "s");
  if (d < absl::Hours(1)) return absl::StrCat(absl::ToInt64Minutes(d), "m");
  if (d < absl::Hours(24)) return absl::StrCat(absl::ToInt64Hours(d), "h");
  return absl::StrCat(absl::ToInt64Hours(d) / 24, "d");
}

}  // namespace sbx
