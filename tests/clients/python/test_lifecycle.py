"""The Python client against a real sbxd: create / get / list / destroy,
set_limits, addresses and the mapping of errors to SbxError."""

import datetime
import os
import unittest

import grpc

import sbx
import sbxd_fixture

MiB = 1 << 20


def setUpModule():
    sbxd_fixture.start_module_daemon()


def tearDownModule():
    sbxd_fixture.stop_module_daemon()


class LifecycleTest(unittest.TestCase):
    def setUp(self):
        self.client = sbxd_fixture.daemon().client

    def test_create_get_list_destroy(self):
        box = self.client.create(memory="128M", cpus=0.5, pids=32, ttl="10m",
                                 labels={"suite": "py", "case": "lifecycle"},
                                 env={"GREETING": "hello from env"})
        try:
            self.assertTrue(box.id)
            self.assertEqual(box.state, sbx.SandboxState.RUNNING)
            self.assertEqual(box.limits, sbx.Limits(memory_bytes=128 * MiB, cpus=0.5, pids=32))
            self.assertEqual(box.labels, {"suite": "py", "case": "lifecycle"})
            self.assertGreater(box.init_pid, 0)
            self.assertIsNotNone(box.created_at)
            self.assertIsNotNone(box.expires_at)
            ttl = box.expires_at - box.created_at
            self.assertLess(abs(ttl - datetime.timedelta(minutes=10)),
                            datetime.timedelta(seconds=5), ttl)

            got = self.client.get(box.id)
            self.assertEqual(got.id, box.id)
            self.assertEqual(got.state, sbx.SandboxState.RUNNING)
            self.assertEqual(got.limits, box.limits)
            self.assertEqual(got.labels, box.labels)
            self.assertGreaterEqual(got.usage.pids, 1)

            self.assertEqual([b.id for b in self.client.list(labels={"case": "lifecycle"})],
                             [box.id])
            self.assertEqual(self.client.list(labels={"case": "lifecycle", "suite": "other"}),
                             [])
            self.assertIn(box.id, [b.id for b in self.client.list()])
            self.assertIn(box.id, [b.id for b in self.client.list(
                state=sbx.SandboxState.RUNNING)])
            self.assertNotIn(box.id, [b.id for b in self.client.list(
                state=sbx.SandboxState.DEAD)])

            # The sandbox's env is the default environment of every exec.
            r = box.exec(["sh", "-c", 'printf "%s" "$GREETING"'])
            self.assertEqual(r.stdout, b"hello from env")
        finally:
            self.assertTrue(self.client.destroy(box.id))
        self.assertFalse(self.client.destroy(box.id), "destroy is idempotent")
        with self.assertRaises(sbx.NotFoundError) as caught:
            self.client.get(box.id)
        self.assertEqual(caught.exception.code, grpc.StatusCode.NOT_FOUND)
        self.assertNotIn(box.id, [b.id for b in self.client.list()])

    def test_context_manager_destroys_on_exit(self):
        with self.assertRaises(RuntimeError):
            with self.client.create(labels={"case": "ctx"}) as box:
                sandbox_id = box.id
                self.assertEqual(box.refresh().state, sbx.SandboxState.RUNNING)
                raise RuntimeError("leave the block by an exception")
        with self.assertRaises(sbx.NotFoundError):
            self.client.get(sandbox_id)
        self.assertEqual(self.client.list(labels={"case": "ctx"}), [])

    def test_set_limits_applies_at_once(self):
        with self.client.create(memory="256M", cpus=1, pids=64) as box:
            updated = self.client.set_limits(box.id, memory="64M", pids=8)
            self.assertEqual(updated.limits,
                             sbx.Limits(memory_bytes=64 * MiB, cpus=1.0, pids=8))
            self.assertEqual(box.refresh().limits, updated.limits)
            box.set_limits(cpus=0.25)
            self.assertEqual(box.limits, sbx.Limits(memory_bytes=64 * MiB, cpus=0.25, pids=8))

            # The pids limit holds now: forks beyond 8 tasks fail.
            r = box.exec(["sh", "-c", "for i in $(seq 20); do sleep 1 & done; wait"],
                         timeout=30)
            self.assertTrue(b"fork" in r.stderr or b"Resource temporarily unavailable"
                            in r.stderr, r)

    def test_set_limits_rejects_bad_values_and_changes_nothing(self):
        with self.client.create(memory="128M", pids=32) as box:
            with self.assertRaises(sbx.InvalidArgumentError) as caught:
                box.set_limits(memory=1024)  # below the 8 MiB minimum
            self.assertEqual(caught.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
            self.assertIn("memory", caught.exception.message)
            with self.assertRaises(sbx.InvalidArgumentError):
                box.set_limits(pids=0)
            self.assertEqual(box.refresh().limits.memory_bytes, 128 * MiB)
            self.assertEqual(box.limits.pids, 32)


class ErrorTest(unittest.TestCase):
    def setUp(self):
        self.client = sbxd_fixture.daemon().client

    def assert_code(self, code, error_type, call, *args, **kwargs):
        with self.assertRaises(error_type) as caught:
            call(*args, **kwargs)
        self.assertIsInstance(caught.exception, sbx.SbxError)
        self.assertEqual(caught.exception.code, code)
        self.assertEqual(caught.exception.code_name, code.name)
        self.assertTrue(caught.exception.message)
        return caught.exception

    def test_unknown_sandbox_is_not_found(self):
        unknown = "sb-00000000deadbeef"
        not_found = (grpc.StatusCode.NOT_FOUND, sbx.NotFoundError)
        self.assert_code(*not_found, self.client.get, unknown)
        self.assert_code(*not_found, self.client.set_limits, unknown, pids=10)
        self.assert_code(*not_found, self.client.exec, unknown, ["true"])
        self.assert_code(*not_found, self.client.write_files, unknown, {"a": b"x"})
        self.assert_code(*not_found, self.client.read_file, unknown, "a")
        self.assertFalse(self.client.destroy(unknown))

    def test_bad_input_is_invalid_argument(self):
        invalid = (grpc.StatusCode.INVALID_ARGUMENT, sbx.InvalidArgumentError)
        # Checked by the daemon.
        e = self.assert_code(*invalid, self.client.create, image="no-such-image")
        self.assertIn("image", e.message)
        self.assert_code(*invalid, self.client.create, memory=4096)
        self.assert_code(*invalid, self.client.create, cpus=1000)
        self.assert_code(*invalid, self.client.create, labels={"bad key!": "x"})
        self.assert_code(*invalid, self.client.create, env={"A=B": "x"})
        # Checked before anything is sent.
        self.assert_code(*invalid, self.client.get, "")
        self.assert_code(*invalid, self.client.create, memory="12Q")
        self.assert_code(*invalid, self.client.create, ttl="forever")
        self.assert_code(*invalid, self.client.run, [])
        # Nothing was created by any of these.
        self.assertEqual(self.client.list(), [])

    def test_unreachable_daemon_is_unavailable(self):
        path = os.path.join(sbxd_fixture.daemon().temp_dir, "nobody.sock")
        with sbx.connect(path, timeout=5) as client:
            self.assert_code(grpc.StatusCode.UNAVAILABLE, sbx.UnavailableError, client.list)


class AddressTest(unittest.TestCase):
    def test_normalize_address(self):
        n = sbx.normalize_address
        self.assertEqual(n("/run/sbx/sbxd.sock"), "unix:/run/sbx/sbxd.sock")
        self.assertEqual(n("./x.sock"), "unix:./x.sock")
        self.assertEqual(n("unix:///run/x.sock"), "unix:///run/x.sock")
        self.assertEqual(n("localhost:50051"), "localhost:50051")
        self.assertEqual(n("dns:///example:1"), "dns:///example:1")
        for bad in ("", "unix:", "unix://relative", "localhost", "host:port"):
            with self.assertRaises(sbx.InvalidArgumentError, msg=bad):
                n(bad)

    def test_default_address_from_env(self):
        saved = os.environ.pop("SBX_SERVER", None)
        try:
            self.assertEqual(sbx.default_address(), "unix:///run/sbx/sbxd.sock")
            os.environ["SBX_SERVER"] = sbxd_fixture.daemon().socket_path
            with sbx.connect() as client:
                self.assertEqual(client.target, "unix:" + sbxd_fixture.daemon().socket_path)
                self.assertIsInstance(client.list(), list)
        finally:
            os.environ.pop("SBX_SERVER", None)
            if saved is not None:
                os.environ["SBX_SERVER"] = saved

    def test_units(self):
        self.assertEqual(sbx.parse_size("64M"), 64 * MiB)
        self.assertEqual(sbx.parse_size("1.5g"), 3 << 29)
        self.assertEqual(sbx.parse_size("64MiB"), 64 * MiB)
        self.assertEqual(sbx.parse_size(123), 123)
        self.assertEqual(sbx.parse_duration_ns("1h30m"), 5400 * 10**9)
        self.assertEqual(sbx.parse_duration_ns("500ms"), 5 * 10**8)
        self.assertEqual(sbx.parse_duration_ns(datetime.timedelta(seconds=2)), 2 * 10**9)
        for bad in ("-1", "1x", "", "inf"):
            with self.assertRaises(sbx.InvalidArgumentError, msg=bad):
                sbx.parse_size(bad)
        for bad in ("5", "-1s", "1 s", "inf"):
            with self.assertRaises(sbx.InvalidArgumentError, msg=bad):
                sbx.parse_duration_ns(bad)


if __name__ == "__main__":
    unittest.main()
