"""What every backend offers the sender: send one OTLP ExportLogsServiceRequest payload, probe its
health without customer data, close.

Optional capability, *pipelining* (:attr:`Backend.pipelined`): a backend whose client acknowledges
asynchronously (Kafka) lets a lane keep several requests in flight with :meth:`Backend.submit` and
:meth:`Backend.serve`. A :class:`Ticket` only ever says "every part acknowledged" or "something went
wrong"; the lane then sends that request again with the synchronous :meth:`Backend.send`, whose
outcome (retryable, auth, split, permanent, partial) is the one it acts on. So the outcome classes
stay those of ``send()``, for every backend.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

from otel_ext.backends.outcome import Outcome

# An empty ExportLogsServiceRequest: a valid OTLP request that carries no customer data.
EMPTY_REQUEST = b""


class Ticket:
    """One request handed to :meth:`Backend.submit`: settled when every part of it was
    acknowledged (``ok``) or any part failed or its deadline passed (``failed``)."""

    __slots__ = ("deadline", "error", "pending", "submitted")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline  # time.monotonic() after which an unacknowledged part counts as failed
        self.pending = 0  # parts handed to the client and not yet reported
        self.submitted = False  # every part was handed to the client
        self.error = ""  # why it failed ("" while not failed)

    def fail(self, error: str) -> None:
        if not self.error:
            self.error = error or "failed"

    def report(self, err: object, _msg: object = None) -> None:
        """A delivery report of one part (err None: acknowledged)."""
        self.pending -= 1
        if err is not None:
            self.fail(str(err))

    def state(self, now: float) -> str:
        """``"ok"``, ``"failed"`` or ``"pending"``."""
        if self.error:
            return "failed"
        if self.submitted and self.pending <= 0:
            return "ok"
        if now > self.deadline:
            self.fail("not acknowledged in time")
            return "failed"
        return "pending"


class Backend(abc.ABC):
    """A delivery target. Implementations never raise from :meth:`send` or :meth:`probe`."""

    name: str
    pipelined = False
    """True if :meth:`submit`/:meth:`serve` let a lane keep several requests in flight."""

    @abc.abstractmethod
    def send(self, payload: bytes, records: int) -> Outcome:
        """Deliver one serialized ExportLogsServiceRequest holding ``records`` log records."""

    def submit(self, payload: bytes, records: int) -> Ticket:
        """Start delivering ``payload`` without waiting (pipelined backends only). Never raises:
        a request that could not be handed over comes back as a failed ticket."""
        ticket = Ticket(0.0)
        ticket.fail(f"{self.name} does not pipeline")
        return ticket

    def submit_parts(self, parts: Sequence[bytes], records: int) -> Ticket:
        """:meth:`submit` of the request that is the concatenation of ``parts`` (queued entries, as the
        lane coalesces them). A backend that can use the parts as they are overrides it."""
        return self.submit(parts[0] if len(parts) == 1 else b"".join(parts), records)

    def serve(self, timeout: float) -> None:  # noqa: B027 - optional hook
        """Wait up to ``timeout`` seconds for delivery reports of submitted tickets (pipelined only)."""

    def probe(self) -> Outcome:
        """A health check that carries no customer data (default: an empty OTLP request)."""
        return self.send(EMPTY_REQUEST, 0)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def reset_after_fork(self) -> None:  # noqa: B027 - optional hook
        """Called in a forked child: rebuild connections inherited from the parent."""

    def describe(self) -> str:
        """Where this backend delivers, without credentials."""
        return self.name
