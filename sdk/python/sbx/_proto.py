"""The generated sbx.v1 modules (protoc --python_out / --grpc_python_out).

They are not in the source tree: the build generates sbx/v1/sandbox_pb2.py and
sandbox_pb2_grpc.py, either into this package (pip install, or the protoc
command in README.md) or into another directory on sys.path (the CMake build
puts them in <build>/tests/clients/python); sbx/__init__.py extends the
package path so that both layouts work.
"""

try:
    from sbx.v1 import sandbox_pb2 as pb  # noqa: F401
    from sbx.v1 import sandbox_pb2_grpc as pb_grpc  # noqa: F401
except ImportError as error:  # pragma: no cover - depends on the install
    raise ImportError(
        "sbx: the generated gRPC modules sbx/v1/sandbox_pb2.py and "
        "sandbox_pb2_grpc.py were not found. Install the package with pip "
        "(which generates them), or generate them next to it with\n"
        "  protoc -I protos --python_out=sdk/python --grpc_python_out=sdk/python "
        "--plugin=protoc-gen-grpc_python=$(command -v grpc_python_plugin) "
        "protos/sbx/v1/sandbox.proto\n"
        f"({error})"
    ) from error

__all__ = ["pb", "pb_grpc"]
