"""The KOI-net coordinator, on koi-net 2.1.2, for the integration tests.

    coordinator.py --port PORT --dir DIR

koi-net 2.1.2 ships no coordinator of its own; BlockScience's coordinator node is koi-net's FullNode with a
coordinator config and one extra knowledge handler. This is the same construction, written against the installed
library's component API:

  * FullNode providing (event and state) orn:koi-net.node and orn:koi-net.edge, interested in both;
  * a Network-stage handler for orn:koi-net.node: when a node introduces itself (a NEW event of its own profile,
    received from that node), the coordinator sends it the coordinator's own profile (NEW) and proposes the edge
    `node -> coordinator`, WEBHOOK, rid_types [orn:koi-net.node, orn:koi-net.edge] (a FORGET of that edge RID first,
    then the NEW bundle, through its own pipeline, so the proposal reaches the node as an event).

Everything else (signature checks, edge approval, poll buffers, fetch endpoints) is koi-net's own code.
Binds 127.0.0.1 only; base_url http://127.0.0.1:PORT/koi-net. Writes DIR/ready.json and DIR/rid.txt when serving
(see koi_harness.py) and prints its RID on stdout. SIGTERM/SIGINT stop it.
"""

import argparse
import sys
from dataclasses import dataclass

from rid_lib.types import KoiNetEdge, KoiNetNode

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

import koi_harness

NODE_TYPES = ["orn:koi-net.node", "orn:koi-net.edge"]


@dataclass
class CoordinatorHandshake(KnowledgeHandler):
    """A node announcing itself NEW gets our profile and a proposed WEBHOOK edge `it -> us` for node/edge RIDs."""

    identity: NodeIdentity
    cache: Cache
    event_queue: EventQueue
    kobj_queue: KobjQueue

    handler_type = HandlerType.Network
    rid_types = (KoiNetNode,)

    def handle(self, kobj: KnowledgeObject):
        # Only a node's own introduction (the handshake's NEW, sent by that node itself).
        if kobj.event_type != EventType.NEW or kobj.source != kobj.rid:
            return
        self.log.info(f"Handshake from {kobj.rid}: sharing our profile, proposing an edge")
        own = self.cache.read(self.identity.rid)
        self.event_queue.push(event=Event.from_bundle(EventType.NEW, own), target=kobj.rid)
        edge = generate_edge_bundle(
            source=kobj.rid,
            target=self.identity.rid,
            edge_type=EdgeType.WEBHOOK,
            rid_types=[KoiNetNode, KoiNetEdge],
        )
        self.kobj_queue.push(rid=edge.rid, event_type=EventType.FORGET)
        self.kobj_queue.push(bundle=edge)


class CoordinatorNode(FullNode):
    config_schema = FullNodeConfig
    coordinator_handshake: CoordinatorHandshake = CoordinatorHandshake


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True, help="working dir: config.yaml, priv_key.pem, .rid_cache, logs")
    parser.add_argument("--name", default="coordinator", help="node name (the RID's <name>)")
    args = parser.parse_args()

    root = koi_harness.prepare_dir(args.dir)
    koi_harness.write_config(
        root,
        name=args.name,
        port=args.port,
        provides={"event": NODE_TYPES, "state": NODE_TYPES},
        interest=NODE_TYPES,
        first_contact=None,
    )
    stop = koi_harness.stop_event()
    node = CoordinatorNode(root_dir=root)
    koi_harness.start_node(node, "coordinator")
    koi_harness.announce_ready(root, node, "coordinator")
    return koi_harness.serve(node, "coordinator", stop)


if __name__ == "__main__":
    sys.exit(main())
