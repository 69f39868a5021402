"""The Python client's exec against a real sbxd: stdout / stderr / exit code,
stdin byte for byte (also 1 MiB and streamed), callbacks, signals, time
limits and errors of the stream."""

import hashlib
import os
import signal
import threading
import time
import unittest

import grpc

import sbx
import sbxd_fixture


def setUpModule():
    sbxd_fixture.start_module_daemon()


def tearDownModule():
    sbxd_fixture.stop_module_daemon()


class ExecTest(unittest.TestCase):
    box = None

    @classmethod
    def setUpClass(cls):
        cls.client = sbxd_fixture.daemon().client
        cls.box = cls.client.create(memory="256M", pids=64, labels={"suite": "py-exec"})

    @classmethod
    def tearDownClass(cls):
        if cls.box is not None:
            cls.box.destroy()

    def test_stdout_stderr_and_exit_code(self):
        r = self.box.exec(["sh", "-c", "printf 'to out'; printf 'to err' >&2; exit 3"])
        self.assertEqual(r.stdout, b"to out")
        self.assertEqual(r.stderr, b"to err")
        self.assertEqual(r.exit_code, 3)
        self.assertEqual(r.signal, 0)
        self.assertEqual(r.verdict, sbx.Verdict.RUNTIME_ERROR)
        self.assertEqual(r.exit.returncode, 3)
        self.assertFalse(r.ok)
        self.assertGreater(r.exit.wall_time, 0)

    def test_success(self):
        r = self.client.exec(self.box.id, ["echo", "hello", "world"])
        self.assertEqual((r.stdout, r.stderr, r.exit_code), (b"hello world\n", b"", 0))
        self.assertEqual(r.verdict, sbx.Verdict.OK)
        self.assertTrue(r.ok)

    def test_stdin_round_trip_is_exact(self):
        payload = bytes(range(256)) * 4 + b"\r\n\x00 no newline at the end"
        r = self.box.exec(["cat"], stdin=payload)
        self.assertEqual(r.stdout, payload)
        self.assertEqual(r.exit_code, 0)

    def test_one_mebibyte_stdin_round_trip(self):
        payload = os.urandom((1 << 20) + 7)
        r = self.box.exec(["cat"], stdin=payload, rpc_timeout=50)
        self.assertEqual(len(r.stdout), len(payload))
        self.assertEqual(r.stdout, payload)
        digest = self.box.exec(["sha256sum"], stdin=payload, rpc_timeout=50)
        self.assertEqual(digest.stdout.split()[0].decode(), hashlib.sha256(payload).hexdigest())

    def test_slow_reader_gets_all_output_after_the_command_exits(self):
        # A small HTTP/2 window and a slow consumer: cat has exited long
        # before its last MiB of output is through, so the daemon must keep
        # streaming what is left in the pipe after its drain deadline.
        slow = sbx.connect(sbxd_fixture.daemon().address, channel_options=[
            ("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 65536)])
        payload = os.urandom((1 << 20) + 7)
        chunks = []

        def on_stdout(chunk):
            chunks.append(chunk)
            time.sleep(0.05)

        try:
            call = slow.spawn(self.box.id, ["cat"], on_stdout=on_stdout)
            call.write(payload)
            call.close_stdin()
            try:
                r = call.wait(60)
            except TimeoutError:
                call.cancel()
                self.fail(f"exec stalled after {sum(map(len, chunks))} of {len(payload)} bytes")
        finally:
            slow.close()
        self.assertEqual(r.exit_code, 0)
        self.assertEqual(b"".join(chunks), payload)

    def test_stdin_from_an_iterator(self):
        chunks = [b"first ", "second ", bytearray(b"\xff\xfe"), b"x" * 200000]

        def generate():
            yield from chunks

        r = self.box.exec(["cat"], stdin=generate())
        self.assertEqual(r.stdout, b"first second \xff\xfe" + b"x" * 200000)

    def test_str_stdin_and_no_stdin(self):
        self.assertEqual(self.box.exec(["cat"], stdin="héllo").stdout, "héllo".encode())
        r = self.box.exec(["cat"])  # stdin closed at once: EOF
        self.assertEqual((r.stdout, r.exit_code), (b"", 0))

    def test_callbacks_stream_output(self):
        out, err, started, exits = [], [], [], []
        r = self.box.exec(
            ["sh", "-c", "for i in 1 2 3; do echo out$i; echo err$i >&2; done"],
            on_stdout=out.append, on_stderr=err.append, on_started=started.append,
            on_exit=exits.append)
        self.assertEqual(b"".join(out), b"out1\nout2\nout3\n")
        self.assertEqual(b"".join(err), b"err1\nerr2\nerr3\n")
        self.assertEqual((r.stdout, r.stderr), (b"", b""), "callbacks took the output")
        self.assertEqual(len(started), 1)
        self.assertGreater(started[0], 0)
        self.assertEqual(exits, [r.exit])

    def test_env_and_cwd(self):
        r = self.box.exec(["sh", "-c", 'printf "%s|%s|" "$ONE" "$TWO"; pwd'],
                          env={"ONE": "1", "TWO": "two words"}, cwd="/tmp")
        self.assertEqual(r.stdout, b"1|two words|/tmp\n")

    def test_interactive_stdin_and_stdout(self):
        lines = []
        got_line = threading.Event()

        def on_stdout(data):
            lines.append(data)
            got_line.set()

        with self.box.spawn(["cat"], on_stdout=on_stdout) as call:
            call.write(b"ping\n")
            self.assertTrue(got_line.wait(10), "no echo of the first line")
            self.assertEqual(b"".join(lines), b"ping\n")
            self.assertIsNotNone(call.pid)
            call.write("pong\n")
            call.close_stdin()
            call.close_stdin()  # idempotent
            r = call.wait(30)
        self.assertEqual(b"".join(lines), b"ping\npong\n")
        self.assertEqual(r.exit_code, 0)
        with self.assertRaises(sbx.FailedPreconditionError):
            call.write(b"too late")

    def test_signal_from_the_client(self):
        ready = threading.Event()
        call = self.box.spawn(["sh", "-c", "echo ready; exec sleep 60"],
                              on_stdout=lambda data: ready.set())
        self.assertTrue(ready.wait(10))
        call.signal(signal.SIGTERM)
        r = call.wait(30)
        self.assertEqual(r.signal, signal.SIGTERM)
        self.assertEqual(r.verdict, sbx.Verdict.SIGNALED)
        self.assertEqual(r.exit.returncode, 128 + 15)
        self.assertLess(r.exit.wall_time, 30)

    def test_killed_by_a_signal(self):
        r = self.box.exec(["sh", "-c", "echo before; kill -KILL $$; echo after"])
        self.assertEqual(r.stdout, b"before\n")
        self.assertEqual(r.signal, 9)
        self.assertEqual(r.verdict, sbx.Verdict.SIGNALED)

    def test_wall_time_limit(self):
        r = self.box.exec(["sleep", "30"], timeout="500ms")
        self.assertTrue(r.exit.timed_out)
        self.assertEqual(r.verdict, sbx.Verdict.WALL_TIME_LIMIT)
        self.assertGreaterEqual(r.exit.wall_time, 0.45)
        self.assertLess(r.exit.wall_time, 10)

    def test_cpu_time_limit(self):
        r = self.box.exec(["sh", "-c", "while :; do :; done"],
                          limits=sbx.ExecLimits(cpu_time=0.3, wall_time="20s"))
        self.assertEqual(r.verdict, sbx.Verdict.TIME_LIMIT, r)
        self.assertTrue(r.exit.cpu_time_exceeded)
        self.assertFalse(r.exit.timed_out)
        self.assertGreaterEqual(r.exit.cpu_time, 0.29)
        self.assertLess(r.exit.cpu_time, 2)

    def test_output_limit(self):
        r = self.box.exec(["sh", "-c", "yes | head -c 100000"],
                          limits=sbx.ExecLimits(output="10k"))
        self.assertEqual(r.verdict, sbx.Verdict.OUTPUT_LIMIT, r)
        self.assertTrue(r.exit.output_truncated)
        self.assertLessEqual(len(r.stdout), 10 * 1024)

    def test_cancel(self):
        call = self.box.spawn(["sleep", "60"])
        call.cancel()
        with self.assertRaises(sbx.CancelledError) as caught:
            call.wait(30)
        self.assertEqual(caught.exception.code, grpc.StatusCode.CANCELLED)

    def test_client_side_deadline(self):
        with self.assertRaises(sbx.DeadlineExceededError) as caught:
            self.box.exec(["sleep", "60"], rpc_timeout=0.5)
        self.assertEqual(caught.exception.code, grpc.StatusCode.DEADLINE_EXCEEDED)

    def test_callback_exception_is_raised_by_wait(self):
        def boom(data):
            raise ValueError("callback failed")

        with self.assertRaises(ValueError):
            self.box.exec(["sh", "-c", "echo x; sleep 60"], on_stdout=boom)

    def test_invalid_exec(self):
        invalid = sbx.InvalidArgumentError
        with self.assertRaises(invalid):
            self.box.exec([])  # client side
        with self.assertRaises(invalid):
            self.box.exec("echo hi")  # a string is not an argv
        with self.assertRaises(invalid) as caught:
            self.box.exec([""])  # the daemon
        self.assertIn("argv", caught.exception.message)
        with self.assertRaises(invalid):
            self.box.exec(["true"], env={"A=B": "1"})
        with self.box.spawn(["sleep", "10"]) as call:
            with self.assertRaises(invalid):
                call.signal(0)

    def test_unknown_command_is_not_found(self):
        with self.assertRaises(sbx.NotFoundError) as caught:
            self.box.exec(["no-such-command-anywhere"])
        self.assertEqual(caught.exception.code, grpc.StatusCode.NOT_FOUND)
        self.assertIn("no-such-command-anywhere", caught.exception.message)


if __name__ == "__main__":
    unittest.main()
