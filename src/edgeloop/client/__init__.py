"""The admin client: the fleet server's admin and rollout API over HTTP, torch- and server-free.

Device layer: httpx and ``edgeloop.errors`` only, so ``edgeloop fleet ...`` and
``edgeloop rollout ...`` start without FastAPI or SQLAlchemy. One mapping turns the server's
answers into :class:`~edgeloop.errors.EdgeloopError` subclasses (:func:`error_for`).

::

    admin = AdminClient("http://127.0.0.1:8700", admin_token)
    admin.publish("kws", 3)
    rollouts = RolloutClient("http://127.0.0.1:8700", admin_token)
    r = rollouts.start("kws", 3, stages=(1, 10, 50, 100), gates=("error_rate<0.01",))
    rollouts.wait(r["id"], ("completed", "rolled_back"))
    MonitorClient("http://127.0.0.1:8700", admin_token).status("kws")
"""

from edgeloop.client._admin import AdminClient
from edgeloop.client._config import DEFAULT_SERVER, read_admin_token, server_url
from edgeloop.client._errors import error_for
from edgeloop.client._monitor import MonitorClient, parse_target
from edgeloop.client._rollouts import RolloutClient
from edgeloop.client._tokens import create_tokens

__all__ = [
    "DEFAULT_SERVER",
    "AdminClient",
    "MonitorClient",
    "RolloutClient",
    "create_tokens",
    "error_for",
    "parse_target",
    "read_admin_token",
    "server_url",
]
