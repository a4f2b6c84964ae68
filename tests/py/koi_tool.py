"""Key and envelope operations done by the real koi-net 2.1.2 library, for the Rust interop tests.

    koi_tool.py genkey  --out PEM                 write a key as a koi-net node writes priv_key.pem
    koi_tool.py loadkey --in PEM                  load a key (e.g. written by the Rust node)
    koi_tool.py sign    --key PEM --source RID --target RID --payload JSON
    koi_tool.py verify  --public-key B64 --body FILE --target RID

The key password comes from PRIV_KEY_PASSWORD, as for koi-net nodes. Results are JSON on stdout; failures exit 1
with the reason on stderr.
"""

import argparse
import hashlib
import json
import os
import sys
import typing

from pydantic import TypeAdapter
from rid_lib.types import KoiNetNode

from koi_net.protocol.api.models import RequestModels, ResponseModels
from koi_net.protocol.envelope import SignedEnvelope, UnsignedEnvelope
from koi_net.protocol.secure import PrivateKey, PublicKey


def password() -> str:
    try:
        return os.environ["PRIV_KEY_PASSWORD"]
    except KeyError:
        sys.exit("PRIV_KEY_PASSWORD is not set")


def key_info(key: PrivateKey) -> dict:
    public = key.public_key().to_der()
    return {"public_key": public, "rid_hash": hashlib.sha256(public.encode()).hexdigest()}


def payload_model(payload_type: str):
    """The koi-net payload model whose `type` literal is `payload_type`."""
    for union in (RequestModels, ResponseModels):
        for model in typing.get_args(getattr(union, "__value__", union)):
            if model.model_fields["type"].default == payload_type:
                return model
    sys.exit(f"unknown payload type {payload_type!r}")


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("genkey"); p.add_argument("--out", required=True)
    p = sub.add_parser("loadkey"); p.add_argument("--in", dest="path", required=True)
    p = sub.add_parser("sign")
    for name in ("--key", "--source", "--target", "--payload"):
        p.add_argument(name, required=True)
    p = sub.add_parser("verify")
    for name in ("--public-key", "--body", "--target"):
        p.add_argument(name, required=True)
    args = parser.parse_args()

    if args.cmd == "genkey":
        key = PrivateKey.generate()
        with open(args.out, "w") as f:
            f.write(key.to_pem(password()))
        print(json.dumps(key_info(key)))
    elif args.cmd == "loadkey":
        with open(args.path) as f:
            key = PrivateKey.from_pem(f.read(), password())
        print(json.dumps(key_info(key)))
    elif args.cmd == "sign":
        with open(args.key) as f:
            key = PrivateKey.from_pem(f.read(), password())
        raw = json.loads(args.payload)
        model = payload_model(raw["type"])
        payload = TypeAdapter(model).validate_python(raw)
        envelope = UnsignedEnvelope[model](
            payload=payload,
            source_node=KoiNetNode.from_string(args.source),
            target_node=KoiNetNode.from_string(args.target),
        ).sign_with(key)
        print(envelope.model_dump_json(exclude_none=True))
    elif args.cmd == "verify":
        with open(args.body, "rb") as f:
            body = f.read()
        model = payload_model(json.loads(body)["payload"]["type"])
        envelope = SignedEnvelope[model].model_validate_json(body)
        if str(envelope.target_node) != args.target:
            sys.exit(f"invalid_target: envelope is for {envelope.target_node}")
        public = PublicKey.from_der(args.public_key)
        if envelope.source_node != public.to_node_rid(envelope.source_node.name):
            sys.exit("invalid_key: source_node hash does not match the public key")
        try:
            envelope.verify_with(public)
        except Exception as e:  # cryptography's InvalidSignature carries no message
            sys.exit(f"invalid_signature: {type(e).__name__} {e}")
        print(json.dumps({"ok": True}))


if __name__ == "__main__":
    main()
