#include "sbx/units.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>

namespace sbx {
namespace {

TEST(ParseSizeTest, AcceptsBinarySuffixes) {
  EXPECT_EQ(*ParseSize("100"), 100);
  EXPECT_EQ(*ParseSize("0"), 0);
  EXPECT_EQ(*ParseSize("100b"), 100);
  EXPECT_EQ(*ParseSize("512k"), 512 * 1024);
  EXPECT_EQ(*ParseSize("512K"), 512 * 1024);
  EXPECT_EQ(*ParseSize("64M"), int64_t{64} << 20);
  EXPECT_EQ(*ParseSize("64MiB"), int64_t{64} << 20);
  EXPECT_EQ(*ParseSize("64mb"), int64_t{64} << 20);
  EXPECT_EQ(*ParseSize("1G"), int64_t{1} << 30);
  EXPECT_EQ(*ParseSize("2T"), int64_t{2} << 40);
}

TEST(ParseSizeTest, AcceptsFractionsRoundingDown) {
  EXPECT_EQ(*ParseSize("1.5G"), (int64_t{3} << 30) / 2);
  EXPECT_EQ(*ParseSize("0.5k"), 512);
  EXPECT_EQ(*ParseSize("1.0001k"), 1024);  // 1024.1024 -> 1024
}

TEST(ParseSizeTest, RejectsJunkAndSigns) {
  for (const char* bad : {"", "-1", "+1", " 1", "1 ", "M", "12X", "1.5",
                          "1.G", ".5G", "1MM", "1kibb", "0x10", "1e3"}) {
    absl::StatusOr<int64_t> parsed = ParseSize(bad);
    EXPECT_FALSE(parsed.ok()) << "accepted \"" << bad << "\"";
    if (!parsed.ok()) {
      EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    }
  }
}

TEST(ParseSizeTest, RejectsOverflow) {
  EXPECT_EQ(*ParseSize("9223372036854775807"),
            std::numeric_limits<int64_t>::max());
  EXPECT_FALSE(ParseSize("9223372036854775808").ok());
  EXPECT_FALSE(ParseSize("99999999999999999999999").ok());
  EXPECT_FALSE(ParseSize("8E").ok());
  EXPECT_EQ(*ParseSize("7E"), int64_t{7} << 60);
  EXPECT_FALSE(ParseSize("8388608T").ok());  // 2^63
  EXPECT_FALSE(ParseSize("7.99999999999999999999E").ok() &&
               *ParseSize("7.99999999999999999999E") < 0);
}

TEST(ParseDurationTest, AcceptsUnits) {
  EXPECT_EQ(*ParseDuration("500ms"), absl::Milliseconds(500));
  EXPECT_EQ(*ParseDuration("2s"), absl::Seconds(2));
  EXPECT_EQ(*ParseDuration("1.5s"), absl::Milliseconds(1500));
  EXPECT_EQ(*ParseDuration("5m"), absl::Minutes(5));
  EXPECT_EQ(*ParseDuration("1h"), absl::Hours(1));
  EXPECT_EQ(*ParseDuration("1h30m"), absl::Minutes(90));
  EXPECT_EQ(*ParseDuration("0"), absl::ZeroDuration());
}

TEST(ParseDurationTest, RejectsNegativeInfiniteAndJunk) {
  for (const char* bad : {"", "-1s", "+1s", "10", "inf", "1x", "s", "1 s",
                          "abc"}) {
    absl::StatusOr<absl::Duration> parsed = ParseDuration(bad);
    EXPECT_FALSE(parsed.ok()) << "accepted \"" << bad << "\"";
    if (!parsed.ok()) {
      EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    }
  }
  EXPECT_NE(ParseDuration("10").status().message().find("missing unit"),
            absl::string_view::npos);
}

TEST(FormatSizeTest, PicksReadableUnit) {
  EXPECT_EQ(FormatSize(0), "0B");
  EXPECT_EQ(FormatSize(100), "100B");
  EXPECT_EQ(FormatSize(1023), "1023B");
  EXPECT_EQ(FormatSize(1024), "1K");
  EXPECT_EQ(FormatSize(65536), "64K");
  EXPECT_EQ(FormatSize(int64_t{256} << 20), "256M");
  EXPECT_EQ(FormatSize((int64_t{3} << 30) / 2), "1.5G");
  EXPECT_EQ(FormatSize((int64_t{1} << 20) - 1), "1.0M");
  EXPECT_EQ(FormatSize(std::numeric_limits<int64_t>::max()), "8.0E");
}

TEST(FormatSizeTest, RoundTripsThroughParseSize) {
  for (int64_t bytes : {int64_t{1} << 10, int64_t{64} << 20, int64_t{5} << 30,
                        int64_t{3} << 29}) {  // 3 << 29 is "1.5G"
    EXPECT_EQ(*ParseSize(FormatSize(bytes)), bytes) << FormatSize(bytes);
  }
}

TEST(FormatDurationShortTest, TruncatesToLargestUnit) {
  EXPECT_EQ(FormatDurationShort(absl::Milliseconds(850)), "850ms");
  EXPECT_EQ(FormatDurationShort(absl::Seconds(42)), "42s");
  EXPECT_EQ(FormatDurationShort(absl::Seconds(330)), "5m");
  EXPECT_EQ(FormatDurationShort(absl::Minutes(200)), "3h");
  EXPECT_EQ(FormatDurationShort(absl::Hours(50)), "2d");
  EXPECT_EQ(FormatDurationShort(absl::Seconds(-3)), "0s");
}

}  // namespace
}  // namespace sbx
