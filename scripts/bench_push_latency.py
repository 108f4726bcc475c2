#!/usr/bin/env python3
"""Issue 14's figures, measured against a real `kiln serve` (release build
recommended): how fast a signed push delivery is answered, how long from
its arrival until the build is RUNNING on an idle worker, and how long from
the build's `finishTime` until a subscribed receiver has `build.succeeded`,
both as Kiln's own signed delivery and as the `http-post` notifier plugin's
templated POST (contract 0.2.0's notifier world).

    cargo build --release -p kiln
    python3 scripts/bench_push_latency.py target/release/kiln [ROUNDS]

Needs what `scripts/setup.sh` starts (Docker Engine, the registry on
127.0.0.1:5000 with its busybox base) and `git`. Everything else is made
here and removed after: a repository served by `git daemon` on loopback, a
clone that commits and `git push`es to it, a data directory, a server
allowed to reach loopback (for the repository and the receiver). Each
round pushes a commit, delivers GitHub's push event signed with the
project's secret, and waits for the build and its webhook. Prints a table.
"""
import hashlib
import hmac
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

kiln = os.path.abspath(sys.argv[1])
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 20
work = tempfile.mkdtemp(prefix="kiln-push-bench-")


def git(cwd, *args):
    return subprocess.run(
        ["git", "-c", "user.name=bench", "-c", "user.email=bench@kiln.invalid", *args],
        cwd=cwd, check=True, capture_output=True, text=True,
    ).stdout.strip()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


served = os.path.join(work, "root", "app")
os.makedirs(served)
git(served, "init", "-q", "-b", "main")
with open(os.path.join(served, "Dockerfile"), "w") as f:
    f.write("FROM 127.0.0.1:5000/base/busybox:1\nCOPY message.txt /message.txt\nRUN cat /message.txt\n")
with open(os.path.join(served, "message.txt"), "w") as f:
    f.write("first\n")
git(served, "add", "-A")
git(served, "commit", "-q", "-m", "first")
git(served, "config", "receive.denyCurrentBranch", "updateInstead")
clone = os.path.join(work, "clone")
git(work, "clone", "-q", served, clone)
git_port = free_port()
daemon = subprocess.Popen(
    ["git", "daemon", "--reuseaddr", "--listen=127.0.0.1", f"--port={git_port}",
     f"--base-path={work}/root", "--export-all", "--enable=upload-pack", f"{work}/root"],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
)
received, notified = {}, {}

class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        at = time.time()
        event = json.loads(self.rfile.read(int(self.headers["content-length"])))
        if self.path == "/notify":
            notified[event["buildId"]] = at
        else:
            received[event["data"]["buildId"]] = at
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass

receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
threading.Thread(target=receiver.serve_forever, daemon=True).start()
receiver_port = receiver.server_address[1]
config = os.path.join(work, "kiln.toml")
with open(config, "w") as f:
    f.write('[webhooks]\nallowed_hosts = ["127.0.0.1"]\n')
    f.write(f'[plugins.http-post]\nhttp = ["127.0.0.1:{receiver_port}"]\n')
data = os.path.join(work, "data")
serve = subprocess.Popen(
    [kiln, "serve", "--listen", "127.0.0.1:0", "--data-dir", data, "--registry", "127.0.0.1:5000",
     "--config", config, "--allow-private-network", "127.0.0.0/8"],
    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
)
try:
    server = None
    for line in serve.stdout:
        if line.startswith("kiln listening on "):
            server = line.split()[3]
            break
    assert server, "kiln serve did not start"
    threading.Thread(target=lambda: [None for _ in serve.stdout], daemon=True).start()
    token = open(os.path.join(data, "admin-token")).read().strip()

    def call(method, path, body=None):
        req = urllib.request.Request(
            server + path, data=json.dumps(body).encode() if body is not None else None, method=method)
        req.add_header("authorization", "Bearer " + token)
        if body is not None:
            req.add_header("content-type", "application/json")
        with urllib.request.urlopen(req) as r:
            return json.loads(r.read() or b"null")

    call("POST", "/v1/webhooks", {"url": f"http://127.0.0.1:{receiver_port}/kiln",
                                  "events": ["build.succeeded"]})
    call("POST", "/v1/webhooks", {"notifier": {"plugin": "http-post", "options": {
        "url": f"http://127.0.0.1:{receiver_port}/notify",
        "template": '{"buildId": "{{buildId}}", "text": "{{name}} #{{number}} {{status}}"}'}},
        "events": ["build.succeeded"]})
    project = call("POST", "/v1/projects", {"name": "push-bench", "tags": ["{sha7}"],
                                            "gitSource": {"url": f"git://127.0.0.1:{git_port}/app"}})
    hook, secret = project["webhookUrl"], project["webhookSecret"]

    answered, to_running, delivered, notifier = [], [], [], []
    for i in range(rounds):
        with open(os.path.join(clone, "message.txt"), "w") as f:
            f.write(f"round {i} {time.time()}\n")
        git(clone, "add", "-A")
        git(clone, "commit", "-q", "-m", f"round {i}")
        after = git(clone, "rev-parse", "HEAD")
        git(clone, "push", "-q", "origin", "HEAD:refs/heads/main")
        payload = json.dumps({"ref": "refs/heads/main", "before": "0" * 40, "after": after,
                              "pusher": {"name": "bench"},
                              "repository": {"default_branch": "main"}}).encode()
        req = urllib.request.Request(server + hook, data=payload, method="POST")
        req.add_header("content-type", "application/json")
        req.add_header("x-github-event", "push")
        req.add_header("x-github-delivery", f"bench-{i}")
        req.add_header("x-hub-signature-256",
                       "sha256=" + hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest())
        sent = time.perf_counter()
        with urllib.request.urlopen(req) as r:
            build_id = json.loads(r.read())["buildIds"][0]
        answered.append((time.perf_counter() - sent) * 1000)
        while call("GET", f"/v1/builds/{build_id}")["status"] == "BUILD_STATUS_PENDING":
            pass
        to_running.append((time.perf_counter() - sent) * 1000)
        while True:
            build = call("GET", f"/v1/builds/{build_id}")
            if build["status"] not in ("BUILD_STATUS_PENDING", "BUILD_STATUS_RUNNING"):
                break
            time.sleep(0.05)
        assert build["status"] == "BUILD_STATUS_SUCCEEDED", build
        for _ in range(500):
            if build_id in received and build_id in notified:
                break
            time.sleep(0.01)
        finished = datetime.fromisoformat(build["finishTime"].replace("Z", "+00:00")).timestamp()
        delivered.append((received[build_id] - finished) * 1000)
        notifier.append((notified[build_id] - finished) * 1000)

    def row(label, values):
        values = sorted(values)
        p90 = values[max(0, int(len(values) * 0.9) - 1)]
        print(f"| {label} | {statistics.median(values):.1f} | {p90:.1f} | {values[-1]:.1f} |")

    print(f"| {rounds} pushes | median ms | p90 ms | max ms |")
    print("|---|---|---|---|")
    row("push delivery answered (202)", answered)
    row("delivery sent -> build RUNNING (idle worker)", to_running)
    row("build finishTime -> build.succeeded at the receiver", delivered)
    row("build finishTime -> http-post notifier's POST at the receiver", notifier)
finally:
    serve.terminate()
    daemon.terminate()
    serve.wait()
    daemon.wait()
    shutil.rmtree(work, ignore_errors=True)
