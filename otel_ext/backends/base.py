"""What every backend offers the sender: send one OTLP ExportLogsServiceRequest payload, probe its
health without customer data, close."""

from __future__ import annotations

import abc

from otel_ext.backends.outcome import Outcome

# An empty ExportLogsServiceRequest: a valid OTLP request that carries no customer data.
EMPTY_REQUEST = b""


class Backend(abc.ABC):
    """A delivery target. Implementations never raise from :meth:`send` or :meth:`probe`."""

    name: str

    @abc.abstractmethod
    def send(self, payload: bytes, records: int) -> Outcome:
        """Deliver one serialized ExportLogsServiceRequest holding ``records`` log records."""

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
