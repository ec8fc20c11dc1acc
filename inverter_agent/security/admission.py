"""Admission: a server's few connection slots stay usable for the clients that need them.

Protocol-neutral bookkeeping for every TCP adapter: :class:`AdmissionLimits`
(the operator's numbers, checked) and :class:`Admission` (per peer address:
rate of connections that have not completed their session set-up, failures,
penalty). Time is an argument; the adapter watches its own sockets, asks
:meth:`Admission.opened` for every connection it sees and reports
:meth:`Admission.associated` and :meth:`Admission.failed` (MMS:
``adapters/mms/guard.py``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from .errors import SecurityConfigError

#: Roles for which the last connection slot is kept free (IEC 62351-8 OPERATOR, ENGINEER,
#: SECADM: the ones that can act on the inverter or on its security).
PRIVILEGED_ROLES = frozenset({"operator", "engineer", "secadmin"})


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    """How a server keeps its few connection slots (5 in the bundled libiec61850)
    usable for the clients that need them.

    ``associate_within_s``: a connection (plain or TLS, handshake included) that
    has not completed its association (the protocol's session set-up, e.g. the
    MMS association) this long after it was accepted is closed.
    ``rate``/``burst``: a peer address may open ``burst`` connections at once and
    ``rate`` per second after that, not counting those that associate; one
    that opens more is put in penalty. ``failures`` failed connections (no
    association in time, closed before associating, refused TLS handshake or
    association) within ``failure_window_s`` put the peer in penalty too. A peer in penalty
    (``penalty_s``) is refused before it takes a slot: the listening socket
    drops its connection attempts (SYN) in the kernel, so its client retries
    after 1 s, 3 s, ...; the connections it still has are closed, except
    those of :data:`PRIVILEGED_ROLES`. ``pending_per_peer``: unassociated
    connections one peer may hold at a time. ``reserved``: with roles
    enforced, this many of the server's slots are kept for
    :data:`PRIVILEGED_ROLES`: a viewer (or any other role) is refused when its
    association would take one of them.
    """

    associate_within_s: float = 1.0
    rate: float = 5.0
    burst: int = 10
    failures: int = 50
    failure_window_s: float = 10.0
    penalty_s: float = 10.0
    pending_per_peer: int = 3
    reserved: int = 1

    def __post_init__(self) -> None:
        for name in ("associate_within_s", "rate", "failure_window_s", "penalty_s"):
            if not getattr(self, name) > 0:
                raise SecurityConfigError(f"admission {name} must be > 0")
        for name in ("burst", "failures", "pending_per_peer"):
            if getattr(self, name) < 1:
                raise SecurityConfigError(f"admission {name} must be >= 1")
        if self.reserved < 0:
            raise SecurityConfigError("admission reserved must be >= 0")

    def describe(self) -> str:
        return (f"association within {self.associate_within_s:g} s; per peer address "
                f"more than {self.burst} connections at once or {self.rate:g}/s after, or "
                f"{self.failures} failures in {self.failure_window_s:g} s -> "
                f"{self.penalty_s:g} s penalty; {self.reserved} slot(s) kept for "
                f"{'/'.join(sorted(PRIVILEGED_ROLES))}")


class Admission:
    """Per peer address: token bucket of unassociated connections, failures, penalty.

    Pure bookkeeping (time is an argument); the server asks :meth:`opened` for
    every connection it sees accepted and reports :meth:`associated` and
    :meth:`failed`. At most ``max_peers`` addresses are remembered (the least
    recently seen are forgotten first), so a scan from many addresses costs
    bounded memory.
    """

    def __init__(self, limits: AdmissionLimits | None = None, max_peers: int = 4096) -> None:
        self.limits = limits or AdmissionLimits()
        self.max_peers = max_peers
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[float, float]] = {}   # host -> (tokens, at)
        self._failures: dict[str, list[float]] = {}
        self._penalty: dict[str, float] = {}                # host -> until

    def _bucket(self, host: str, now: float) -> float:
        tokens, at = self._tokens.get(host, (float(self.limits.burst), now))
        return min(float(self.limits.burst), tokens + (now - at) * self.limits.rate)

    def opened(self, host: str, now: float) -> str | None:
        """A connection from ``host`` was accepted: None to let it try to associate,
        else why it is to be closed at once."""
        with self._lock:
            until = self._penalty.get(host)
            if until is not None and now < until:
                return (f"in penalty for {until - now:.0f} s more after "
                        f"{self.limits.failures} failed connections")
            tokens = self._bucket(host, now)
            if tokens < 1.0:
                self._tokens[host] = (tokens, now)
                self._penalty[host] = now + self.limits.penalty_s
                return (f"connecting faster than {self.limits.rate:g}/s "
                        f"(burst {self.limits.burst}): {self.limits.penalty_s:g} s penalty")
            self._tokens[host] = (tokens - 1.0, now)
            self._trim()
            return None

    def associated(self, host: str, now: float) -> None:
        """An association from ``host`` succeeded: that connection costs no token, and
        the address's failures so far are forgiven (a client that reconnects often but
        properly, or whose attempts timed out while the gateway was busy, is not put in
        penalty for it)."""
        with self._lock:
            tokens = self._bucket(host, now)
            self._tokens[host] = (min(float(self.limits.burst), tokens + 1.0), now)
            self._failures.pop(host, None)

    def failed(self, host: str, now: float) -> bool:
        """A connection from ``host`` failed; True if that put it in penalty."""
        with self._lock:
            window = self.limits.failure_window_s
            recent = [t for t in self._failures.get(host, ()) if now - t < window]
            recent.append(now)
            self._failures[host] = recent[-self.limits.failures:]
            if len(recent) >= self.limits.failures and self._penalty.get(host, 0) <= now:
                self._penalty[host] = now + self.limits.penalty_s
                self._failures[host] = []
                return True
            return False

    def penalised(self, now: float) -> list[str]:
        with self._lock:
            return [h for h, until in self._penalty.items() if until > now]

    def _trim(self) -> None:
        if len(self._tokens) <= self.max_peers:
            return
        for host in sorted(self._tokens, key=lambda h: self._tokens[h][1])[:self.max_peers // 4]:
            self._tokens.pop(host, None)
            self._failures.pop(host, None)
            self._penalty.pop(host, None)
