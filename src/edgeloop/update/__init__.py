"""The authenticated update channel: a TUF repository of bundles and its device client.

Release side (server, CI)::

    init_keys(KEYS)                                  # TUF roles + release key + fleet key
    Repository(REPO, KEYS).release("kws-3.elb")      # add a target, re-sign snapshot/timestamp
    rotate_key(KEYS, "timestamp"); Repository(REPO, KEYS).resign()

Device side::

    client = UpdateClient("http://server/tuf", root=KEYS_root_json_bytes, metadata_dir=STATE)
    path = client.fetch_bundle("kws/3/kws-3.elb", SLOT_DIR)   # every TUF check, or UpdateError
    trust = client.trust()                                     # release keys of the newest root
"""

from edgeloop.update._client import HttpxFetcher, TargetInfo, UpdateClient, fetch_bundle
from edgeloop.update._keyring import (
    ONLINE_FILES,
    ROLES,
    ROTATABLE,
    KeyRing,
    export_online,
    init_keys,
    name_director,
    rotate_key,
    sync_roots,
)
from edgeloop.update._repo import Expiry, PublishedTarget, Repository

__all__ = [
    "ONLINE_FILES",
    "ROLES",
    "ROTATABLE",
    "Expiry",
    "HttpxFetcher",
    "KeyRing",
    "PublishedTarget",
    "Repository",
    "TargetInfo",
    "UpdateClient",
    "export_online",
    "fetch_bundle",
    "init_keys",
    "name_director",
    "rotate_key",
    "sync_roots",
]
