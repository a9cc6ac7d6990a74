"""An in-process Flower ``Grid``: the ServerApp's messages go straight to the ClientApp.

The same ServerApp and ClientApp a deployment runs (SuperLink and SuperNodes) run here in one
process, for tests and small simulations: :meth:`InProcessGrid.send_and_receive` calls the
ClientApp once per message with that node's :class:`flwr.app.Context` (its state persists across
rounds) and returns the replies. A ClientApp that raises answers with an error reply, as a
SuperNode would. Stragglers are simulated: ``latency(node_id, message)`` gives each reply a
simulated delay in seconds, and a reply later than the round's timeout is not returned (no
real time is spent waiting). Each node gets its own copy of a message, as over a network (a
ClientApp or mod may change what it received, e.g. SecAgg+'s). Flower's ``TaskIdentity`` is
set on entry, as Flower's own runtime sets it before a ServerApp runs.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterable

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

__all__ = ["InProcessGrid"]

SERVER_NODE_ID = 0
Latency = Callable[[int, Message], float]


class InProcessGrid(Grid):
    """Nodes ``1..n`` running ``app`` in this process."""

    def __init__(self, app: ClientApp, n_nodes: int, *, run_id: int = 1,
                 latency: Latency | None = None,
                 node_config: Callable[[int], dict[str, int | float | str | bool]] | None = None,
                 ) -> None:
        self.app = app
        self.latency = latency
        self._run = Run.create_empty(run_id)
        self._contexts = {
            i: Context(run_id=run_id, node_id=i,
                       node_config=dict(node_config(i)) if node_config else
                       {"partition-id": i - 1, "num-partitions": n_nodes},
                       state=RecordDict(), run_config={})
            for i in range(1, n_nodes + 1)
        }
        self._ids = itertools.count(1)
        self._replies: dict[str, Message] = {}
        self.sent = 0
        self.dropped = 0  # replies later than the timeout (stragglers)
        self.failed = 0  # error replies
        TaskIdentity.run_id = run_id
        TaskIdentity.node_id = SERVER_NODE_ID
        TaskIdentity.task_id = 1

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def context(self, node_id: int) -> Context:
        return self._contexts[node_id]

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int,
                       group_id: str, ttl: float | None = None) -> Message:
        return Message(content=content, dst_node_id=dst_node_id, message_type=message_type,
                       group_id=group_id, ttl=ttl)

    def get_node_ids(self) -> Iterable[int]:
        return list(self._contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for msg in messages:
            mid = f"m{next(self._ids)}"
            self._replies[mid] = self._call(msg)
            ids.append(mid)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._replies.pop(m) for m in message_ids if m in self._replies]

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> Iterable[Message]:
        out = []
        for msg in messages:
            self.sent += 1
            delay = self.latency(msg.metadata.dst_node_id, msg) if self.latency else 0.0
            if timeout is not None and delay > timeout:
                self.dropped += 1  # a straggler: its reply comes after the round closed
                continue
            out.append(self._call(msg))
        return out

    def _call(self, msg: Message) -> Message:
        node = msg.metadata.dst_node_id
        if node not in self._contexts:
            self.failed += 1
            return Message(Error(code=1, reason=f"no node {node}"), reply_to=msg)
        try:
            return self.app(copy.deepcopy(msg), self._contexts[node])
        except Exception as e:  # a SuperNode answers a failing ClientApp with an error reply
            self.failed += 1
            return Message(Error(code=2, reason=f"{type(e).__name__}: {e}"), reply_to=msg)
