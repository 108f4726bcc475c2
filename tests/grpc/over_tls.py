"""The BuildService over TLS (HTTP/2 by ALPN), as Python grpcio reaches it:
health SERVING, and ListBuilds with the token answers the organization's
builds. Prints a JSON report.

Usage: over_tls.py ADDRESS CA_PEM TOKEN REPO_ROOT WORK_DIR
"""

import importlib.resources
import json
import os
import sys

import grpc
from grpc_tools import protoc

address, ca, token, repo, work = sys.argv[1:6]
proto_root = os.path.join(repo, "proto")
generated = os.path.join(work, "generated")
os.makedirs(generated, exist_ok=True)
assert protoc.main([
    "grpc_tools.protoc",
    f"-I{proto_root}",
    f"-I{importlib.resources.files('grpc_tools') / '_proto'}",
    f"--python_out={generated}",
    f"--grpc_python_out={generated}",
    os.path.join(proto_root, "kiln/build/v1/build_service.proto"),
]) == 0
sys.path.insert(0, generated)
from kiln.build.v1 import build_service_pb2 as pb  # noqa: E402
from kiln.build.v1 import build_service_pb2_grpc as rpc  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

with open(ca, "rb") as f:
    credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
channel = grpc.secure_channel(
    address, credentials, options=[("grpc.ssl_target_name_override", "localhost")]
)
health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
listed = rpc.BuildServiceStub(channel).ListBuilds(
    pb.ListBuildsRequest(), metadata=[("authorization", f"Bearer {token}")]
)
print(json.dumps({
    "health": health_pb2.HealthCheckResponse.ServingStatus.Name(health.status),
    "builds": len(listed.builds),
}))
