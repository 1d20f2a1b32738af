"""Wake-ups for pushing sockets: the `Fanout` interface (`base`) and the in-process one."""

from doorless.server.fanout.base import Fanout, Subscription
from doorless.server.fanout.memory import MemoryFanout

__all__ = ["Fanout", "MemoryFanout", "Subscription"]
