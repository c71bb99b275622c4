"""A real two-node Ray cluster on this machine, on loopback only: `python -m tests.ray_cluster
ROOT HEAD_HOME` starts `ray.cluster_utils.Cluster` (a head node and a worker node, separate
raylets and object stores, one CPU each), prints one JSON line (its address, each node's
address and temp root), and shuts it down when its stdin closes.

Each node's processes get a temp root of their own (TMPDIR: the actors' homes lie there) and
tests/ray_audit on their PYTHONPATH, which logs any file operation on a path under HEAD_HOME.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

AUDIT = Path(__file__).parent / "ray_audit"


def main(root: Path, head_home: Path) -> None:
    # Ray reads this when it is imported: a node's address is then the loopback one.
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(AUDIT), str(Path(__file__).parent.parent), os.environ.get("PYTHONPATH", "")]
    )
    os.environ["ANIME_AUDIT_FORBID"] = str(head_home)
    os.environ["ANIME_AUDIT_LOG"] = str(root / "audit.log")
    from ray.cluster_utils import Cluster

    nodes = []
    cluster = None
    for name in ("node-a", "node-b"):
        temp = root / name
        (temp / "ray").mkdir(parents=True)  # Ray writes the cluster's address there
        os.environ["TMPDIR"] = str(temp)  # the node's raylet and its workers inherit it
        args = {"node_ip_address": "127.0.0.1", "num_cpus": 1, "include_dashboard": False}
        if cluster is None:
            cluster = Cluster(
                initialize_head=True, head_node_args={**args, "temp_dir": str(root / "ray")}
            )
            node = cluster.head_node
        else:
            node = cluster.add_node(**args)
        nodes.append({"name": name, "ip": node.node_ip_address, "tmp": str(temp)})
    assert cluster is not None
    cluster.wait_for_nodes()
    print(json.dumps({"address": cluster.address, "nodes": nodes}), flush=True)
    sys.stdin.read()  # until the test closes it (or dies)
    cluster.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
