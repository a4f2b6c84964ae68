"""Shared plumbing for coordinator.py and sensor.py: node directory, config.yaml, readiness files, shutdown.

Only glue lives here; the nodes themselves are koi-net 2.1.2's own FullNode and components.

Readiness convention (what tests/support/pynet.rs waits for), in the node's --dir:
  ready.json  {"rid", "base_url", "port", "pid", "role"}   written atomically once the node serves (and, for the
                                                            sensor, has joined the coordinator)
  rid.txt     the node RID, written atomically right after ready.json (the last thing a start does)
Both are deleted at the start of every run, so a stale file from an earlier run never reads as "ready".
"""

import json
import os
import signal
import sys
import threading
from pathlib import Path

DEFAULT_PASSWORD = "koi-harness-password"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def prepare_dir(path: str) -> Path:
    """Creates the node directory, makes it the working directory, clears readiness files of an earlier run."""
    root = Path(path).resolve()
    root.mkdir(parents=True, exist_ok=True)
    os.chdir(root)
    for name in ("ready.json", "rid.txt", "ready.json.tmp", "rid.txt.tmp"):
        (root / name).unlink(missing_ok=True)
    # koi-net reads the key password from the environment (EnvConfig.priv_key_password); the Rust harness always
    # sets it. The default only serves someone running a script by hand.
    os.environ.setdefault("PRIV_KEY_PASSWORD", DEFAULT_PASSWORD)
    return root


def write_config(root: Path, *, name: str, port: int, provides: dict, interest: list,
                 first_contact: dict | None) -> None:
    """Writes config.yaml as koi-net's FullNodeConfig reads it.

    On a restart the file already holds what koi-net itself saved there (node_rid, node_profile.public_key, derived
    base_url): those are kept, so the same directory is the same node. The fields the harness owns (server
    address, name, provides, interest, first contact) are (re)written each run.
    """
    from ruamel.yaml import YAML  # koi-net's own YAML library (a dependency of koi-net)

    yaml = YAML()
    path = root / "config.yaml"
    data = {}
    if path.exists():
        with open(path, encoding="utf-8") as f:
            data = yaml.load(f) or {}
    data = json.loads(json.dumps(data))  # ruamel's CommentedMap -> plain dicts
    koi = data.setdefault("koi_net", {})
    data["server"] = {"host": "127.0.0.1", "port": port, "path": "/koi-net"}
    koi["node_name"] = name
    profile = koi.setdefault("node_profile", {})
    profile["node_type"] = "FULL"
    profile["provides"] = provides
    # None -> FullNodeConfig derives it from `server` (http://127.0.0.1:<port>/koi-net).
    profile["base_url"] = None
    koi["rid_types_of_interest"] = interest
    koi["cache_directory_path"] = ".rid_cache"
    koi["private_key_pem_path"] = "priv_key.pem"
    koi["first_contact"] = first_contact or {"rid": None, "url": None}
    with open(path, "w", encoding="utf-8") as f:
        yaml.dump(data, f)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.rename(path)


def announce_ready(root: Path, node, role: str, **extra) -> None:
    """Writes ready.json then rid.txt (atomically each) and prints the RID on stdout."""
    base_url = node.config.koi_net.node_profile.base_url
    info = {
        "rid": str(node.identity.rid),
        "base_url": base_url,
        "port": node.config.server.port,
        "pid": os.getpid(),
        "role": role,
        **extra,
    }
    _atomic_write(root / "ready.json", json.dumps(info))
    _atomic_write(root / "rid.txt", str(node.identity.rid) + "\n")
    print(str(node.identity.rid), flush=True)
    log(f"{role}: ready {json.dumps(info)}")


def stop_event() -> threading.Event:
    """An event set by SIGTERM or SIGINT."""
    stop = threading.Event()

    def handler(signum, _frame):
        log(f"received signal {signum}, stopping")
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def start_node(node, role: str) -> None:
    """node.start() (blocks until koi-net's lifecycle has started every component). koi-net reports a failed
    start only in its log and returns normally, so check its state and exit 3 when it is not RUNNING."""
    from koi_net.infra.lifecycle import NodeState

    node.start()
    if node.get_state() != NodeState.RUNNING:
        log(f"{role}: FAILED: koi-net did not start (state {node.get_state()}); see the log above")
        sys.exit(3)


def running(node) -> bool:
    """koi-net stops a node by itself when a component fails (it logs the traceback)."""
    from koi_net.infra.lifecycle import NodeState

    return node.get_state() == NodeState.RUNNING


def serve(node, role: str, stop: threading.Event) -> int:
    """Runs until SIGTERM/SIGINT (exit 0) or until koi-net stops the node by itself (exit 3)."""
    while not stop.wait(0.5):
        if not running(node):
            log(f"{role}: FAILED: koi-net stopped the node (state {node.get_state()}); see the log above")
            return 3
    shutdown(node, role)
    return 0


def shutdown(node, role: str) -> None:
    """Stops the node's components (koi-net flushes pending webhook buffers on stop), bounded by a watchdog."""
    watchdog = threading.Timer(10.0, lambda: (log(f"{role}: stop took over 10 s, exiting"), os._exit(3)))
    watchdog.daemon = True
    watchdog.start()
    try:
        node.stop()
    finally:
        watchdog.cancel()
    log(f"{role}: stopped")
