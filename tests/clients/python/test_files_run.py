"""The Python client's file transfer and judge runs against a real sbxd."""

import io
import os
import unittest

import grpc

import sbx
import sbxd_fixture

SUM_C = b"""#include <stdio.h>
int main(void) {
  long a, b;
  if (scanf("%ld %ld", &a, &b) != 2) return 2;
  if (a < 0) for (;;) {}  /* burns cpu until the time limit */
  printf("%ld\\n", a + b);
  return 0;
}
"""


def setUpModule():
    sbxd_fixture.start_module_daemon()


def tearDownModule():
    sbxd_fixture.stop_module_daemon()


class FilesTest(unittest.TestCase):
    box = None

    @classmethod
    def setUpClass(cls):
        cls.client = sbxd_fixture.daemon().client
        cls.box = cls.client.create(labels={"suite": "py-files"})

    @classmethod
    def tearDownClass(cls):
        if cls.box is not None:
            cls.box.destroy()

    def test_write_then_read_round_trip(self):
        binary = os.urandom(300 * 1024 + 3)  # more than one 256 KiB chunk
        script = "#!/bin/sh\necho from-script \"$@\"\n"
        result = self.box.write_files([
            sbx.File("notes/a.txt", b"hello\n"),
            sbx.File("notes/deep/bin.dat", binary),
            sbx.File("/tmp/unicode.txt", "héllo wörld"),
            sbx.File("run.sh", script, mode=0o755),
            sbx.File("empty", b""),
            sbx.File("made/dir", is_dir=True, mode=0o700),
            sbx.File("link-to-a", symlink_target="notes/a.txt"),
        ])
        self.assertEqual(result, sbx.TransferResult(
            files=7, bytes=6 + len(binary) + len("héllo wörld".encode()) + len(script)))

        self.assertEqual(self.box.read_file("notes/a.txt"), b"hello\n")
        self.assertEqual(self.box.read_file("/work/notes/deep/bin.dat"), binary)
        self.assertEqual(self.box.read_file("/tmp/unicode.txt"), "héllo wörld".encode())
        self.assertEqual(self.box.read_file("empty"), b"")
        out = io.BytesIO()
        self.assertEqual(self.box.read_file_to("notes/deep/bin.dat", out),
                         sbx.TransferResult(1, len(binary)))
        self.assertEqual(out.getvalue(), binary)

        # The files are there for commands, with their modes.
        r = self.box.exec(["sh", "-c", "./run.sh arg; stat -c '%a %u' run.sh made/dir;"
                                       " readlink link-to-a; cat link-to-a"])
        self.assertEqual(r.stdout, b"from-script arg\n755 1000\n700 1000\nnotes/a.txt\nhello\n",
                         r)
        # And what a command writes comes back exactly.
        self.box.exec(["sh", "-c", "printf 'made inside\\000\\001' > /work/out.bin"])
        self.assertEqual(self.box.read_file("out.bin"), b"made inside\x00\x01")

    def test_streamed_write_from_a_file_object(self):
        payload = os.urandom((1 << 20) + 11)
        self.assertEqual(self.client.write_file(self.box.id, "big.bin", io.BytesIO(payload)),
                         sbx.TransferResult(1, len(payload)))
        self.assertEqual(self.box.read_file("big.bin"), payload)
        r = self.box.exec(["stat", "-c", "%s", "big.bin"])
        self.assertEqual(r.stdout, f"{len(payload)}\n".encode())

    def test_an_existing_file_is_replaced(self):
        self.box.write_file("replace.txt", b"a much longer first version\n")
        self.box.write_file("replace.txt", b"short\n")
        self.assertEqual(self.box.read_file("replace.txt"), b"short\n")

    def test_read_errors(self):
        with self.assertRaises(sbx.NotFoundError) as caught:
            self.box.read_file("no/such/file")
        self.assertEqual(caught.exception.code, grpc.StatusCode.NOT_FOUND)
        self.box.write_files([sbx.File("adir", is_dir=True)])
        with self.assertRaises(sbx.FailedPreconditionError) as caught:
            self.box.read_file("adir")
        self.assertEqual(caught.exception.code, grpc.StatusCode.FAILED_PRECONDITION)

    def test_write_errors(self):
        with self.assertRaises(sbx.InvalidArgumentError):
            self.box.write_files({"": b"x"})  # client side
        with self.assertRaises(sbx.InvalidArgumentError) as caught:
            self.box.write_files({"bad\x00name": b"x"})  # the daemon
        self.assertEqual(caught.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
        with self.assertRaises(sbx.SbxError) as caught:
            self.box.write_files({"/usr/bin/new-file": b"x"})  # read-only /usr
        self.assertIn(caught.exception.code, (grpc.StatusCode.PERMISSION_DENIED,
                                              grpc.StatusCode.FAILED_PRECONDITION))


class RunTest(unittest.TestCase):
    def setUp(self):
        self.client = sbxd_fixture.daemon().client

    def test_simple_cases(self):
        result = self.client.run(
            ["python3", "-c", "print(sum(map(int, input().split())))"],
            [sbx.TestCase("2 3\n", "5\n"), sbx.TestCase(b"1 1\n", b"3\n"), "40 2\n"])
        self.assertEqual([c.verdict for c in result.cases],
                         [sbx.Verdict.OK, sbx.Verdict.WRONG_ANSWER, sbx.Verdict.OK])
        self.assertEqual([c.stdout for c in result.cases], [b"5\n", b"2\n", b"42\n"])
        self.assertEqual(result.verdict, sbx.Verdict.WRONG_ANSWER)
        self.assertIsNone(result.compile)
        self.assertTrue(result.sandbox_id)
        with self.assertRaises(sbx.NotFoundError):  # the run's sandbox is gone
            self.client.get(result.sandbox_id)

    def test_compile_then_cases_with_limits(self):
        # A generous wall limit: on a loaded machine the loop must reach its
        # cpu limit (TIME_LIMIT) before the wall clock (WALL_TIME_LIMIT).
        limits = sbx.ExecLimits(cpu_time="500ms", wall_time="20s", memory="64M")
        result = self.client.run(
            ["./sum"],
            [sbx.TestCase("2 3\n", "5\n", limits),
             sbx.TestCase("-1 0\n", "x\n", limits),
             sbx.TestCase("40 2", "42  \n", limits)],
            files={"sum.c": SUM_C},
            compile_argv=["gcc", "-O2", "-o", "sum", "sum.c"],
            compare=sbx.Compare.IGNORE_TRAILING_WHITESPACE,
            memory="512M")
        self.assertIsNotNone(result.compile)
        self.assertEqual(result.compile.verdict, sbx.Verdict.OK, result.compile.stderr)
        self.assertEqual([c.verdict for c in result.cases],
                         [sbx.Verdict.OK, sbx.Verdict.TIME_LIMIT, sbx.Verdict.OK])
        self.assertEqual(result.verdict, sbx.Verdict.TIME_LIMIT)
        self.assertEqual(result.cases[0].stdout, b"5\n")
        self.assertTrue(result.cases[1].exit.cpu_time_exceeded)
        self.assertGreaterEqual(result.cases[1].exit.cpu_time, 0.45)

    def test_compile_error(self):
        result = self.client.run(["./prog"], ["1 2\n"], files={"prog.c": b"int main( {"},
                                 compile_argv=["gcc", "-o", "prog", "prog.c"])
        self.assertEqual(result.verdict, sbx.Verdict.COMPILE_ERROR)
        self.assertEqual(result.compile.verdict, sbx.Verdict.COMPILE_ERROR)
        self.assertIn(b"error", result.compile.stderr)
        self.assertEqual(result.cases, [])

    def test_invalid_run(self):
        with self.assertRaises(sbx.InvalidArgumentError):
            self.client.run(["true"], image="no-such-image")


if __name__ == "__main__":
    unittest.main()
