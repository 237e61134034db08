"""RabbitMQ acknowledgements bound to the channel that delivered the message.

Dramatiq's worker settles a message (ack, or nack to dead-letter it) through whichever
consumer its queue's thread holds *when the job ends*. After RabbitMQ closed a worker's
connection (a broker restart, ``close_all_connections``, a network cut) the thread has
reconnected with a new channel, and a job that was running on the old one is settled there by
its delivery tag. Tags restart at 1 on every channel, so the tag names another delivery of the
new channel, often the very copy of the same message that RabbitMQ gave back when the old
channel closed: that copy was acked (lost) or dead-lettered while another worker thread was
still working on it, and its job could be left without a final record.

RabbitMQ already requeued everything the old channel held, so the right settlement of such a
message is none: :class:`ChannelBoundRabbitmqBroker` marks each delivery with the consumer that
received it, and its consumers ignore (with a log line) any ack or nack of a delivery that is
not theirs. The requeued copy runs again, and the job's idempotency record makes that copy
replay the final state instead of calling SendCloud a second time.
"""

from __future__ import annotations

from typing import Any

import structlog
from dramatiq.brokers.rabbitmq import RabbitmqBroker, _RabbitmqConsumer

log = structlog.get_logger(__name__)

#: The attribute a delivery carries: the consumer (one channel) that received it.
_OWNER = "_sendcloud_consumer"


class ChannelBoundConsumer(_RabbitmqConsumer):
    """Settles only the deliveries of its own channel; see the module's docstring."""

    def __next__(self) -> Any:
        message = super().__next__()
        if message is not None:
            setattr(message, _OWNER, self)
        return message

    def _ours(self, message: Any, action: str) -> bool:
        if getattr(message, _OWNER, None) is self:
            return True
        log.warning("rabbitmq.settle_skipped", action=action, message_id=message.message_id,
                    reason="delivered on a channel that has since closed; RabbitMQ requeued it")
        return False

    def ack(self, message: Any) -> None:
        if self._ours(message, "ack"):
            super().ack(message)

    def nack(self, message: Any) -> None:
        if self._ours(message, "nack"):
            super().nack(message)


class ChannelBoundRabbitmqBroker(RabbitmqBroker):
    """Dramatiq's RabbitmqBroker whose consumers are :class:`ChannelBoundConsumer`."""

    @property
    def consumer_class(self) -> type[ChannelBoundConsumer]:
        return ChannelBoundConsumer
