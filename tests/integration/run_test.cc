// The judge's Run: one ephemeral sandbox per call, files written, compiled
// once, every case run with its own limits and fresh figures, verdicts from
// real programs, comparison modes, a checker, COMPILE_ERROR, and the sandbox
// gone afterwards whatever happened. Also `sbx run` and the example grader.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "daemon.h"
#include "proc_util.h"

namespace sbx::it {
namespace {

using std::chrono::seconds;

constexpr int64_t kMiB = 1 << 20;

// One C program whose behaviour the case's first word picks.
constexpr char kProgram[] = R"(#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(void) {
  char mode[32] = {0};
  if (scanf("%31s", mode) != 1) return 4;
  if (!strcmp(mode, "sum")) {
    long a, b;
    if (scanf("%ld %ld", &a, &b) != 2) return 5;
    printf("%ld\n", a + b);
  } else if (!strcmp(mode, "spaces")) {
    printf("3   \n\n\n");
  } else if (!strcmp(mode, "spin")) {
    for (volatile unsigned long i = 0;; ++i) {}
  } else if (!strcmp(mode, "sleep")) {
    sleep(30);
  } else if (!strcmp(mode, "touch100")) {
    size_t n = 100u << 20;
    char* p = malloc(n);
    for (size_t i = 0; i < n; i += 4096) p[i] = 1;
    printf("%d\n", p[n - 4096]);
  } else if (!strcmp(mode, "hog")) {
    for (;;) {
      char* p = malloc(16u << 20);
      if (!p) return 6;
      for (size_t i = 0; i < (16u << 20); i += 4096) p[i] = 1;
    }
  } else if (!strcmp(mode, "segv")) {
    *(volatile int*)0 = 1;
  } else if (!strcmp(mode, "fail")) {
    return 3;
  } else if (!strcmp(mode, "flood")) {
    for (;;) fputs("yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\n", stdout);
  }
  return 0;
}
)";

int64_t Micros(const google::protobuf::Duration& d) {
  return d.seconds() * 1000000 + d.nanos() / 1000;
}

void SetMillis(google::protobuf::Duration* d, int64_t ms) {
  d->set_seconds(ms / 1000);
  d->set_nanos(static_cast<int32_t>(ms % 1000) * 1000000);
}

bool HostHas(const char* binary) {
  for (const char* dir : {"/usr/bin/", "/bin/", "/usr/local/bin/"}) {
    if (::access((std::string(dir) + binary).c_str(), X_OK) == 0) return true;
  }
  return false;
}

class RunTest : public DaemonTest {
 protected:
  static void SetUpTestSuite() { StartDaemon(); }
  static void TearDownTestSuite() { StopDaemon(); }

  // Runs `request` (deadline 120 s) and checks that its sandbox is gone.
  static grpc::Status Run(const v1::RunRequest& request, v1::RunResponse* response) {
    grpc::ClientContext ctx;
    SetDeadline(ctx, seconds(120));
    grpc::Status s = stub().Run(&ctx, request, response);
    EXPECT_TRUE(ListIds(stub()).empty()) << "a Run left a sandbox behind";
    // Its cgroups go right after its sandbox's Destroy returns.
    EXPECT_TRUE(WaitFor([] { return daemon().CgroupChildren().empty(); }, seconds(5)))
        << "a Run left a cgroup behind";
    return s;
  }

  // The C program above, compiled with gcc.
  static v1::RunRequest ProgramRequest() {
    v1::RunRequest request;
    v1::File* file = request.add_files();
    file->set_path("prog.c");
    file->set_content(kProgram);
    for (const char* arg : {"gcc", "-O1", "-o", "prog", "prog.c"}) request.add_compile_argv(arg);
    request.add_run_argv("./prog");
    return request;
  }

  static v1::TestCase* AddCase(v1::RunRequest& request, const std::string& input,
                               std::optional<std::string> expected = std::nullopt) {
    v1::TestCase* test = request.add_cases();
    test->set_stdin(input);
    if (expected) test->set_expected_stdout(*expected);
    return test;
  }

  void SetUp() override {
    DaemonTest::SetUp();
    if (!HostHas("gcc")) GTEST_SKIP() << "gcc is not installed on this host";
  }
};

std::string Describe(const v1::CaseResult& r) {
  v1::CaseResult copy = r;
  if (copy.stdout().size() > 200) copy.set_stdout(copy.stdout().substr(0, 200) + "...");
  if (copy.stderr().size() > 400) copy.set_stderr(copy.stderr().substr(0, 400) + "...");
  return copy.ShortDebugString();
}

TEST_F(RunTest, CompilesOnceAndRunsEveryCaseInOrderInOneSandbox) {
  v1::RunRequest request;
  request.add_files()->set_path("prog.c");
  request.mutable_files(0)->set_content(kProgram);
  for (const char* arg : {"sh", "-c", "echo c >> log && gcc -O1 -o prog prog.c"}) {
    request.add_compile_argv(arg);
  }
  for (const char* arg : {"sh", "-c", "echo r >> log; cat log >&2; exec ./prog"}) {
    request.add_run_argv(arg);
  }
  AddCase(request, "sum 1 2", "3\n");
  AddCase(request, "sum 20 22", "42\n");
  AddCase(request, "sum 2 2", "5\n");
  v1::RunResponse response;
  grpc::Status s = Run(request, &response);
  ASSERT_TRUE(s.ok()) << StatusText(s);
  EXPECT_FALSE(response.sandbox_id().empty());
  EXPECT_EQ(response.compile().verdict(), v1::VERDICT_OK) << Describe(response.compile());
  ASSERT_EQ(response.cases_size(), 3);
  EXPECT_EQ(response.cases(0).verdict(), v1::VERDICT_OK) << Describe(response.cases(0));
  EXPECT_EQ(response.cases(0).stdout(), "3\n");
  EXPECT_EQ(response.cases(0).stderr(), "c\nr\n");
  EXPECT_EQ(response.cases(1).verdict(), v1::VERDICT_OK) << Describe(response.cases(1));
  EXPECT_EQ(response.cases(1).stderr(), "c\nr\nr\n");
  EXPECT_EQ(response.cases(2).verdict(), v1::VERDICT_WRONG_ANSWER) << Describe(response.cases(2));
  EXPECT_EQ(response.cases(2).stdout(), "4\n");
  EXPECT_EQ(response.verdict(), v1::VERDICT_WRONG_ANSWER);
}

// A step that runs a while has the next step's spare process made during
// it: the case after a 300 ms case runs in a process forked long before it
// started (its start time, from /proc, is that much older), not in one
// forked for it then. (The first case may find the spare made with the
// sandbox, unused by the compile; the second finds only what was made
// since.)
TEST_F(RunTest, TheCaseAfterALongOneRunsInASpareMadeDuringIt) {
  v1::RunRequest request;
  request.add_compile_argv("true");
  // Sleeps as long as its input says, then prints its age in clock ticks
  // (1/100 s): uptime less its start time (field 22 of /proc/<pid>/stat;
  // the name in field 2 is "sh").
  const char* sleep_then_age =
      "read -r wait; sleep \"$wait\"; up=$(cut -d' ' -f1 /proc/uptime); up=${up%.*}${up#*.}; "
      "echo $((up - $(cut -d' ' -f22 /proc/$$/stat)))";
  for (const char* arg : {"sh", "-c", sleep_then_age}) request.add_run_argv(arg);
  AddCase(request, "0.3\n");
  AddCase(request, "0\n");
  v1::RunResponse response;
  grpc::Status s = Run(request, &response);
  ASSERT_TRUE(s.ok()) << StatusText(s);
  ASSERT_EQ(response.cases_size(), 2);
  for (const v1::CaseResult& c : response.cases()) {
    ASSERT_EQ(c.verdict(), v1::VERDICT_OK) << Describe(c);
  }
  // Made 20 ms into the first case, the spare is about 280 ms old; a
  // process forked for the case would be a tick or two.
  EXPECT_GE(std::stoi(response.cases(1).stdout()), 15) << Describe(response.cases(1));
}

TEST_F(RunTest, EachVerdictFromARealProgram) {
  v1::RunRequest request = ProgramRequest();
  struct Want {
    const char* input;
    v1::Verdict verdict;
  };
  const std::vector<Want> wants = {
      {"sum 1 2", v1::VERDICT_OK},           {"spin", v1::VERDICT_TIME_LIMIT},
      {"sleep", v1::VERDICT_WALL_TIME_LIMIT}, {"hog", v1::VERDICT_MEMORY_LIMIT},
      {"segv", v1::VERDICT_SIGNALED},        {"fail", v1::VERDICT_RUNTIME_ERROR},
      {"flood", v1::VERDICT_OUTPUT_LIMIT},   {"sum 1 1", v1::VERDICT_WRONG_ANSWER},
  };
  for (const Want& want : wants) {
    v1::TestCase* test = AddCase(request, want.input, want.verdict == v1::VERDICT_WRONG_ANSWER
                                                          ? std::optional<std::string>("3\n")
                                                          : std::nullopt);
    SetMillis(test->mutable_limits()->mutable_cpu_time(), 300);
    SetMillis(test->mutable_limits()->mutable_wall_time(), 1500);
    test->mutable_limits()->set_memory_bytes(64 * kMiB);
    test->mutable_limits()->set_output_bytes(64 << 10);
  }
  v1::RunResponse response;
  grpc::Status s = Run(request, &response);
  ASSERT_TRUE(s.ok()) << StatusText(s);
  ASSERT_EQ(response.cases_size(), static_cast<int>(wants.size()));
  for (size_t i = 0; i < wants.size(); ++i) {
    const v1::CaseResult& r = response.cases(static_cast<int>(i));
    EXPECT_EQ(r.verdict(), wants[i].verdict)
        << wants[i].input << ": " << v1::Verdict_Name(r.verdict()) << " " << Describe(r);
  }
  const v1::ExecExit& spin = response.cases(1).exit();
  EXPECT_GE(Micros(spin.cpu_time()), 300000);
  EXPECT_LT(Micros(spin.cpu_time()), 450000) << "killed late: " << spin.ShortDebugString();
  EXPECT_TRUE(response.cases(2).exit().timed_out());
  EXPECT_LT(Micros(response.cases(2).exit().cpu_time()), 100000);
  EXPECT_EQ(response.cases(4).exit().signal(), 11);
  EXPECT_EQ(response.cases(5).exit().exit_code(), 3);
  EXPECT_TRUE(response.cases(6).exit().output_truncated());
  EXPECT_EQ(response.cases(6).stdout().size(), size_t{64 << 10});
  // The first case that is not OK decides.
  EXPECT_EQ(response.verdict(), v1::VERDICT_TIME_LIMIT);
}

TEST_F(RunTest, FiguresOfOneCaseDoNotIncludeThePreviousOne) {
  v1::RunRequest request = ProgramRequest();
  v1::TestCase* spin = AddCase(request, "spin");
  SetMillis(spin->mutable_limits()->mutable_cpu_time(), 400);
  AddCase(request, "touch100");
  AddCase(request, "sum 1 2", "3\n");
  v1::RunResponse response;
  grpc::Status s = Run(request, &response);
  ASSERT_TRUE(s.ok()) << StatusText(s);
  ASSERT_EQ(response.cases_size(), 3);
  EXPECT_EQ(response.cases(0).verdict(), v1::VERDICT_TIME_LIMIT);
  const v1::ExecExit& touch = response.cases(1).exit();
  EXPECT_EQ(response.cases(1).verdict(), v1::VERDICT_OK) << Describe(response.cases(1));
  EXPECT_LT(Micros(touch.cpu_time()), 300000) << "includes the spin: " << touch.ShortDebugString();
  EXPECT_GE(touch.memory_peak_bytes(), 90 * kMiB) << touch.ShortDebugString();
  EXPECT_LE(touch.memory_peak_bytes(), 115 * kMiB) << touch.ShortDebugString();
  const v1::ExecExit& sum = response.cases(2).exit();
  EXPECT_EQ(response.cases(2).verdict(), v1::VERDICT_OK) << Describe(response.cases(2));
  EXPECT_LT(sum.memory_peak_bytes(), 30 * kMiB) << "includes the 100 MiB: " << sum.ShortDebugString();
  EXPECT_LT(Micros(sum.cpu_time()), 100000) << sum.ShortDebugString();
}

TEST_F(RunTest, ExactAndIgnoreTrailingWhitespace) {
  for (v1::CompareMode mode : {v1::COMPARE_MODE_UNSPECIFIED, v1::COMPARE_MODE_EXACT,
                               v1::COMPARE_MODE_IGNORE_TRAILING_WHITESPACE}) {
    v1::RunRequest request = ProgramRequest();
    request.set_compare(mode);
    AddCase(request, "spaces", "3\n");
    AddCase(request, "spaces", "3   \n\n\n");
    AddCase(request, "spaces", "3\n4\n");
    v1::RunResponse response;
    grpc::Status s = Run(request, &response);
    ASSERT_TRUE(s.ok()) << StatusText(s);
    ASSERT_EQ(response.cases_size(), 3);
    const bool ignore = mode == v1::COMPARE_MODE_IGNORE_TRAILING_WHITESPACE;
    EXPECT_EQ(response.cases(0).verdict(), ignore ? v1::VERDICT_OK : v1::VERDICT_WRONG_ANSWER)
        << v1::CompareMode_Name(mode);
    EXPECT_EQ(response.cases(1).verdict(), v1::VERDICT_OK) << v1::CompareMode_Name(mode);
    EXPECT_EQ(response.cases(2).verdict(), v1::VERDICT_WRONG_ANSWER) << v1::CompareMode_Name(mode);
  }
}

TEST_F(RunTest, CheckerDecidesWithInputExpectedAndActual) {
  v1::RunRequest request;
  // Right except when a is 5.
  for (const char* arg :
       {"sh", "-c", "read a b; if [ \"$a\" = 5 ]; then echo 0; else echo $((a + b)); fi"}) {
    request.add_run_argv(arg);
  }
  // Accepts the sum of the input, whatever `expected` says; checks the
  // environment names the same files.
  for (const char* arg : {"sh", "-c",
                          "[ \"$SBX_INPUT $SBX_EXPECTED $SBX_ACTUAL\" = \"$1 $2 $3\" ] || exit 9; "
                          "read a b < \"$1\"; read r < \"$3\"; echo \"want $((a + b)) got $r\"; "
                          "[ \"$((a + b))\" = \"$r\" ]",
                          "checker"}) {
    request.add_checker_argv(arg);
  }
  AddCase(request, "1 2\n", "not used\n");
  AddCase(request, "5 1\n");
  AddCase(request, "40 2\n");
  v1::RunResponse response;
  grpc::Status s = Run(request, &response);
  ASSERT_TRUE(s.ok()) << StatusText(s);
  ASSERT_EQ(response.cases_size(), 3);
  EXPECT_EQ(response.cases(0).verdict(), v1::VERDICT_OK) << Describe(response.cases(0));
  EXPECT_EQ(response.cases(0).checker_output(), "want 3 got 3\n");
  EXPECT_EQ(response.cases(1).verdict(), v1::VERDICT_WRONG_ANSWER) << Describe(response.cases(1));
  EXPECT_EQ(response.cases(1).checker_output(), "want 6 got 0\n");
  EXPECT_EQ(response.cases(2).verdict(), v1::VERDICT_OK) << Describe(response.cases(2));
  EXPECT_EQ(response.verdict(), v1::VERDICT_WRONG_ANSWER);
}

TEST_F(RunTest, CompileErrorRunsNoCase) {
  v1::RunRequest request = ProgramRequest();
  request.mutable_files(0)->set_content("int main(void) { return syntax error; }\n");
  AddCase(request, "sum 1 2", "3\n");
  v1::RunResponse response;
  grpc::Status s = Run(request, &response);
  ASSERT_TRUE(s.ok()) << StatusText(s);
  EXPECT_EQ(response.verdict(), v1::VERDICT_COMPILE_ERROR);
  EXPECT_EQ(response.compile().verdict(), v1::VERDICT_COMPILE_ERROR);
  EXPECT_EQ(response.compile().exit().verdict(), v1::VERDICT_RUNTIME_ERROR);
  EXPECT_NE(response.compile().stderr().find("error"), std::string::npos)
      << Describe(response.compile());
  EXPECT_EQ(response.cases_size(), 0);
}

TEST_F(RunTest, AMissingCompilerOrProgramIsAVerdictNotAnError) {
  v1::RunRequest request;
  request.add_compile_argv("no-such-compiler-xyz");
  request.add_run_argv("true");
  AddCase(request, "");
  v1::RunResponse response;
  grpc::Status s = Run(request, &response);
  ASSERT_TRUE(s.ok()) << StatusText(s);
  EXPECT_EQ(response.verdict(), v1::VERDICT_COMPILE_ERROR);
  EXPECT_NE(response.compile().stderr().find("no-such-compiler-xyz"), std::string::npos);

  v1::RunRequest missing;
  missing.add_run_argv("./not-built");
  AddCase(missing, "");
  s = Run(missing, &response);
  ASSERT_TRUE(s.ok()) << StatusText(s);
  ASSERT_EQ(response.cases_size(), 1);
  EXPECT_EQ(response.verdict(), v1::VERDICT_RUNTIME_ERROR);
  EXPECT_EQ(response.cases(0).exit().exit_code(), 127);
}

// A case that writes past its output limit and ends at once: sbxd's SIGKILL
// crosses the init's exit report (see ExecLimitsTest's twin). Every case
// still gets its verdict, not an error for the whole run.
TEST_F(RunTest, OutputLimitOfACaseThatEndsAtOnceIsItsVerdict) {
  v1::RunRequest request;
  for (const char* arg : {"head", "-c", "100000", "/dev/zero"}) request.add_run_argv(arg);
  for (int i = 0; i < 30; ++i) AddCase(request, "")->mutable_limits()->set_output_bytes(1000);
  v1::RunResponse response;
  grpc::Status s = Run(request, &response);
  ASSERT_TRUE(s.ok()) << StatusText(s);
  ASSERT_EQ(response.cases_size(), 30);
  for (int i = 0; i < response.cases_size(); ++i) {
    const v1::CaseResult& r = response.cases(i);
    EXPECT_EQ(r.verdict(), v1::VERDICT_OUTPUT_LIMIT) << "case " << i << ": " << Describe(r);
    EXPECT_EQ(r.stdout().size(), 1000u) << "case " << i;
  }
}

// A Run answers once every process of its sandbox is gone, the background
// ones a case left too; sbxd's removal of its cgroups, files and mounts
// comes right after.
TEST_F(RunTest, WhatACaseLeftRunningIsGoneByTheAnswer) {
  v1::RunRequest request;
  for (const char* arg : {"sh", "-c",
                          "sleep 4242 >/dev/null 2>&1 & sleep 4242 >/dev/null 2>&1 & "
                          "echo left"}) {
    request.add_run_argv(arg);
  }
  request.add_cases();
  v1::RunResponse response;
  grpc::Status s = Run(request, &response);  // no sandbox listed, no cgroup left
  ASSERT_TRUE(s.ok()) << StatusText(s);
  ASSERT_EQ(response.cases_size(), 1);
  EXPECT_EQ(response.cases(0).stdout(), "left\n") << Describe(response.cases(0));
  const std::string id = response.sandbox_id();
  ASSERT_FALSE(id.empty());
  auto sleepers = [] {
    std::vector<pid_t> found;
    for (pid_t p : AllPids()) {
      std::optional<std::string> cmdline = ReadFile("/proc/" + std::to_string(p) + "/cmdline");
      if (cmdline && *cmdline == std::string("sleep\0" "4242\0", 11)) found.push_back(p);
    }
    return found;
  };
  // Gone already: nothing of a submission runs once its result is out.
  EXPECT_EQ(sleepers().size(), 0u) << "background processes of the run outlived its answer";
  EXPECT_TRUE(WaitFor(
      [&] {
        return !PathExists(daemon().state_dir() + "/sandboxes/" + id) &&
               MountinfoLinesContaining(id).empty();
      },
      seconds(5)))
      << "the run's sandbox " << id << " left files or mounts";
}

TEST_F(RunTest, BadRequestsCreateNothing) {
  v1::RunResponse response;
  v1::RunRequest no_argv;
  AddCase(no_argv, "");
  grpc::Status s = Run(no_argv, &response);
  EXPECT_EQ(s.error_code(), grpc::INVALID_ARGUMENT) << StatusText(s);

  v1::RunRequest bad_limit = ProgramRequest();
  AddCase(bad_limit, "")->mutable_limits()->set_memory_bytes(-5);
  s = Run(bad_limit, &response);
  EXPECT_EQ(s.error_code(), grpc::INVALID_ARGUMENT) << StatusText(s);

  v1::RunRequest bad_duration = ProgramRequest();
  AddCase(bad_duration, "")->mutable_limits()->mutable_cpu_time()->set_nanos(-1);
  bad_duration.mutable_cases(0)->mutable_limits()->mutable_cpu_time()->set_seconds(1);
  s = Run(bad_duration, &response);
  EXPECT_EQ(s.error_code(), grpc::INVALID_ARGUMENT) << StatusText(s);

  v1::RunRequest bad_path = ProgramRequest();
  bad_path.mutable_files(0)->set_path(std::string("a\0b", 3));
  s = Run(bad_path, &response);
  EXPECT_EQ(s.error_code(), grpc::INVALID_ARGUMENT) << StatusText(s);
}

TEST_F(RunTest, OutputIsCappedButComparedInFull) {
  v1::RunRequest request;
  for (const char* arg : {"sh", "-c", "head -c 100000 /dev/zero | tr '\\0' a; echo"}) {
    request.add_run_argv(arg);
  }
  request.set_output_cap_bytes(1000);
  AddCase(request, "", std::string(100000, 'a') + "\n");
  AddCase(request, "", std::string(100000, 'a') + "b\n");
  v1::RunResponse response;
  grpc::Status s = Run(request, &response);
  ASSERT_TRUE(s.ok()) << StatusText(s);
  ASSERT_EQ(response.cases_size(), 2);
  EXPECT_EQ(response.cases(0).verdict(), v1::VERDICT_OK) << Describe(response.cases(0));
  EXPECT_EQ(response.cases(0).stdout(), std::string(1000, 'a'));
  EXPECT_TRUE(response.cases(0).stdout_capped());
  EXPECT_EQ(response.cases(1).verdict(), v1::VERDICT_WRONG_ANSWER);
}

TEST_F(RunTest, CppAndPythonWorkOutOfTheBox) {
  if (!HostHas("g++")) GTEST_SKIP() << "g++ is not installed on this host";
  v1::RunRequest cpp;
  cpp.add_files()->set_path("sum.cc");
  cpp.mutable_files(0)->set_content(
      "#include <iostream>\nint main() { long a, b; std::cin >> a >> b; std::cout << a + b "
      "<< std::endl; }\n");
  for (const char* arg : {"g++", "-O2", "-o", "sum", "sum.cc"}) cpp.add_compile_argv(arg);
  cpp.add_run_argv("./sum");
  AddCase(cpp, "1 2\n", "3\n");
  v1::RunResponse response;
  grpc::Status s = Run(cpp, &response);
  ASSERT_TRUE(s.ok()) << StatusText(s);
  EXPECT_EQ(response.verdict(), v1::VERDICT_OK)
      << Describe(response.compile()) << " / "
      << (response.cases_size() > 0 ? Describe(response.cases(0)) : "");

  if (!HostHas("python3")) GTEST_SKIP() << "python3 is not installed on this host";
  v1::RunRequest py;
  py.add_files()->set_path("sum.py");
  py.mutable_files(0)->set_content("a, b = map(int, input().split())\nprint(a + b)\n");
  py.add_run_argv("python3");
  py.add_run_argv("sum.py");
  AddCase(py, "1 2\n", "3\n");
  s = Run(py, &response);
  ASSERT_TRUE(s.ok()) << StatusText(s);
  EXPECT_EQ(response.verdict(), v1::VERDICT_OK)
      << (response.cases_size() > 0 ? Describe(response.cases(0)) : "");
}

// ---- sbx run -------------------------------------------------------------------

class SbxRunTest : public DaemonTest {
 protected:
  static void SetUpTestSuite() { StartDaemon(); }
  static void TearDownTestSuite() { StopDaemon(); }
  void SetUp() override {
    DaemonTest::SetUp();
    ASSERT_STRNE(SBX_CLI_PATH, "") << "the `sbx` CLI target does not exist in this build";
    ASSERT_EQ(::access(SBX_CLI_PATH, X_OK), 0) << "sbx CLI not built at " << SBX_CLI_PATH;
  }
  static ProcessResult SbxRun(const std::vector<std::string>& args,
                              const std::string& stdin_data = "") {
    std::vector<std::string> argv = {SBX_CLI_PATH, "--server", daemon().address(), "run"};
    argv.insert(argv.end(), args.begin(), args.end());
    ProcessResult r = RunProcess(argv, stdin_data, seconds(60));
    EXPECT_TRUE(ListIds(stub()).empty()) << "sbx run left a sandbox behind";
    return r;
  }
};

TEST_F(SbxRunTest, PassesStdioAndTheExitCodeThrough) {
  ProcessResult r = SbxRun({"--", "sh", "-c", "read a b; echo $((a + b)); echo oops >&2; exit 3"},
                           "1 2\n");
  EXPECT_EQ(r.exit_code, 3) << r.Describe();
  EXPECT_EQ(r.out, "3\n");
  EXPECT_EQ(r.err, "oops\n");

  r = SbxRun({"--", "sh", "-c", "kill -SEGV $$"});
  EXPECT_EQ(r.exit_code, 128 + 11) << r.Describe();
}

TEST_F(SbxRunTest, JsonReportsTheVerdictAndUsage) {
  ProcessResult r = SbxRun({"--time", "200ms", "--json", "--", "sh", "-c", "while :; do :; done"});
  EXPECT_EQ(r.exit_code, 128 + 9) << r.Describe();
  nlohmann::json j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  EXPECT_EQ(j["verdict"], "TIME_LIMIT") << r.out;
  EXPECT_EQ(j["signal"], 9) << r.out;
  EXPECT_GE(j["cpu_time"].get<double>(), 0.2) << r.out;
  EXPECT_LT(j["cpu_time"].get<double>(), 0.35) << r.out;
  EXPECT_TRUE(j.contains("wall_time"));
  EXPECT_TRUE(j.contains("memory_peak_bytes"));

  r = SbxRun({"--wall", "300ms", "--json", "--", "sleep", "10"});
  j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.Describe();
  EXPECT_EQ(j["verdict"], "WALL_TIME_LIMIT") << r.out;

  r = SbxRun({"--output-limit", "1K", "--json", "--", "yes"});
  j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.Describe();
  EXPECT_EQ(j["verdict"], "OUTPUT_LIMIT") << r.out;
  EXPECT_EQ(j["stdout"].get<std::string>().size(), 1024u);

  r = SbxRun({"--json", "--", "true"});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.Describe();
  EXPECT_EQ(j["verdict"], "OK") << r.out;
}

TEST_F(SbxRunTest, BadFlagsAreUsageErrors) {
  ProcessResult r = SbxRun({"--time", "forever", "--", "true"});
  EXPECT_EQ(r.exit_code, 2) << r.Describe();
  r = SbxRun({"--memory", "0", "--", "true"});
  EXPECT_EQ(r.exit_code, 2) << r.Describe();
}

// ---- the example grader ----------------------------------------------------------

TEST_F(SbxRunTest, ExampleGraderGivesEveryExpectedVerdict) {
  ASSERT_STRNE(SBX_GRADER_PATH, "") << "the example grader is not part of this build";
  ASSERT_EQ(::access(SBX_GRADER_PATH, X_OK), 0) << "grader not built at " << SBX_GRADER_PATH;
  if (!HostHas("gcc") || !HostHas("g++") || !HostHas("python3")) {
    GTEST_SKIP() << "the grader needs gcc, g++ and python3 on the host";
  }
  ProcessResult r =
      RunProcess({SBX_GRADER_PATH, "--server", daemon().address()}, "", seconds(170));
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_NE(r.out.find("TIME_LIMIT"), std::string::npos) << r.out;
  std::cout << r.out;
}

}  // namespace
}  // namespace sbx::it
