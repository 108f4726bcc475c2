"""Verify an image's signature the way `cosign verify --key` does, with an
implementation that is not Kiln's: Python `cryptography` and the registry's
HTTP API, following cosign's documented key-based format.

1. GET the manifest tagged `sha256-<hex>.sig` in the image's repository;
2. each layer of type application/vnd.dev.cosign.simplesigning.v1+json is
   a payload blob, its signature (base64 ASN.1 DER ECDSA) in the
   `dev.cosignproject.cosign/signature` annotation;
3. the signature must verify over the payload's bytes with the public key
   (ECDSA P-256, SHA-256), and the payload must name this repository and
   this manifest digest.

Then the same for its attestations (`cosign verify-attestation --key`):
the DSSE envelopes under `sha256-<hex>.att`, each signature over DSSE's
pre-authentication encoding, each statement's subject this digest.

Usage: verify_cosign_signature.py REGISTRY REPOSITORY DIGEST PUBLIC_KEY_PEM
Prints a JSON report; exits 1 when the signature does not verify.
"""

import base64
import hashlib
import json
import sys
import urllib.error
import urllib.request

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

registry, repository, digest, key_path = sys.argv[1:5]


def get(path, accept=None):
    request = urllib.request.Request(f"http://{registry}/v2/{repository}/{path}")
    if accept:
        request.add_header("Accept", accept)
    with urllib.request.urlopen(request) as answer:
        return answer.read()


with open(key_path, "rb") as f:
    public_key = serialization.load_pem_public_key(f.read())
assert isinstance(public_key.curve, ec.SECP256R1), public_key.curve

tag = digest.replace(":", "-") + ".sig"
manifest = json.loads(get(f"manifests/{tag}", "application/vnd.oci.image.manifest.v1+json"))
report = {"tag": tag, "verified": [], "failed": []}
for layer in manifest["layers"]:
    if layer["mediaType"] != "application/vnd.dev.cosign.simplesigning.v1+json":
        continue
    payload = get(f"blobs/{layer['digest']}")
    assert "sha256:" + hashlib.sha256(payload).hexdigest() == layer["digest"], "blob digest"
    signature = base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"])
    claims = json.loads(payload)
    critical = claims["critical"]
    try:
        public_key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        report["failed"].append("signature does not verify with the key")
        continue
    if critical["type"] != "cosign container image signature":
        report["failed"].append(f"payload type {critical['type']!r}")
    elif critical["image"]["docker-manifest-digest"] != digest:
        report["failed"].append("payload names another digest")
    elif critical["identity"]["docker-reference"] != f"{registry}/{repository}":
        report["failed"].append("payload names another repository")
    else:
        report["verified"].append(layer["digest"])
        # A payload changed by one byte no longer verifies.
        tampered = payload.replace(digest.encode(), digest[:-1].encode() + b"0"
                                   if not digest.endswith("0") else digest[:-1].encode() + b"1")
        try:
            public_key.verify(signature, tampered, ec.ECDSA(hashes.SHA256()))
            report["tampered_verified"] = True
        except InvalidSignature:
            report["tampered_verified"] = False

# The attestations (`cosign attest`'s layout): DSSE envelopes under
# `sha256-<hex>.att`, signed over DSSE's pre-authentication encoding.
def pae(payload_type, payload):
    return b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type.encode(), len(payload), payload)


report["attestations"] = []
att = json.loads(get(f"manifests/{digest.replace(':', '-')}.att",
                     "application/vnd.oci.image.manifest.v1+json"))
for layer in att["layers"]:
    assert layer["mediaType"] == "application/vnd.dsse.envelope.v1+json", layer
    envelope_bytes = get(f"blobs/{layer['digest']}")
    envelope = json.loads(envelope_bytes)
    payload = base64.b64decode(envelope["payload"])
    entry = {"predicateType": layer["annotations"].get("predicateType"),
             "envelope": envelope_bytes.decode()}
    try:
        public_key.verify(base64.b64decode(envelope["signatures"][0]["sig"]),
                          pae(envelope["payloadType"], payload), ec.ECDSA(hashes.SHA256()))
        entry["verified"] = True
    except InvalidSignature:
        entry["verified"] = False
    statement = json.loads(payload)
    entry["statement"] = statement
    entry["subject_matches"] = statement["subject"][0]["digest"]["sha256"] == digest.split(":", 1)[1]
    report["attestations"].append(entry)
    if not (entry["verified"] and entry["subject_matches"]):
        report["failed"].append("an attestation does not verify or names another image")

# OCI 1.1 referrers: the registry's referrers API, or on registries
# without one (a 404) the index under the referrers tag `sha256-<hex>`.
# Each referrer's own manifest must name this image as its subject.
def get_if_present(path, accept):
    try:
        return get(path, accept)
    except urllib.error.HTTPError as error:
        if error.code != 404:
            raise
        return None


index_media = "application/vnd.oci.image.index.v1+json"
referrers = {"manifests": []}
report["referrers_from"] = "none"
for source, path in [("api", f"referrers/{digest}"),
                     ("tag", f"manifests/{digest.replace(':', '-')}")]:
    body = get_if_present(path, index_media)
    if body is not None:
        referrers = json.loads(body)
        report["referrers_from"] = source
        break
report["referrers"] = []
for entry in referrers["manifests"]:
    body = get(f"manifests/{entry['digest']}", entry["mediaType"])
    assert "sha256:" + hashlib.sha256(body).hexdigest() == entry["digest"], "referrer digest"
    subject = json.loads(body).get("subject", {})
    report["referrers"].append({"digest": entry["digest"],
                                "artifactType": entry.get("artifactType"),
                                "subject_matches": subject.get("digest") == digest})

print(json.dumps(report))
sys.exit(0 if report["verified"] and not report["failed"] else 1)
