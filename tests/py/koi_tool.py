"""Key and envelope operations done by the real koi-net 2.1.2 library, for the Rust interop tests.

    koi_tool.py genkey  --out PEM      write a new key exactly as a koi-net node writes its priv_key.pem
    koi_tool.py loadkey --in PEM       load a key file (e.g. one the Rust node wrote) with koi-net's loader
    koi_tool.py sign    --key PEM --source RID --target RID --payload JSON
                                       a signed envelope, as koi-net's client puts it on the wire
    koi_tool.py verify  --public-key B64 --body FILE --target RID
                                       check a received envelope body as a koi-net node's server does

genkey/loadkey print {"public_key": <base64 DER, the profile's public_key>, "rid_hash": <hex sha256 of it>}.
The key password comes from PRIV_KEY_PASSWORD, as for koi-net nodes. Results are one JSON line on stdout;
failures exit 1 with the reason on stderr (verify: `invalid_key: ...`, `invalid_signature: ...`,
`invalid_target: ...`, or `bad_body: ...`, named after koi-net's protocol errors).
"""

import argparse
import json
import os
import sys
import typing

import structlog
from rid_lib.ext.utils import sha256_hash
from rid_lib.types import KoiNetNode

from koi_net.protocol.api.models import RequestModels, ResponseModels
from koi_net.protocol.envelope import SignedEnvelope, UnsignedEnvelope
from koi_net.protocol.model_map import API_MODEL_MAP
from koi_net.protocol.secure import PrivateKey, PublicKey


# koi-net logs through structlog, whose default printer writes to stdout: keep stdout for the JSON result.
structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))


class Failure(Exception):
    pass


def password() -> str:
    value = os.environ.get("PRIV_KEY_PASSWORD")
    if value is None:
        raise Failure("PRIV_KEY_PASSWORD is not set")
    return value


def key_info(key: PrivateKey) -> dict:
    public = key.public_key().to_der()  # koi-net's base64 DER string, as in node profiles
    return {"public_key": public, "rid_hash": sha256_hash(public)}


def load_key(path: str) -> PrivateKey:
    with open(path, encoding="utf-8") as f:
        pem = f.read()
    try:
        return PrivateKey.from_pem(pem, password())  # what koi-net's SecureManager.load_priv_key does
    except (ValueError, TypeError) as e:
        raise Failure(f"cannot load {path}: {type(e).__name__}: {e}")


def payload_model(payload_type: str):
    """The koi-net payload model whose `type` literal is `payload_type` (requests first, then responses)."""
    for union in (RequestModels, ResponseModels):
        for model in typing.get_args(getattr(union, "__value__", union)):
            if model.model_fields["type"].default == payload_type:
                return model
    raise Failure(f"unknown payload type {payload_type!r}")


def envelope_model(payload_type: str):
    """The SignedEnvelope[...] model a koi-net server validates a request body with (its API_MODEL_MAP), or the
    generic parametrisation for a response payload."""
    for models in API_MODEL_MAP.values():
        if models.request.model_fields["type"].default == payload_type:
            return models.request_envelope
    return SignedEnvelope[payload_model(payload_type)]


def cmd_sign(args) -> dict | str:
    key = load_key(args.key)
    raw = json.loads(args.payload)
    payload = payload_model(raw.get("type", "")).model_validate(raw)
    # As koi-net's SecureManager.create_envelope + RequestHandler.make_request do it.
    signed = UnsignedEnvelope(
        payload=payload,
        source_node=KoiNetNode.from_string(args.source),
        target_node=KoiNetNode.from_string(args.target),
    ).sign_with(key)
    return signed.model_dump_json(exclude_none=True)


def cmd_verify(args) -> dict:
    with open(args.body, "rb") as f:
        body = f.read()
    try:
        payload_type = json.loads(body)["payload"]["type"]
        envelope = envelope_model(payload_type).model_validate_json(body)
    except Failure:
        raise
    except Exception as e:
        raise Failure(f"bad_body: {type(e).__name__}: {e}")
    # The checks and their order are SecureManager.validate_envelope's, with the sender's profile key given.
    if envelope.source_node.hash != sha256_hash(args.public_key):
        raise Failure("invalid_key: source_node's hash is not the SHA-256 of the public key")
    try:
        envelope.verify_with(PublicKey.from_der(args.public_key))
    except Exception as e:  # cryptography's InvalidSignature carries no message
        raise Failure(f"invalid_signature: {type(e).__name__} {e}".rstrip())
    if str(envelope.target_node) != args.target:
        raise Failure(f"invalid_target: envelope is for {envelope.target_node}, not {args.target}")
    return {"ok": True}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("genkey")
    p.add_argument("--out", required=True)
    p = sub.add_parser("loadkey")
    p.add_argument("--in", dest="path", required=True)
    p = sub.add_parser("sign")
    for name in ("--key", "--source", "--target", "--payload"):
        p.add_argument(name, required=True)
    p = sub.add_parser("verify")
    for name in ("--public-key", "--body", "--target"):
        p.add_argument(name, required=True)
    args = parser.parse_args()

    try:
        if args.cmd == "genkey":
            key = PrivateKey.generate()
            pem = key.to_pem(password())  # as SecureManager.create_priv_key writes priv_key.pem
            with open(args.out, "w", encoding="utf-8") as f:
                f.write(pem)
            out = key_info(key)
        elif args.cmd == "loadkey":
            out = key_info(load_key(args.path))
        elif args.cmd == "sign":
            out = cmd_sign(args)
        else:
            out = cmd_verify(args)
    except Failure as e:
        print(str(e), file=sys.stderr)
        return 1
    print(out if isinstance(out, str) else json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
