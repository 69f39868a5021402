"""Builds the sbx package; the gRPC stubs (sbx/v1/sandbox_pb2*.py) are
generated here from protos/sbx/v1/sandbox.proto with the system's protoc and
grpc_python_plugin (Debian: protobuf-compiler, protobuf-compiler-grpc), never
committed. $SBX_PROTO_DIR overrides where the proto is (default: the
repository's protos/ two levels up)."""

import os
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


class BuildWithStubs(build_py):
    def run(self):
        super().run()
        proto_dir = os.environ.get("SBX_PROTO_DIR") or os.path.join(HERE, "..", "..", "protos")
        proto = os.path.join(proto_dir, "sbx", "v1", "sandbox.proto")
        protoc, plugin = shutil.which("protoc"), shutil.which("grpc_python_plugin")
        if not os.path.exists(proto):
            raise SystemExit(f"sbx: {proto} not found; set SBX_PROTO_DIR")
        if not protoc or not plugin:
            raise SystemExit("sbx: protoc and grpc_python_plugin are needed to build the stubs"
                             " (Debian: apt-get install protobuf-compiler protobuf-compiler-grpc)")
        os.makedirs(os.path.join(self.build_lib, "sbx", "v1"), exist_ok=True)
        subprocess.check_call([protoc, f"--proto_path={proto_dir}",
                               f"--python_out={self.build_lib}",
                               f"--grpc_python_out={self.build_lib}",
                               f"--plugin=protoc-gen-grpc_python={plugin}", proto])


setup(cmdclass={"build_py": BuildWithStubs})
