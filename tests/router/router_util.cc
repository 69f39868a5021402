#include "router_util.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <optional>

#include "daemon.h"
#include "proc_util.h"

namespace sbx::it {

using std::chrono::seconds;

::testing::AssertionResult Router::Start(const std::vector<std::string>& render_args) {
  if (pid_ > 0) return ::testing::AssertionFailure() << "the router is running already";
  if (std::string(SBX_NGINX_PATH).find("NOTFOUND") != std::string::npos) {
    return ::testing::AssertionFailure() << "nginx is not installed (scripts/deps/deploy.list)";
  }
  char tmpl[] = "/tmp/sbx-router-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return ::testing::AssertionFailure() << "mkdtemp failed";
  dir_ = tmpl;
  port_ = FreeTcpPort();
  std::vector<std::string> render = {"/bin/bash", SBX_RENDER_PATH, "--listen",
                                     address(),   "--runtime-dir", dir_};
  render.insert(render.end(), render_args.begin(), render_args.end());
  ProcessResult rendered = RunProcess(render, "", seconds(30));
  if (rendered.exit_code != 0) {
    return ::testing::AssertionFailure() << "render.sh failed: " << rendered.Describe();
  }
  const std::string conf = dir_ + "/nginx.conf";
  std::ofstream(conf) << rendered.out;
  const std::string log = dir_ + "/nginx.log";
  const int log_fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (log_fd < 0) return ::testing::AssertionFailure() << "cannot open " << log;
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(log_fd, 1);
    dup2(log_fd, 2);
    execl(SBX_NGINX_PATH, "nginx", "-e", "stderr", "-p", dir_.c_str(), "-c", conf.c_str(), "-g",
          "daemon off;", static_cast<char*>(nullptr));
    _exit(127);
  }
  close(log_fd);
  if (pid < 0) return ::testing::AssertionFailure() << "fork failed";
  pid_ = pid;
  bool exited = false;
  const bool up = WaitFor(
      [&] {
        exited = waitpid(pid_, nullptr, WNOHANG) == pid_;
        return exited || CanConnectTcp(port_);
      },
      seconds(10));
  if (exited) pid_ = -1;
  if (!up || exited) return ::testing::AssertionFailure() << "nginx did not start: " << Log();
  return ::testing::AssertionSuccess();
}

void Router::Stop() {
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  if (!dir_.empty()) RemoveTree(dir_);
  dir_.clear();
}

std::string Router::Log() const {
  std::optional<std::string> text = ReadFile(dir_ + "/nginx.log");
  return text ? *text : "";
}

::testing::AssertionResult Pki::OpenSsl(const std::vector<std::string>& args) const {
  if (std::string(SBX_OPENSSL_PATH).find("NOTFOUND") != std::string::npos) {
    return ::testing::AssertionFailure()
           << "openssl is not installed (scripts/deps/tls-tests.list)";
  }
  std::vector<std::string> argv = {SBX_OPENSSL_PATH};
  argv.insert(argv.end(), args.begin(), args.end());
  ProcessResult r = RunProcess(argv, "", seconds(60));
  if (r.exit_code != 0) return ::testing::AssertionFailure() << "openssl: " << r.Describe();
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult Pki::MakeCa(const std::string& name) {
  return OpenSsl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                  "-nodes", "-keyout", Key(name), "-out", Crt(name), "-days", "2", "-subj",
                  "/CN=" + name});
}

::testing::AssertionResult Pki::MakeCert(const std::string& name, const std::string& ca,
                                         const std::string& cn, const std::string& san) {
  const std::string csr = dir_ + "/" + name + ".csr";
  const std::string ext = dir_ + "/" + name + ".ext";
  std::ofstream(ext) << "subjectAltName=" << san << "\n";
  ::testing::AssertionResult request =
      OpenSsl({"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
               "-keyout", Key(name), "-out", csr, "-subj", "/CN=" + cn});
  if (!request) return request;
  return OpenSsl({"x509", "-req", "-in", csr, "-CA", Crt(ca), "-CAkey", Key(ca), "-CAcreateserial",
                  "-out", Crt(name), "-days", "2", "-extfile", ext});
}

std::string Pki::CrtPem(const std::string& name) const {
  std::optional<std::string> text = ReadFile(Crt(name));
  return text ? *text : "";
}

std::string Pki::KeyPem(const std::string& name) const {
  std::optional<std::string> text = ReadFile(Key(name));
  return text ? *text : "";
}

std::string NodeOf(const std::string& id) {
  const size_t dot = id.find('.');
  return dot == std::string::npos ? "" : id.substr(dot + 1);
}

::testing::AssertionResult ReachesItsSandbox(sbx::Client& client, const std::string& id) {
  sbx::ExecOptions exec;
  exec.sandbox_id = id;
  exec.argv = {"sh", "-c", "hostname; cat"};
  absl::StatusOr<sbx::ExecResult> ran = client.ExecCollect(exec, "stdin of " + id);
  if (!ran.ok()) return ::testing::AssertionFailure() << id << ": exec: " << ran.status();
  if (ran->stdout_data != id + "\nstdin of " + id) {
    return ::testing::AssertionFailure() << id << ": exec printed \"" << ran->stdout_data << "\"";
  }
  sbx::FileToWrite file;
  file.path = "/work/who";
  file.content = id;
  if (absl::StatusOr<sbx::WriteResult> written = client.WriteFiles(id, {file}); !written.ok()) {
    return ::testing::AssertionFailure() << id << ": write: " << written.status();
  }
  absl::StatusOr<std::string> read = client.ReadFile(id, "/work/who");
  if (!read.ok()) return ::testing::AssertionFailure() << id << ": read: " << read.status();
  if (*read != id) return ::testing::AssertionFailure() << id << ": read back \"" << *read << "\"";
  return ::testing::AssertionSuccess();
}

}  // namespace sbx::it
