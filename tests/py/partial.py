"""The reference partial node for side-by-side benchmarks: koi-net 2.1.2's own PartialNode, interested in GitHub
events, with the coordinator as first contact. It indexes nothing; it only caches what koi-net's pipeline caches.

    partial.py --dir DIR --coordinator-url URL --coordinator-rid RID [--interval S] [--expect N] [--timeout S]

Progress: DIR/progress.json is rewritten every 0.1 s with {"events": <orn:github.event RIDs cached>, "elapsed_s"}.
koi-net's SyncManager catches up (fetch_manifests) only when the node starts and only with providers it already
knows, so on a first start a partial node receives only events emitted after its POLL edge exists. To have it catch
up as its users would, this script restarts the node (same directory: same key, graph and cache) each time it has
learnt a new event provider, until it holds --expect events or --timeout passes. Exit 0 when it got them all, 2 on
timeout.
"""

import argparse
import json
import sys
import time
from pathlib import Path

from koi_net.config.partial_node import PartialNodeConfig
from koi_net.core import PartialNode

import koi_harness

GITHUB_EVENT = "orn:github.event"


class ReferencePartialNode(PartialNode):
    config_schema = PartialNodeConfig


def write_config(root: Path, *, name: str, interval: int, coordinator_rid: str, coordinator_url: str) -> None:
    from ruamel.yaml import YAML

    yaml = YAML()
    path = root / "config.yaml"
    data = {}
    if path.exists():
        with open(path, encoding="utf-8") as f:
            data = json.loads(json.dumps(yaml.load(f) or {}))
    koi = data.setdefault("koi_net", {})
    koi["node_name"] = name
    profile = koi.setdefault("node_profile", {})
    profile["node_type"] = "PARTIAL"
    profile["provides"] = {"event": [], "state": []}
    koi["rid_types_of_interest"] = ["orn:koi-net.node", GITHUB_EVENT, "orn:github.repo"]
    koi["cache_directory_path"] = ".rid_cache"
    koi["private_key_pem_path"] = "priv_key.pem"
    koi["first_contact"] = {"rid": coordinator_rid, "url": coordinator_url}
    data["poller"] = {"polling_interval": interval}
    with open(path, "w", encoding="utf-8") as f:
        yaml.dump(data, f)


def cached_events(cache_dir: Path) -> int:
    from rid_lib.ext.utils import b64_decode  # the cache's own file naming

    if not cache_dir.exists():
        return 0
    n = 0
    for name in cache_dir.iterdir():
        try:
            if b64_decode(name.name.split(".")[0]).startswith(GITHUB_EVENT + ":"):
                n += 1
        except Exception:
            pass
    return n


def event_providers(node) -> set:
    """Nodes with an APPROVED edge serving us GitHub events."""
    from koi_net.protocol.edge import EdgeStatus

    github = [t for t in node.config.koi_net.rid_types_of_interest if GITHUB_EVENT in str(t)]
    return {str(rid) for rid in node.graph.get_neighbors(
        direction="in", status=EdgeStatus.APPROVED, allowed_type=github[0])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", required=True)
    parser.add_argument("--coordinator-url", required=True)
    parser.add_argument("--coordinator-rid", required=True)
    parser.add_argument("--interval", type=int, default=5, help="koi-net's poller.polling_interval (s)")
    parser.add_argument("--expect", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--name", default="reference_partial")
    args = parser.parse_args()

    root = koi_harness.prepare_dir(args.dir)
    write_config(root, name=args.name, interval=args.interval,
                 coordinator_rid=args.coordinator_rid, coordinator_url=args.coordinator_url)
    stop = koi_harness.stop_event()
    started = time.monotonic()
    restarts = 0
    while True:
        node = ReferencePartialNode(root_dir=root)
        koi_harness.start_node(node, "partial")
        known = event_providers(node)
        restart = False
        while not stop.wait(0.1):
            events = cached_events(root / ".rid_cache")
            elapsed = round(time.monotonic() - started, 2)
            (root / "progress.json").write_text(json.dumps({"events": events, "elapsed_s": elapsed,
                                                             "restarts": restarts}))
            if args.expect and events >= args.expect:
                (root / "progress.json").write_text(json.dumps({"events": events, "elapsed_s": elapsed,
                                                                 "restarts": restarts, "done": True}))
                koi_harness.log(f"partial: holds {events} events after {elapsed} s ({restarts} restarts)")
                koi_harness.shutdown(node, "partial")
                return 0
            if elapsed > args.timeout:
                koi_harness.log(f"partial: only {events} events after {elapsed} s")
                koi_harness.shutdown(node, "partial")
                return 2
            if event_providers(node) - known:
                restart = True  # a provider learnt: only a restart makes koi-net catch up with it
                break
        koi_harness.shutdown(node, "partial")
        if not restart:
            return 0
        restarts += 1
        koi_harness.log(f"partial: restarting to catch up with a new provider ({restarts})")


if __name__ == "__main__":
    sys.exit(main())
