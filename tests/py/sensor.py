"""A GitHub sensor on koi-net 2.1.2 for the integration tests: emits whatever the test hands it.

    sensor.py --port PORT --dir DIR --coordinator-url URL --coordinator-rid RID [--initial FILE] [--spool DIR]

A koi-net FullNode named `github_sensor`, providing event and state for orn:github.event and orn:github.repo,
interested in orn:koi-net.node, with the coordinator as first contact (as BlockScience's GitHub sensor node is
configured). Items are emitted the way that sensor emits its GitHub data: `Bundle.generate(rid, contents)` pushed
into the node's own knowledge queue, so koi-net's pipeline caches them (state for fetch_* requests) and queues
events for every subscriber (POLL edges: the subscriber's poll buffer; WEBHOOK edges: broadcast).

An item is {"rid": "orn:github.event:owner/repo:id", "contents": {...}} (a NEW, or an UPDATE when the RID is
cached with other contents; identical contents are dropped by koi-net as unchanged) or {"rid": ..., "forget": true}
(a FORGET; koi-net drops it when the RID is not cached). A file holds one item or a list.

An item may set "hash": "legacy" to carry the manifest hash rid-lib up to 3.2.6 computed (as the first generation
of the upstream GitHub sensor did: `json.dumps(contents, sort_keys=True, separators=(",", ":"))`, ASCII-escaped),
or "hash": "<64 hex digits>" for any hash at all. koi-net never re-checks a manifest's hash, so it caches and
serves such a bundle as it is. Every bundle emitted is appended, as koi-net serialises it, to DIR/emitted.ndjson.

  --initial FILE  items emitted right after the sensor has joined the coordinator (skipped when empty)
  --spool DIR     polled every 0.2 s: each `*.json` file there (write `x.tmp`, then rename to `x.json`) is
                  emitted in name order and renamed `*.done` (`*.failed` when it cannot be read; reason on stderr)

Ready (DIR/ready.json, then DIR/rid.txt, RID on stdout) once serving AND joined (see Joiner). Gives up (exit 2)
when not joined within --join-timeout s. The same DIR keeps the same key, RID and cache across restarts (koi-net
then skips the handshake, since the first contact is already known).
"""

import argparse
import hashlib
import json
import socket
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

from rid_lib import RID
from rid_lib.ext import Bundle, Manifest
from rid_lib.types import KoiNetNode

from koi_net.config.full_node import FullNodeConfig
from koi_net.core import FullNode
from koi_net.protocol.edge import EdgeProfile, EdgeStatus
from koi_net.protocol.event import EventType

import koi_harness

GITHUB_TYPES = ["orn:github.event", "orn:github.repo"]
EMITTED = "emitted.ndjson"  # set to DIR/emitted.ndjson in main()


class SensorNode(FullNode):
    config_schema = FullNodeConfig


def legacy_hash(contents: dict) -> str:
    """The manifest hash of rid-lib 3.2.5 (`rid_lib.ext.utils.sha256_hash_json`)."""
    text = json.dumps(contents, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def make_bundle(rid, item) -> Bundle:
    bundle = Bundle.generate(rid=rid, contents=item["contents"])
    wanted = item.get("hash")
    if wanted:
        sha = legacy_hash(item["contents"]) if wanted == "legacy" else wanted
        manifest = Manifest(rid=rid, timestamp=bundle.manifest.timestamp, sha256_hash=sha)
        bundle = Bundle(manifest=manifest, contents=item["contents"])
    return bundle


def emit(node, items) -> int:
    """Pushes items into the node's knowledge queue; returns how many."""
    items = items if isinstance(items, list) else [items]
    for item in items:
        rid = RID.from_string(item["rid"])
        if item.get("forget"):
            node.kobj_queue.push(rid=rid, event_type=EventType.FORGET)
        else:
            bundle = make_bundle(rid, item)
            with open(EMITTED, "a", encoding="utf-8") as out:
                out.write(bundle.model_dump_json() + "\n")
            node.kobj_queue.push(bundle=bundle)
    return len(items)


def watch_spool(node, spool: Path, stop: threading.Event) -> None:
    while not stop.wait(0.2):
        for path in sorted(spool.glob("*.json")):
            try:
                n = emit(node, json.loads(path.read_text(encoding="utf-8")))
                path.rename(path.with_suffix(".done"))
                koi_harness.log(f"sensor: emitted {n} item(s) from {path.name}")
            except Exception as e:  # a bad file must not stop the sensor
                koi_harness.log(f"sensor: spool file {path.name} failed: {type(e).__name__}: {e}")
                path.rename(path.with_suffix(".failed"))


def reachable(url: str) -> bool:
    """A plain TCP connect to the coordinator's port: no koi-net request, so nothing for koi-net's ErrorHandler
    to count (it FORGETs a node, and every edge with it, after 4 failed requests in a row)."""
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname, parsed.port or 80), timeout=1.0):
            return True
    except OSError:
        return False


class Joiner:
    """Decides when the sensor has joined the coordinator, and re-runs koi-net's own handshake when needed.

    Joined = the coordinator lists us among its orn:koi-net.node RIDs (a signed fetch_rids, koi-net's client) and
    our cache holds its profile and an APPROVED edge `sensor -> coordinator` (the edge it proposed in answer to
    our handshake). koi-net handshakes only at start and only when the first contact is not cached yet; a sensor
    restarted after the coordinator forgot it (or after it forgot the coordinator) would stay outside the network
    for good, so when the coordinator answers but does not know us, or we lost its profile, the harness calls
    koi-net's Handshaker again (at most every 3 s).
    """

    def __init__(self, node, coordinator: KoiNetNode, url: str):
        self.node, self.coordinator, self.url = node, coordinator, url
        self.last_handshake = time.monotonic()  # node.start() just handshook, or did not need to

    def handshake(self, why: str) -> None:
        if time.monotonic() - self.last_handshake < 3.0:
            return
        koi_harness.log(f"sensor: handshaking with the coordinator again ({why})")
        self.last_handshake = time.monotonic()
        try:
            self.node.handshaker.handshake_with(self.coordinator)
        except Exception as e:
            koi_harness.log(f"sensor: handshake failed: {type(e).__name__}: {e}")

    def joined(self) -> bool:
        node, me = self.node, self.node.identity.rid
        if not reachable(self.url):
            return False
        if node.cache.read(self.coordinator) is None:
            self.handshake("coordinator profile not in our cache")
            return False
        try:
            payload = node.request_handler.fetch_rids(node=self.coordinator, rid_types=[KoiNetNode])
        except Exception as e:
            koi_harness.log(f"sensor: fetch_rids at the coordinator failed: {type(e).__name__}: {e}")
            self.handshake("the coordinator refused us")
            return False
        if me not in payload.rids:
            self.handshake("the coordinator does not list us")
            return False
        edge_rid = node.graph.get_edge(source=me, target=self.coordinator)
        edge = node.cache.read(edge_rid) if edge_rid else None
        return edge is not None and edge.validate_contents(EdgeProfile).status == EdgeStatus.APPROVED


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True, help="working dir: config.yaml, priv_key.pem, .rid_cache, logs")
    parser.add_argument("--coordinator-url", required=True)
    parser.add_argument("--coordinator-rid", required=True)
    parser.add_argument("--initial", help="JSON file: an item or a list of items to emit once joined")
    parser.add_argument("--spool", help="directory watched for *.json item files (default: DIR/spool)")
    parser.add_argument("--name", default="github_sensor", help="node name (the RID's <name>)")
    parser.add_argument("--join-timeout", type=float, default=60.0)
    args = parser.parse_args()

    root = koi_harness.prepare_dir(args.dir)
    global EMITTED
    EMITTED = str(root / "emitted.ndjson")
    spool = Path(args.spool).resolve() if args.spool else root / "spool"
    spool.mkdir(parents=True, exist_ok=True)
    initial = json.loads(Path(args.initial).read_text(encoding="utf-8")) if args.initial else []
    koi_harness.write_config(
        root,
        name=args.name,
        port=args.port,
        provides={"event": GITHUB_TYPES, "state": GITHUB_TYPES},
        interest=["orn:koi-net.node"],
        first_contact={"rid": args.coordinator_rid, "url": args.coordinator_url},
    )
    stop = koi_harness.stop_event()
    node = SensorNode(root_dir=root)
    koi_harness.start_node(node, "sensor")  # serves, then (first run only) handshakes with the coordinator

    coordinator = KoiNetNode.from_string(args.coordinator_rid)
    joiner = Joiner(node, coordinator, args.coordinator_url)
    started = time.monotonic()
    while not joiner.joined():
        if stop.wait(0.25):
            koi_harness.shutdown(node, "sensor")
            return 0
        if not koi_harness.running(node):
            koi_harness.log("sensor: FAILED: koi-net stopped the node while joining; see the log above")
            return 3
        if time.monotonic() - started > args.join_timeout:
            koi_harness.log(f"sensor: FAILED: not joined to {coordinator} within {args.join_timeout} s")
            koi_harness.shutdown(node, "sensor")
            return 2
    join_seconds = round(time.monotonic() - started, 2)
    koi_harness.log(f"sensor: joined the coordinator in {join_seconds} s")

    if initial:
        koi_harness.log(f"sensor: emitted {emit(node, initial)} initial item(s)")
        node.kobj_queue.wait()  # cached (and fetchable) before we report ready
    threading.Thread(target=watch_spool, args=(node, spool, stop), daemon=True, name="spool").start()

    koi_harness.announce_ready(root, node, "sensor", joined_in_s=join_seconds, spool=str(spool))
    return koi_harness.serve(node, "sensor", stop)


if __name__ == "__main__":
    sys.exit(main())
