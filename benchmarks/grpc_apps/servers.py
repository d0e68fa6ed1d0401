"""Hand-written gRPC servers for bench_grpc.py: ``python servers.py KIND PORT GEN_DIR``.

KIND is ``threadpool`` (Add on grpc.server), ``aio`` (Add on grpc.aio) or ``echo`` (bytes echo
on grpc.server). GEN_DIR holds bench_pb2 / bench_pb2_grpc compiled from bench.proto.
"""

from __future__ import annotations

import asyncio
import sys
from concurrent import futures
from typing import Any

import grpc

LIMIT = 64 * 1024 * 1024
OPTIONS = [("grpc.max_receive_message_length", LIMIT), ("grpc.max_send_message_length", LIMIT)]


def main() -> None:
    kind, port, gen = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    sys.path.insert(0, gen)
    import bench_pb2
    import bench_pb2_grpc

    class Add(bench_pb2_grpc.AddServicer):  # type: ignore[misc]
        def Execute(self, request: Any, context: Any) -> Any:
            return bench_pb2.AddReply(c=request.a + request.b)

    class AsyncAdd(bench_pb2_grpc.AddServicer):  # type: ignore[misc]
        async def Execute(self, request: Any, context: Any) -> Any:
            return bench_pb2.AddReply(c=request.a + request.b)

    class Echo(bench_pb2_grpc.EchoServicer):  # type: ignore[misc]
        def Echo(self, request: Any, context: Any) -> Any:
            return bench_pb2.Blob(data=request.data)

    if kind == "aio":

        async def serve() -> None:
            server = grpc.aio.server(options=OPTIONS)
            bench_pb2_grpc.add_AddServicer_to_server(AsyncAdd(), server)
            server.add_insecure_port(f"127.0.0.1:{port}")
            await server.start()
            await server.wait_for_termination()

        asyncio.run(serve())
        return
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=OPTIONS)
    if kind == "echo":
        bench_pb2_grpc.add_EchoServicer_to_server(Echo(), server)
    else:
        bench_pb2_grpc.add_AddServicer_to_server(Add(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


if __name__ == "__main__":
    main()
