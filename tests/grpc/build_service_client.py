"""A client of Kiln's BuildService that is not Kiln's: Python grpcio, with
stubs generated here from the published proto/kiln/build/v1/build_service.proto
by grpcio-tools. Exercises every RPC, a 100 MB streamed upload, a followed
log, cancel, cross-organization NOT_FOUND and a bad token UNAUTHENTICATED,
plus the standard health and reflection services. Asserts what a gRPC user
sees; prints a JSON report on stdout for the Rust test to compare with the
REST API.

Usage: build_service_client.py ADDRESS TOKEN OTHER_ORG_TOKEN REPO_ROOT WORK_DIR
"""

import hashlib
import io
import json
import os
import sys
import tarfile
import time
import zipfile

import grpc

import stubs

address, token, other_token, repo, work = sys.argv[1:6]
REGISTRY = "127.0.0.1:5000"

# --- Stubs from the published .proto.
pb, rpc = stubs.generate(repo, work)

channel = grpc.insecure_channel(
    address,
    options=[
        ("grpc.max_send_message_length", 16 << 20),
        ("grpc.max_receive_message_length", 16 << 20),
    ],
)
stub = rpc.BuildServiceStub(channel)
auth = [("authorization", f"Bearer {token}")]
other = [("authorization", f"Bearer {other_token}")]
report = {}


def expect_error(code, call, *args, **kwargs):
    """The call fails with `code`; returns its message."""
    try:
        answer = call(*args, **kwargs)
        if hasattr(answer, "__iter__") and not hasattr(answer, "ListFields"):
            list(answer)
    except grpc.RpcError as error:
        assert error.code() == code, f"expected {code}, got {error.code()}: {error.details()}"
        assert error.details(), f"{code} without a message"
        return error.details()
    raise AssertionError(f"expected {code}, the call succeeded")


def wait_for(build_id, wanted, limit=180):
    deadline = time.time() + limit
    while True:
        build = stub.GetBuild(pb.GetBuildRequest(build_id=build_id), metadata=auth)
        if build.status in wanted:
            return build
        assert time.time() < deadline, f"build {build_id} still {pb.BuildStatus.Name(build.status)}"
        time.sleep(0.2)


FINISHED = {pb.BUILD_STATUS_SUCCEEDED, pb.BUILD_STATUS_FAILED, pb.BUILD_STATUS_CANCELLED}

# --- Authentication: no token and a bad token are UNAUTHENTICATED, with the
# REST API's messages.
report["no_token"] = expect_error(
    grpc.StatusCode.UNAUTHENTICATED, stub.ListBuilds, pb.ListBuildsRequest()
)
report["bad_token"] = expect_error(
    grpc.StatusCode.UNAUTHENTICATED,
    stub.ListBuilds,
    pb.ListBuildsRequest(),
    metadata=[("authorization", "Bearer not-a-kiln-token")],
)

# --- SaveBuildSecrets / GetBuildSecrets: values in, `***` out.
SECRET_VALUE = "grpc-secret-value-7c1d"
saved = stub.SaveBuildSecrets(
    pb.SaveBuildSecretsRequest(build_secrets={"GRPC_SECRET": SECRET_VALUE}), metadata=auth
)
assert saved.build_secrets["GRPC_SECRET"] == "***", saved
read_back = stub.GetBuildSecrets(pb.GetBuildSecretsRequest(), metadata=auth)
assert read_back.build_secrets["GRPC_SECRET"] == "***", read_back
assert SECRET_VALUE not in str(saved) + str(read_back)
report["too_short_secret"] = expect_error(
    grpc.StatusCode.INVALID_ARGUMENT,
    stub.SaveBuildSecrets,
    pb.SaveBuildSecretsRequest(build_secrets={"SHORT": "ab"}),
    metadata=auth,
)

# --- CreateBuild with an inline zip (examples/hello), its log followed from
# the start while it runs, with the secret mounted.
hello = io.BytesIO()
with zipfile.ZipFile(hello, "w") as z:
    base = os.path.join(repo, "examples/hello")
    for name in sorted(os.listdir(base)):
        info = zipfile.ZipInfo(name)
        info.external_attr = (0o755 if name.endswith(".sh") else 0o644) << 16
        with open(os.path.join(base, name), "rb") as f:
            z.writestr(info, f.read())
name = f"grpc-hello-{os.getpid()}"
created = stub.CreateBuild(
    pb.CreateBuildRequest(
        name=name,
        zipped_code=hello.getvalue(),
        tags=["v1", "latest"],
        build_args={"GREETING": "hello over gRPC"},
        secrets=["GRPC_SECRET"],
    ),
    metadata=auth,
)
assert created.build_id and created.number >= 1, created
assert created.status == pb.BUILD_STATUS_PENDING, created
lines = []
for line in stub.StreamBuildLogs(
    pb.StreamBuildLogsRequest(build_id=created.build_id, from_start=True), metadata=auth
):
    lines.append({"seq": line.seq, "stream": line.stream, "line": line.line,
                  "time": line.time.ToJsonString()})
# The stream ended by itself: the build has finished.
hello_build = stub.GetBuild(pb.GetBuildRequest(build_id=created.build_id), metadata=auth)
assert hello_build.status == pb.BUILD_STATUS_SUCCEEDED, hello_build
seqs = [l["seq"] for l in lines]
assert seqs == list(range(1, len(seqs) + 1)), f"gaps or repeats: {seqs[:20]}..."
assert hello_build.image_refs == [f"{REGISTRY}/default/{name}:v1", f"{REGISTRY}/default/{name}:latest"], hello_build.image_refs
assert hello_build.digest.startswith("sha256:"), hello_build.digest
assert hello_build.metrics.duration_ms > 0 and hello_build.metrics.layer_count > 0, hello_build.metrics
assert hello_build.request.build_args["GREETING"] == "hello over gRPC"
assert hello_build.HasField("finish_time") and hello_build.finish_time.seconds > 0
assert all(SECRET_VALUE not in l["line"] for l in lines)
assert [a.kind for a in hello_build.attachments] == ["signature", "provenance", "sbom"], hello_build.attachments
report["hello"] = {
    "build_id": created.build_id,
    "number": created.number,
    "lines": lines,
    "digest": hello_build.digest,
    "image_refs": list(hello_build.image_refs),
    "metrics": {"duration_ms": hello_build.metrics.duration_ms,
                "layer_count": hello_build.metrics.layer_count,
                "image_size_bytes": hello_build.metrics.image_size_bytes},
}

# A replay after the end gives the same lines; `after_seq` resumes.
replay = [l.seq for l in stub.StreamBuildLogs(
    pb.StreamBuildLogsRequest(build_id=created.build_id, from_start=True), metadata=auth)]
assert replay == seqs
resumed = [l.seq for l in stub.StreamBuildLogs(
    pb.StreamBuildLogsRequest(build_id=created.build_id, after_seq=5), metadata=auth)]
assert resumed == seqs[5:], resumed[:5]

# --- UploadBuildContext: a 100 MB tar streamed in 1 MiB messages (random
# bytes, so nothing compresses), then built by its context id. The big
# file is in .dockerignore: the build checks the context, not the disk.
big = os.urandom(100 * 1000 * 1000)
archive = io.BytesIO()
with tarfile.open(fileobj=archive, mode="w", format=tarfile.GNU_FORMAT) as tar:
    def add(path, data):
        info = tarfile.TarInfo(path)
        info.size = len(data)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))
    add("Dockerfile", f"FROM {REGISTRY}/base/busybox:1\nCOPY note.txt /note.txt\n".encode())
    add("note.txt", b"uploaded over gRPC\n")
    add(".dockerignore", b"big.bin\n")
    add("big.bin", big)
payload = archive.getvalue()
assert len(payload) > 100_000_000


def chunks(data, size=1 << 20):
    for start in range(0, len(data), size):
        yield pb.UploadBuildContextRequest(chunk=data[start:start + size])


started = time.perf_counter()
uploaded = stub.UploadBuildContext(chunks(payload), metadata=auth)
upload_secs = time.perf_counter() - started
assert uploaded.sha256 == hashlib.sha256(payload).hexdigest(), uploaded
assert uploaded.size_bytes == len(payload) and uploaded.format == "tar", uploaded
assert uploaded.context_id.startswith("ctx-")
report["upload"] = {"context_id": uploaded.context_id, "bytes": len(payload),
                    "secs": upload_secs, "sha256": uploaded.sha256}
from_upload = stub.CreateBuild(
    pb.CreateBuildRequest(name=f"{name}-upload", context_id=uploaded.context_id), metadata=auth
)
upload_build = wait_for(from_upload.build_id, FINISHED)
assert upload_build.status == pb.BUILD_STATUS_SUCCEEDED, upload_build.failure
assert upload_build.source.kind == "upload" and upload_build.source.context_id == uploaded.context_id
# An empty upload is refused with the REST message.
report["empty_upload"] = expect_error(
    grpc.StatusCode.INVALID_ARGUMENT, stub.UploadBuildContext, iter([]), metadata=auth
)

# --- ListBuilds: filters and paging.
listed = stub.ListBuilds(pb.ListBuildsRequest(name=name), metadata=auth)
assert [b.build_id for b in listed.builds] == [created.build_id], listed
succeeded = stub.ListBuilds(
    pb.ListBuildsRequest(status=pb.BUILD_STATUS_SUCCEEDED, page_size=1), metadata=auth
)
assert len(succeeded.builds) == 1 and succeeded.next_page_token, succeeded
second = stub.ListBuilds(
    pb.ListBuildsRequest(status=pb.BUILD_STATUS_SUCCEEDED, page_size=1,
                         page_token=succeeded.next_page_token), metadata=auth)
assert len(second.builds) == 1 and second.builds[0].build_id != succeeded.builds[0].build_id
report["page_too_big"] = expect_error(
    grpc.StatusCode.INVALID_ARGUMENT, stub.ListBuilds, pb.ListBuildsRequest(page_size=5000),
    metadata=auth)

# --- CancelBuild: a running build stops; a finished one cannot be cancelled.
sleeper = io.BytesIO()
with zipfile.ZipFile(sleeper, "w") as z:
    z.writestr("Dockerfile", f"FROM {REGISTRY}/base/busybox:1\nRUN sleep 300 && echo done\n")
long = stub.CreateBuild(
    pb.CreateBuildRequest(name=f"{name}-cancel", zipped_code=sleeper.getvalue()), metadata=auth
)
wait_for(long.build_id, {pb.BUILD_STATUS_RUNNING} | FINISHED)
# A follower of the running build sees the stream end when it is cancelled.
follower = stub.StreamBuildLogs(
    pb.StreamBuildLogsRequest(build_id=long.build_id, from_start=True), metadata=auth)
cancelled = stub.CancelBuild(pb.CancelBuildRequest(build_id=long.build_id), metadata=auth)
assert cancelled.status in (pb.BUILD_STATUS_RUNNING, pb.BUILD_STATUS_CANCELLED), cancelled
followed = list(follower)
final = wait_for(long.build_id, FINISHED, limit=60)
assert final.status == pb.BUILD_STATUS_CANCELLED, final
report["cancel_again"] = expect_error(
    grpc.StatusCode.FAILED_PRECONDITION, stub.CancelBuild,
    pb.CancelBuildRequest(build_id=long.build_id), metadata=auth)
report["cancel"] = {"build_id": long.build_id, "followed_lines": len(followed)}

# --- Another organization: every build of this one is NOT_FOUND, exactly
# like a build that does not exist.
report["cross_org"] = {
    "get": expect_error(grpc.StatusCode.NOT_FOUND, stub.GetBuild,
                        pb.GetBuildRequest(build_id=created.build_id), metadata=other),
    "logs": expect_error(grpc.StatusCode.NOT_FOUND, stub.StreamBuildLogs,
                         pb.StreamBuildLogsRequest(build_id=created.build_id, from_start=True),
                         metadata=other),
    "cancel": expect_error(grpc.StatusCode.NOT_FOUND, stub.CancelBuild,
                           pb.CancelBuildRequest(build_id=long.build_id), metadata=other),
    "missing": expect_error(grpc.StatusCode.NOT_FOUND, stub.GetBuild,
                            pb.GetBuildRequest(build_id="no-such-build"), metadata=auth),
    "context": expect_error(grpc.StatusCode.INVALID_ARGUMENT, stub.CreateBuild,
                            pb.CreateBuildRequest(name="x", context_id=uploaded.context_id),
                            metadata=other),
}
assert not stub.ListBuilds(pb.ListBuildsRequest(name=name), metadata=other).builds
assert "GRPC_SECRET" not in stub.GetBuildSecrets(pb.GetBuildSecretsRequest(), metadata=other).build_secrets

# --- Bad input: the REST API's validation and messages.
report["bad_name"] = expect_error(
    grpc.StatusCode.INVALID_ARGUMENT, stub.CreateBuild,
    pb.CreateBuildRequest(name="Not A Name", zipped_code=hello.getvalue()), metadata=auth)
report["two_contexts"] = expect_error(
    grpc.StatusCode.INVALID_ARGUMENT, stub.CreateBuild,
    pb.CreateBuildRequest(name="two", zipped_code=hello.getvalue(), context_id=uploaded.context_id),
    metadata=auth)
report["bad_tag"] = expect_error(
    grpc.StatusCode.INVALID_ARGUMENT, stub.CreateBuild,
    pb.CreateBuildRequest(name="tags", zipped_code=hello.getvalue(), tags=["no spaces"]),
    metadata=auth)

# Sizes: a 5 MiB zip is over the inline limit (the REST rule and message);
# a 9 MiB message is over the server's message limit, said by gRPC itself
# (tonic answers OUT_OF_RANGE, naming the size and the limit).
report["zip_too_big"] = expect_error(
    grpc.StatusCode.INVALID_ARGUMENT, stub.CreateBuild,
    pb.CreateBuildRequest(name="big", zipped_code=b"PK\x03\x04" + os.urandom(5 << 20)),
    metadata=auth)
report["message_too_big"] = expect_error(
    grpc.StatusCode.OUT_OF_RANGE, stub.CreateBuild,
    pb.CreateBuildRequest(name="huge", zipped_code=os.urandom(9 << 20)), metadata=auth)

# --- The standard services generic tools use.
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (  # noqa: E402
    ProtoReflectionDescriptorDatabase,
)

health = health_pb2_grpc.HealthStub(channel).Check(
    health_pb2.HealthCheckRequest(service="kiln.build.v1.BuildService"))
assert health.status == health_pb2.HealthCheckResponse.SERVING, health
reflected = ProtoReflectionDescriptorDatabase(channel)
services = sorted(reflected.get_services())
assert "kiln.build.v1.BuildService" in services, services
methods = [m.name for m in reflected.FindFileContainingSymbol(
    "kiln.build.v1.BuildService").service[0].method]
report["reflection"] = {"services": services, "methods": methods}

print(json.dumps(report))
