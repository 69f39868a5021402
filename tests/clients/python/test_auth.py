"""The Python client's token and TLS options against a real sbxd with a TLS
listener on 127.0.0.1, certificates made by the openssl command for this
module (like tests/integration/auth_test.cc): a token over TLS, wrong and
missing tokens, an untrusted server, server names, client certificates
(mTLS), a token on the Unix socket, and the checks of the options."""

import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import unittest

import sbx
import sbxd_fixture

ALICE_TOKEN = "alice-secret-token"
BOB_TOKEN = "bob-secret-token"

_pki_dir = None
_port = 0


def _openssl(*args: str) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the openssl command is needed to make the test certificates "
                           "(apt-get install openssl)")
    result = subprocess.run([openssl, *args], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {result.stderr}")


def _path(name: str) -> str:
    return os.path.join(_pki_dir, name)


def _make_ca(name: str) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", _path(name + ".key"), "-out", _path(name + ".crt"),
             "-days", "2", "-subj", "/CN=" + name)


def _make_cert(name: str, ca: str, cn: str, san: str) -> None:
    with open(_path(name + ".ext"), "w") as f:
        f.write(f"subjectAltName={san}\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", _path(name + ".key"), "-out", _path(name + ".csr"), "-subj", "/CN=" + cn)
    _openssl("x509", "-req", "-in", _path(name + ".csr"), "-CA", _path(ca + ".crt"),
             "-CAkey", _path(ca + ".key"), "-CAcreateserial", "-out", _path(name + ".crt"),
             "-days", "2", "-extfile", _path(name + ".ext"))


def _pem(name: str) -> bytes:
    with open(_path(name), "rb") as f:
        return f.read()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def setUpModule():
    global _pki_dir, _port
    _pki_dir = tempfile.mkdtemp(prefix="sbx-py-pki-")
    try:
        _make_ca("ca")
        _make_ca("rogue-ca")
        _make_cert("server", "ca", "localhost", "DNS:localhost,IP:127.0.0.1")
        _make_cert("alice", "ca", "alice-cert", "DNS:alice.clients.test")
        _make_cert("mallory", "ca", "mallory", "DNS:mallory.clients.test")
        _make_cert("rogue", "rogue-ca", "alice-cert", "DNS:alice.clients.test")
        _port = _free_port()
        with open(_path("sbxd.yaml"), "w") as f:
            f.write(f"listen: 127.0.0.1:{_port}\n"
                    "tls:\n"
                    f"  cert: {_path('server.crt')}\n"
                    f"  key: {_path('server.key')}\n"
                    f"  client_ca: {_path('ca.crt')}\n"
                    "tenants:\n"
                    "  alice:\n"
                    f"    tokens: [{_sha256(ALICE_TOKEN)}]\n"
                    "    client_names: [alice.clients.test]\n"
                    "  bob:\n"
                    f"    tokens: [{_sha256(BOB_TOKEN)}]\n")
        sbxd_fixture.start_module_daemon(extra_args=["--config", _path("sbxd.yaml")])
    except BaseException:
        shutil.rmtree(_pki_dir, ignore_errors=True)
        raise


def tearDownModule():
    try:
        sbxd_fixture.stop_module_daemon()
    finally:
        shutil.rmtree(_pki_dir, ignore_errors=True)


def tcp_client(**options) -> sbx.Client:
    return sbx.connect(f"127.0.0.1:{_port}", timeout=10, **options)


def tls_client(token: str = "", **options) -> sbx.Client:
    """TLS to the listener, verified with the test CA."""
    return tcp_client(tls=True, tls_ca_pem=_pem("ca.crt"), token=token, **options)


def listed(client: sbx.Client, sandbox_id: str) -> bool:
    return sandbox_id in [b.id for b in client.list()]


class TokenTest(unittest.TestCase):
    def test_token_over_tls_creates_execs_and_destroys(self):
        with tls_client(ALICE_TOKEN) as alice:
            box = alice.create(memory="64M", pids=32)
            try:
                r = box.exec(["echo", "hello over tls"])
                self.assertEqual((r.stdout, r.exit_code), (b"hello over tls\n", 0))
                box.write_file("note.txt", "streamed both ways")
                self.assertEqual(box.read_file("note.txt"), b"streamed both ways")
                self.assertTrue(listed(alice, box.id))
                # The sandbox is alice's: neither bob nor `local` (the Unix
                # socket without a token) sees it.
                with tls_client(BOB_TOKEN) as bob:
                    self.assertFalse(listed(bob, box.id))
                self.assertFalse(listed(sbxd_fixture.daemon().client, box.id))
            finally:
                self.assertTrue(alice.destroy(box.id))
            self.assertFalse(listed(alice, box.id))

    def test_wrong_token_is_unauthenticated(self):
        with tls_client("not-a-token") as wrong:
            with self.assertRaises(sbx.UnauthenticatedError) as caught:
                wrong.list()
            self.assertIn("invalid bearer token", caught.exception.message)
            with self.assertRaises(sbx.UnauthenticatedError):
                wrong.create()
            # A stream as well.
            with self.assertRaises(sbx.UnauthenticatedError):
                wrong.exec("sb-0000000000000000", ["true"])

    def test_missing_token_is_unauthenticated(self):
        with tls_client() as anonymous:
            with self.assertRaises(sbx.UnauthenticatedError) as caught:
                anonymous.list()
            self.assertIn("no credentials", caught.exception.message)

    def test_token_on_the_unix_socket(self):
        # As in the C++ SDK, the token goes on a plain channel too, and makes
        # the call the token's tenant there.
        with sbx.connect(sbxd_fixture.daemon().address, token=ALICE_TOKEN) as unix_alice:
            box = unix_alice.create(memory="64M", pids=32)
            try:
                self.assertEqual(box.exec(["echo", "unix"]).stdout, b"unix\n")
                with tls_client(ALICE_TOKEN) as alice:
                    self.assertTrue(listed(alice, box.id))
                self.assertFalse(listed(sbxd_fixture.daemon().client, box.id))
            finally:
                self.assertTrue(unix_alice.destroy(box.id))
        with sbx.connect(sbxd_fixture.daemon().address, token="not-a-token") as wrong:
            with self.assertRaises(sbx.UnauthenticatedError):
                wrong.list()


class TlsTest(unittest.TestCase):
    def assert_unavailable(self, client: sbx.Client) -> sbx.SbxError:
        with client:
            with self.assertRaises(sbx.UnavailableError) as caught:
                client.list()
        self.assertTrue(caught.exception.message)
        return caught.exception

    def test_untrusted_server_is_unavailable(self):
        # A CA that did not sign the server's certificate, and the default
        # roots, which do not hold the test CA.
        for options in ({"tls_ca_pem": _pem("rogue-ca.crt")}, {}):
            error = self.assert_unavailable(tcp_client(tls=True, token=ALICE_TOKEN, **options))
            self.assertIn("certificate", error.message, options)

    def test_plain_text_to_the_tls_listener_is_unavailable(self):
        self.assert_unavailable(tcp_client(token=ALICE_TOKEN))

    def test_server_name(self):
        with tls_client(ALICE_TOKEN, tls_server_name="localhost") as alice:
            self.assertIsInstance(alice.list(), list)
        error = self.assert_unavailable(tls_client(ALICE_TOKEN, tls_server_name="elsewhere.test"))
        self.assertIn("elsewhere.test", error.message)

    def test_client_certificate_authenticates(self):
        with tls_client(tls_cert_pem=_pem("alice.crt"), tls_key_pem=_pem("alice.key")) as cert:
            box = cert.create(memory="64M", pids=32)
            try:
                self.assertEqual(box.exec(["echo", "mtls"]).stdout, b"mtls\n")
                # The same tenant as alice's token.
                with tls_client(ALICE_TOKEN) as alice:
                    self.assertTrue(listed(alice, box.id))
            finally:
                self.assertTrue(cert.destroy(box.id))

    def test_unknown_client_certificates_are_rejected(self):
        # Signed by the trusted CA but naming no tenant.
        with tls_client(tls_cert_pem=_pem("mallory.crt"),
                        tls_key_pem=_pem("mallory.key")) as mallory:
            with self.assertRaises(sbx.UnauthenticatedError) as caught:
                mallory.list()
            self.assertIn("names no tenant", caught.exception.message)
        # Signed by another CA: the server refuses the handshake.
        with tls_client(tls_cert_pem=_pem("rogue.crt"), tls_key_pem=_pem("rogue.key")) as rogue:
            with self.assertRaises((sbx.UnavailableError, sbx.UnauthenticatedError)):
                rogue.list()


class OptionsTest(unittest.TestCase):
    def test_bad_options_are_invalid_argument(self):
        address = f"127.0.0.1:{_port}"
        cert, key = _pem("alice.crt"), _pem("alice.key")
        bad = [
            ({"tls": True, "tls_cert_pem": cert}, "go together"),
            ({"tls": True, "tls_key_pem": key}, "go together"),
            ({"tls_ca_pem": _pem("ca.crt")}, "need tls=True"),
            ({"tls_cert_pem": cert, "tls_key_pem": key}, "need tls=True"),
            ({"tls_server_name": "localhost"}, "need tls=True"),
            ({"tls": True, "tls_ca_pem": 42}, "tls_ca_pem"),
            ({"token": "two\nlines"}, "printable ASCII"),
            ({"token": b"bytes"}, "expected a str"),
            ({"tls": True, "tls_server_name": 1}, "tls_server_name"),
        ]
        for options, message in bad:
            with self.assertRaises(sbx.InvalidArgumentError, msg=str(options)) as caught:
                sbx.connect(address, **options)
            self.assertIn(message, caught.exception.message)

    def test_pem_text_as_str(self):
        ca = _pem("ca.crt").decode()
        with tcp_client(tls=True, tls_ca_pem=ca, token=ALICE_TOKEN) as alice:
            # wait_ready() and close() reach the channel under the token's
            # interceptor.
            alice.wait_ready(10)
            self.assertIsInstance(alice.list(), list)


if __name__ == "__main__":
    unittest.main()
