"""The BuildService over TLS (HTTP/2 by ALPN), as Python grpcio reaches it:
health SERVING, and ListBuilds with the token answers the organization's
builds. Prints a JSON report.

Usage: over_tls.py ADDRESS CA_PEM TOKEN REPO_ROOT WORK_DIR
"""

import json
import sys

import grpc

import stubs

address, ca, token, repo, work = sys.argv[1:6]
pb, rpc = stubs.generate(repo, work)
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
