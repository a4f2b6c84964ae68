"""Runs a real koi-net 2.1.2 full node for the integration tests: the network's coordinator, or a GitHub sensor.

    koi_node.py coordinator --dir DIR --port PORT
    koi_node.py sensor --dir DIR --port PORT --coordinator-url URL --coordinator-rid RID [--initial FILE] [--spool DIR]

Both bind 127.0.0.1 only, keep their identity in DIR (priv_key.pem, config.yaml, RID cache) so a restart with the
same DIR is the same node, and write DIR/ready.json ({"rid", "base_url"}) once serving. PRIV_KEY_PASSWORD must be set.

The coordinator is koi-net's FullNode plus one handler that does what a coordinator does: when a node introduces
itself (NEW of its own profile), send it our profile and propose a WEBHOOK edge from it to us for node and edge
RIDs. The sensor is a FullNode providing orn:github.event and orn:github.repo; it emits bundles from the
--initial file once started, and from JSON files dropped into the --spool directory (write `x.tmp`, rename to
`x.json`; each file holds an item or a list of items `{"rid": ..., "contents": {...}}` or `{"rid": ..., "forget":
true}`; handled files are renamed `*.done`).
"""

import argparse
import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from rid_lib import RID
from rid_lib.ext import Bundle
from rid_lib.types import GithubEvent, GithubRepo, KoiNetEdge, KoiNetNode

from koi_net.components.cache import Cache
from koi_net.components.event_queue import EventQueue
from koi_net.components.identity import NodeIdentity
from koi_net.components.interfaces import HandlerType, KnowledgeHandler
from koi_net.components.kobj_queue import KobjQueue
from koi_net.config.full_node import FullNodeConfig
from koi_net.core import FullNode
from koi_net.protocol.edge import EdgeType, generate_edge_bundle
from koi_net.protocol.event import Event, EventType
from koi_net.protocol.knowledge_object import KnowledgeObject


@dataclass
class CoordinatorHandshakeHandler(KnowledgeHandler):
    """On a node's NEW self-introduction: share our profile with it and propose a WEBHOOK edge it -> us."""

    identity: NodeIdentity
    cache: Cache
    event_queue: EventQueue
    kobj_queue: KobjQueue

    handler_type = HandlerType.Network
    rid_types = (KoiNetNode,)

    def handle(self, kobj: KnowledgeObject):
        if kobj.event_type != EventType.NEW or kobj.rid == self.identity.rid or kobj.source is None:
            return
        own = self.cache.read(self.identity.rid)
        if own is not None:
            self.event_queue.push(Event.from_bundle(EventType.NEW, own), kobj.rid)
        edge = generate_edge_bundle(
            source=kobj.rid,
            target=self.identity.rid,
            edge_type=EdgeType.WEBHOOK,
            rid_types=[KoiNetNode, KoiNetEdge],
        )
        self.kobj_queue.push(rid=edge.rid, event_type=EventType.FORGET)
        self.kobj_queue.push(bundle=edge)


class SensorNode(FullNode):
    config_schema = FullNodeConfig


class CoordinatorNode(FullNode):
    config_schema = FullNodeConfig
    coordinator_handshake_handler: CoordinatorHandshakeHandler = CoordinatorHandshakeHandler


def write_config(args, root: Path) -> None:
    node_rid_types = ["orn:koi-net.node", "orn:koi-net.edge"]
    github_types = ["orn:github.event", "orn:github.repo"]
    if args.role == "coordinator":
        provides = {"event": node_rid_types, "state": node_rid_types}
        interest = node_rid_types
        first_contact = {}
    else:
        provides = {"event": github_types, "state": github_types}
        interest = node_rid_types
        first_contact = {"rid": args.coordinator_rid, "url": args.coordinator_url}
    config = {
        "server": {"host": "127.0.0.1", "port": args.port, "path": "/koi-net"},
        "koi_net": {
            "node_name": args.role if args.role == "coordinator" else "github_sensor",
            "node_profile": {"node_type": "FULL", "provides": provides},
            "rid_types_of_interest": interest,
            "cache_directory_path": str(root / ".rid_cache"),
            "private_key_pem_path": str(root / "priv_key.pem"),
            "first_contact": first_contact,
        },
    }
    path = root / "config.yaml"
    if path.exists():
        # Keep what the node saved (its RID), refresh ports and contacts.
        return
    path.write_text(json.dumps(config, indent=2))


def emit(node, items) -> None:
    for item in items if isinstance(items, list) else [items]:
        rid = RID.from_string(item["rid"])
        if item.get("forget"):
            node.kobj_queue.push(rid=rid, event_type=EventType.FORGET)
        else:
            node.kobj_queue.push(bundle=Bundle.generate(rid=rid, contents=item["contents"]))


def watch_spool(node, spool: Path, stop: threading.Event) -> None:
    spool.mkdir(parents=True, exist_ok=True)
    while not stop.wait(0.2):
        for path in sorted(spool.glob("*.json")):
            try:
                emit(node, json.loads(path.read_text()))
            except Exception as e:  # a bad test file must not kill the sensor
                print(f"spool: {path}: {e}", file=sys.stderr, flush=True)
            path.rename(path.with_suffix(".done"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["coordinator", "sensor"])
    parser.add_argument("--dir", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--coordinator-url")
    parser.add_argument("--coordinator-rid")
    parser.add_argument("--initial")
    parser.add_argument("--spool")
    args = parser.parse_args()

    root = Path(args.dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    os.chdir(root)
    write_config(args, root)
    (root / "ready.json").unlink(missing_ok=True)

    node_class = CoordinatorNode if args.role == "coordinator" else SensorNode
    node = node_class(root_dir=root)
    node.start()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    if args.initial:
        emit(node, json.loads(Path(args.initial).read_text()))
    if args.spool:
        threading.Thread(target=watch_spool, args=(node, Path(args.spool), stop), daemon=True).start()

    # koi-net's port manager moves to the next free port if ours is taken: report the URL actually served.
    ready = {"rid": str(node.identity.rid), "base_url": node.config.koi_net.node_profile.base_url}
    tmp = root / "ready.json.tmp"
    tmp.write_text(json.dumps(ready))
    tmp.rename(root / "ready.json")
    print(f"ready {json.dumps(ready)}", flush=True)
    while not stop.wait(0.5):
        pass
    node.stop()


if __name__ == "__main__":
    main()
