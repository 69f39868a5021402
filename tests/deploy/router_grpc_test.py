#!/usr/bin/python3
"""The router's contract, end to end: real nginx, real gRPC clients.

Three stand-in nodes (tiny gRPC servers on loopback that answer every method
with their own name) sit behind nginx running the configuration that
deploy/router/render.sh makes. The test checks how calls are routed, the
gRPC errors nginx makes itself, streaming and large messages through the
router, and what happens when a node is down.

Usage: router_grpc_test.py RENDER_SH NGINX
Run as any user; nginx runs as this process's child on a free loopback
port with a temporary prefix and is stopped by its pid.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from concurrent import futures

import grpc

RENDER_SH = sys.argv[1] if len(sys.argv) > 1 else "deploy/router/render.sh"
NGINX = sys.argv[2] if len(sys.argv) > 2 else "nginx"
SERVICE = "/sbx.v1.SandboxService/"


class FakeNode:
    """A gRPC server that answers any unary call with its name, echoes
    streams and counts the calls it saw."""

    def __init__(self, name):
        self.name = name
        self.calls = []
        self.lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8),
                                  options=[("grpc.max_receive_message_length", 64 << 20)])
        self.server.add_generic_rpc_handlers([self])
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def service(self, details):  # grpc.GenericRpcHandler
        method = details.method
        with self.lock:
            self.calls.append(method)
        if method.endswith("/Exec"):
            return grpc.stream_stream_rpc_method_handler(self._echo)
        if method.endswith("/WriteFiles"):
            return grpc.stream_unary_rpc_method_handler(self._count)
        return grpc.unary_unary_rpc_method_handler(self._hello)

    def _hello(self, request, context):
        return self.name.encode()

    def _echo(self, requests, context):
        for r in requests:
            yield self.name.encode() + b":" + r

    def _count(self, requests, context):
        total = sum(len(r) for r in requests)
        return f"{self.name}:{total}".encode()

    def reset(self):
        with self.lock:
            self.calls.clear()

    def stop(self):
        self.server.stop(0).wait()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RouterTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.nodes = {n: FakeNode(n) for n in ("node-a", "node-b", "node-c")}
        cls.tmp = tempfile.mkdtemp(prefix="sbx-router-test.")
        cls.port = free_port()
        conf = os.path.join(cls.tmp, "nginx.conf")
        args = [RENDER_SH, "--listen", f"127.0.0.1:{cls.port}", "--runtime-dir", cls.tmp]
        args += [f"{n}=127.0.0.1:{node.port}" for n, node in cls.nodes.items()]
        with open(conf, "w") as f:
            subprocess.run(args, stdout=f, check=True)
        nginx = [NGINX, "-e", "stderr", "-p", cls.tmp, "-c", conf, "-g", "daemon off;"]
        subprocess.run(nginx[:-2] + ["-t", "-q"], check=True)
        cls.nginx = subprocess.Popen(nginx)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", cls.port), timeout=0.2).close()
                break
            except OSError:
                if cls.nginx.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("nginx did not start")
                time.sleep(0.05)
        cls.channel = grpc.insecure_channel(
            f"127.0.0.1:{cls.port}",
            options=[("grpc.max_send_message_length", 64 << 20),
                     ("grpc.max_receive_message_length", 64 << 20)])

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.nginx.send_signal(signal.SIGTERM)
        try:
            cls.nginx.wait(10)
        except subprocess.TimeoutExpired:
            cls.nginx.kill()
            cls.nginx.wait()
        for node in cls.nodes.values():
            node.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        for node in self.nodes.values():
            node.reset()

    def unary(self, method, node=None, timeout=5):
        md = [("sbx-node", node)] if node is not None else []
        stub = self.channel.unary_unary(SERVICE + method)
        body, call = stub.with_call(b"", metadata=md, timeout=timeout)
        served_by = dict(call.initial_metadata()).get("sbx-node")
        return body.decode(), served_by

    def assert_refused(self, method, node, code, text):
        with self.assertRaises(grpc.RpcError) as err:
            self.unary(method, node)
        self.assertEqual(err.exception.code(), code, err.exception.details())
        self.assertIn(text, err.exception.details())
        self.assertEqual(sum(len(n.calls) for n in self.nodes.values()), 0,
                         "a refused call reached a node")

    def test_named_node_gets_every_call(self):
        for method in ("GetSandbox", "DestroySandbox", "CreateSandbox", "ListSandboxes"):
            for _ in range(4):
                body, served_by = self.unary(method, "node-b")
                self.assertEqual(body, "node-b")
                self.assertEqual(served_by, "node-b")
        self.assertEqual(len(self.nodes["node-b"].calls), 16)

    def test_node_names_match_without_case(self):
        self.assertEqual(self.unary("GetSandbox", "Node-B"), ("node-b", "node-b"))

    def test_no_header_spreads_round_robin(self):
        seen = []
        for _ in range(9):
            body, served_by = self.unary("CreateSandbox")
            self.assertEqual(served_by, body, "sbx-node response header names the node")
            seen.append(body)
        self.assertEqual(sorted(set(seen)), ["node-a", "node-b", "node-c"])
        for name in self.nodes:  # 3 each from one nginx worker; allow a reconnect
            self.assertGreaterEqual(seen.count(name), 2, seen)
        for method in ("ListSandboxes", "Run"):
            body, _ = self.unary(method)
            self.assertIn(body, self.nodes)

    def test_unknown_node_is_not_found_and_reaches_no_node(self):
        self.assert_refused("GetSandbox", "node-z", grpc.StatusCode.NOT_FOUND, "node-z")
        self.assert_refused("CreateSandbox", "node-z", grpc.StatusCode.NOT_FOUND, "node-z")
        self.assert_refused("Exec", "no such node!", grpc.StatusCode.NOT_FOUND, "sbx-node")

    def test_sandbox_calls_without_node_are_refused(self):
        for method in ("GetSandbox", "DestroySandbox", "SetLimits", "Exec", "WriteFiles",
                       "ReadFile"):
            self.assert_refused(method, None, grpc.StatusCode.INVALID_ARGUMENT, "sbx-node")

    def test_bidi_stream_goes_to_named_node(self):
        stub = self.channel.stream_stream(SERVICE + "Exec")
        replies = list(stub(iter([b"one", b"two", b"three"]), metadata=[("sbx-node", "node-c")],
                            timeout=5))
        self.assertEqual(replies, [b"node-c:one", b"node-c:two", b"node-c:three"])

    def test_large_client_stream_passes(self):
        # 24 MiB in 1 MiB messages: nginx's default 1 MiB body limit would
        # answer 413 instead.
        stub = self.channel.stream_unary(SERVICE + "WriteFiles")
        chunks = (b"x" * (1 << 20) for _ in range(24))
        body = stub(chunks, metadata=[("sbx-node", "node-a")], timeout=30)
        self.assertEqual(body.decode(), f"node-a:{24 << 20}")

    def test_zz_node_down(self):  # runs last: stops node-c
        self.nodes["node-c"].stop()
        with self.assertRaises(grpc.RpcError) as err:
            self.unary("GetSandbox", "node-c")
        self.assertEqual(err.exception.code(), grpc.StatusCode.UNAVAILABLE,
                         err.exception.details())
        self.assertIn("sbx router", err.exception.details())
        # Calls naming no node still succeed: the dead node is skipped.
        seen = {self.unary("CreateSandbox")[0] for _ in range(8)}
        self.assertEqual(seen, {"node-a", "node-b"})


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
