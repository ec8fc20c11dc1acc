"""Connection guard of the MMS server: who each connection is, what it may do, and
which connections may keep a slot.

:class:`ConnectionGuard` is the libiec61850 side of the shared security
package (:mod:`inverter_agent.security`): it installs the authenticator
(certificate or ACSE password -> :class:`~inverter_agent.security.access.Identity`
through the ``AccessPolicy``), decides every read, write and control against
the role, audits associations, refusals and idle closes, and runs a watcher
thread over the server's sockets (sock_diag) that applies the admission limits
(association deadline, per-address rate, failures and penalty with a SYN
filter, slots kept for privileged roles, a fair share near the cap) and closes
idle associations. :class:`~inverter_agent.adapters.mms.server.MmsServer` owns
one and calls it from its callbacks.
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from inverter_agent.adapters._shared.wirestats import parse_peer, sample_tcp
from inverter_agent.security.access import RIGHT_READ, Identity
from inverter_agent.security.admission import PRIVILEGED_ROLES, Admission, AdmissionLimits
from inverter_agent.security.audit import RefusalAggregator, peer_host

from . import _native as nat
from . import hardening
from .hardening import server_sockets

if TYPE_CHECKING:
    from .server import MmsServer

log = logging.getLogger(__name__)

#: Levels of service in the wire ledger beyond monitoring: a client that wrote or
#: operated, a client that enabled a report control block.
LEVEL_SETTINGS, LEVEL_REPORTS = "settings", "reports"
#: How often the connection watcher looks at the server's sockets while any connection
#: is unassociated or new ones keep coming, and when all is quiet.
WATCH_PERIOD_S = 0.05
WATCH_IDLE_PERIOD_S = 0.25


class ConnectionGuard:
    """Per-connection identity, access decisions, audit, admission and timeouts of one server.

    libiec61850 1.6.1 offers no per-connection user data besides the ACSE
    security token: the authenticator (called once per association, after the
    TLS handshake, with the client certificate as ACSE_AUTH_TLS or the ACSE
    password) stores a small integer there, and every later callback that has
    a ClientConnection reads it back (ClientConnection_getSecurityToken) and
    looks the :class:`Identity` up here.

    Admission (``inverter_agent.security.admission.AdmissionLimits``): the library
    accepts a connection, takes one of its few slots and, over TLS, runs the
    handshake in its one listener thread with no time limit, before any
    callback is told; a silent peer stalls every other client, and connections
    that never associate hold slots until the idle timeout. So a watcher thread
    looks at the server's sockets themselves (``hardening.server_sockets``, every
    :data:`WATCH_PERIOD_S`) and shuts down (``hardening.cut``) any that has
    not associated within ``associate_within_s``, and at once any from a peer
    address that is over its rate of unassociated connections, in penalty,
    or already holding its share of unassociated connections. Refusals of
    unauthenticated peers go to the audit log aggregated
    (``audit.RefusalAggregator``), never one entry each.
    """

    def __init__(self, server: MmsServer, limits: AdmissionLimits | None = None) -> None:
        self.server = server
        self.limits = limits or AdmissionLimits()
        self.admission = Admission(self.limits)
        self.refusals = RefusalAggregator(server.audit)
        self._lock = threading.Lock()
        self._identities: dict[int, Identity] = {}
        self._next_token = 1
        self._seen: dict[int, float] = {}         # connection -> last request (monotonic)
        self._subscribed: dict[int, int] = {}     # connection -> enabled report blocks
        self._refusals: dict[tuple[str, str, str], tuple[float, int]] = {}
        # libiec61850 calls the connection indication and then the authenticator
        # in the same thread, but the 1.6.1 wheel serves every connection from one
        # thread: the authenticator (not told the caller) can name its peer only
        # when exactly one connection is waiting to associate ("?" otherwise). The
        # watcher later finds each association by its security token and records
        # it with its true peer.
        self._pending_peer: dict[int, list[str]] = {}
        self._assoc_conns: set[int] = set()  # connections whose association was seen
        # peers (ip, port) that associated -> their role (None without roles)
        self._associated: dict[tuple[str, int], str | None] = {}
        # (fd, inode) -> (peer, first seen) of the server's sockets, and those cut
        self._sockets: dict[tuple[int, int], tuple[tuple[str, int], float]] = {}
        self._cut: set[tuple[int, int]] = set()
        self._ended: set[tuple[str, int]] = set()  # associations that ended
        # endpoints already counted against their address's rate (bounded, oldest out)
        self._counted: dict[tuple[str, int], None] = {}
        self._blocked: list[str] = []  # addresses in the listening socket's SYN filter
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Sockets shut down by the watcher (for the status view, tests and the bench).
        self.cuts = 0

    @property
    def active(self) -> bool:
        """Whether reads etc. must be seen (roles enforced or idle timeout on)."""
        return self.server.access is not None or self.server.idle_timeout_s is not None

    # --- installation --------------------------------------------------------------------
    def install(self, server: int) -> list[Any]:
        lib = nat.lib()
        callbacks: list[Any] = []
        with self._lock:
            self._identities.clear()
            self._seen.clear()
            self._subscribed.clear()
            self._associated.clear()
            self._sockets.clear()
            self._cut.clear()
            self._ended.clear()
            self._blocked = []
        # Always: without a policy it only notes that the association happened (the
        # watcher closes connections that never get there).
        auth_cb = nat.AUTHENTICATOR(self._authenticate)
        callbacks.append(auth_cb)
        lib.IedServer_setAuthenticator(server, auth_cb, None)
        # Report subscriptions are always seen: they keep a client from being idle
        # and make its level of service "reports".
        rcb_cb = nat.RCB_EVENT_HANDLER(self._rcb_event)
        callbacks.append(rcb_cb)
        lib.IedServer_setRCBEventHandler(server, rcb_cb, None)
        if self.active:
            dir_cb = nat.DIRECTORY_ACCESS_HANDLER(self._directory)
            callbacks.append(dir_cb)
            lib.IedServer_setDirectoryAccessHandler(server, dir_cb, None)
        return callbacks

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="mms-guard", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.refusals.flush()

    # --- identity ------------------------------------------------------------------------
    def identity(self, connection: int | None) -> Identity | None:
        if not connection:
            return None
        token = nat.lib().ClientConnection_getSecurityToken(connection)
        if not token:
            return None
        with self._lock:
            return self._identities.get(int(token))

    def who(self, connection: int | None) -> str:
        identity = self.identity(connection)
        peer = client_peer(connection)
        return f"{identity.who} role={identity.role} from {peer}" if identity else peer

    def _authenticate(self, _param: int, auth: int, token: Any, _app_ref: int) -> bool:
        # libiec61850 thread, during association; never raise out of here.
        policy = self.server.access
        try:
            with self._lock:
                pending = self._pending_peer.get(threading.get_ident(), [])
                peer = pending.pop() if len(pending) == 1 else "?"
                number = self._next_token
                self._next_token += 1
            log.debug("authenticating %s in thread %d", peer, threading.get_ident())
            if policy is None:  # no roles: every association has full rights
                token[0] = number  # (no identity behind it: marks the association)
                return True
            if not auth:
                identity, reason = None, "no authentication parameter"
            else:
                param = nat.AcseAuthParameter.from_address(auth)
                data = ctypes.string_at(param.buf, param.length) if param.buf else b""
                if param.mechanism == nat.ACSE_AUTH_TLS:
                    identity, reason = policy.certificate_identity(data, peer)
                elif param.mechanism == nat.ACSE_AUTH_PASSWORD:
                    identity, reason = policy.password_identity(data, peer)
                else:
                    identity, reason = None, ("no client certificate or password" if
                                              self.server.tls is None
                                              else "no client certificate")
            if identity is not None and not self._slot_for(identity):
                identity, reason = None, (f"role {identity.role}: the last "
                                          f"{self.limits.reserved} connection slot(s) are kept "
                                          f"for {'/'.join(sorted(PRIVILEGED_ROLES))}")
            if identity is None:
                self._failed(peer, "mms.associate", reason)
                return False
            with self._lock:
                self._identities[number] = identity
            token[0] = number  # the watcher logs and audits it, with its true peer
            return True
        except Exception:
            log.exception("MMS authenticator failed")
            return False

    def _slot_for(self, identity: Identity) -> bool:
        """False when this association would take a slot kept for privileged roles."""
        reserved = self.limits.reserved
        if identity.role in PRIVILEGED_ROLES or not reserved:
            return True
        if self.server.max_connections <= reserved:
            return True  # nothing left to share: the reservation would lock viewers out
        with self._lock:  # (not the library's count: its lock may be held right now)
            open_now = len(self._seen)
        return open_now <= self.server.max_connections - reserved

    def _failed(self, peer: str, action: str, reason: str) -> None:
        """An unauthenticated peer was refused: aggregated audit, rate-limited log,
        and a failure towards its penalty."""
        endpoint = parse_peer(peer)
        host = endpoint[0] if endpoint else peer_host(peer)
        first = self.refusals.refused(peer, action, reason)
        (log.warning if first else log.debug)(
            "MMS %s from %s refused: %s%s", action.removeprefix("mms."), peer, reason,
            " (further refusals of this kind from this address are counted, not logged, "
            f"for {self.refusals.window_s:g} s)" if first else "")
        self.admission.failed(host, time.monotonic())  # the watcher logs a new penalty

    # --- decisions -----------------------------------------------------------------------
    def allowed(self, connection: int | None, right: str, obj: str) -> bool:
        """Note the request (idle timer, level of service) and decide; refusals are
        logged and audited."""
        if connection:
            if connection not in self._assoc_conns:  # its first request: audit the association
                self._discover_associations(connection)
            with self._lock:
                if connection in self._seen:
                    self._seen[connection] = time.monotonic()
            if right != RIGHT_READ:
                self.server.wire.used(client_peer(connection), LEVEL_SETTINGS)
        if self.server.access is None:
            return True  # no roles configured: every client may do everything
        identity = self.identity(connection)
        if identity is not None and identity.can(right):
            return True
        who = self.who(connection)
        self._refused(who, right, obj)
        return False

    def _refused(self, who: str, right: str, obj: str) -> None:
        """Log and audit a refusal, at most once a second per (who, right, object)."""
        key = (who, right, obj)
        now = time.monotonic()
        with self._lock:
            last, suppressed = self._refusals.get(key, (-1e9, 0))
            if now - last < 1.0:
                self._refusals[key] = (last, suppressed + 1)
                return
            self._refusals[key] = (now, 0)
            if len(self._refusals) > 1000:  # bounded: forget the oldest half
                for old in sorted(self._refusals, key=lambda k: self._refusals[k][0])[:500]:
                    del self._refusals[old]
        log.warning("MMS %s of %s refused for %s (no access authority)%s", right, obj, who,
                    f" ({suppressed} more in the last second)" if suppressed else "")
        self._audit(f"mms.{right}", who, "refused", obj=obj, reason="no access authority",
                    suppressed=suppressed)

    def _audit(self, action: str, who: str, outcome: str = "ok", obj: str | None = None,
               **extra: Any) -> None:
        audit = self.server.audit
        if audit is None:
            return
        try:
            audit.record(action, who, outcome, obj, **extra)
        except Exception:  # auditing must never break the protocol thread
            log.exception("audit record failed")

    # --- connections ---------------------------------------------------------------------------
    def connection(self, connection: int, connected: bool) -> None:
        who = self.who(connection)
        endpoint = parse_peer(client_peer(connection))
        with self._lock:
            if connected:
                self._seen[connection] = time.monotonic()
                self._pending_peer.setdefault(threading.get_ident(), []).append(who)
                fresh = endpoint is not None and endpoint not in self._counted
                if fresh:
                    self._counted[endpoint] = None
            else:
                for waiting in self._pending_peer.values():
                    if who in waiting:  # association never came
                        waiting.remove(who)
        if connected and fresh:
            assert endpoint is not None
            # Counted here too: a short connection may come and go between two looks.
            self.admission.opened(endpoint[0], time.monotonic())
        if not connected:
            self._discover_associations(connection)  # one too short for the watcher to see
            with self._lock:
                associated = endpoint is not None and endpoint in self._associated
                if associated:
                    self._ended.add(endpoint)  # type: ignore[arg-type]
            self._forget(connection, nat.lib().ClientConnection_getSecurityToken(connection),
                         count=False)
            if associated:  # unassociated ones were refused (aggregated) or just went
                self._audit("mms.disconnect", who, protect=self.server.access is not None)

    def _forget(self, connection: int, token: int | None, count: bool = True) -> None:
        """Drop what is kept about a connection (and its security token); ``count``:
        also update the server's client count (the indication handler does that itself)."""
        with self._lock:
            known = self._seen.pop(connection, None) is not None
            self._subscribed.pop(connection, None)
            self._assoc_conns.discard(connection)
            if token:
                self._identities.pop(int(token), None)
        if count and known:
            self.server.client_gone()

    def _rcb_event(self, _param: int, _rcb: int, connection: int, event: int,
                   _name: bytes | None, _error: int) -> None:
        if not connection:
            return
        with self._lock:
            if connection not in self._seen:
                return
            self._seen[connection] = time.monotonic()
            if event == nat.RCB_EVENT_ENABLE:
                self._subscribed[connection] = self._subscribed.get(connection, 0) + 1
                self.server.wire.used(client_peer(connection), LEVEL_REPORTS)
            elif event == nat.RCB_EVENT_DISABLE and self._subscribed.get(connection):
                self._subscribed[connection] -= 1

    def _directory(self, _param: int, connection: int, _category: int, _ld: int) -> bool:
        return self.allowed(connection, RIGHT_READ, "directory")

    # --- the watcher: admission, association deadline, idle timeout ---------------------------
    def _watch(self) -> None:
        last_idle = last_tick = time.monotonic()
        period = WATCH_PERIOD_S
        while not self._stop.wait(period):
            now = time.monotonic()
            try:
                busy = self._admit(now)
                period = WATCH_PERIOD_S if busy else WATCH_IDLE_PERIOD_S
                if now - last_tick >= 1.0:
                    last_tick = now
                    self.refusals.tick()
                timeout = self.server.idle_timeout_s
                if timeout is not None and now - last_idle >= min(1.0, timeout / 4):
                    last_idle = now
                    self._close_idle(timeout)
            except Exception:  # the watcher must keep watching
                log.exception("MMS connection watcher failed")

    def _discover_associations(self, only: int | None = None) -> None:
        """Connections whose security token is set have associated: note their true
        peer and role, then log and audit the association. ``only``: just that
        connection (from a callback of it: its first request, its disconnection)."""
        lib = nat.lib()
        found: list[tuple[str, Identity | None]] = []
        with self._lock:  # a connection in _seen cannot be freed while we hold it
            candidates = [only] if only is not None and only in self._seen else (
                [] if only is not None else list(self._seen))
            for connection in candidates:
                if connection in self._assoc_conns:
                    continue
                token = lib.ClientConnection_getSecurityToken(connection)
                if not token:
                    continue
                self._assoc_conns.add(connection)
                peer = client_peer(connection)
                identity = self._identities.get(int(token))
                if identity is not None:
                    identity = dataclasses.replace(identity, peer=peer)
                    self._identities[int(token)] = identity
                for waiting in self._pending_peer.values():
                    for who in [w for w in waiting if w == peer]:
                        waiting.remove(who)
                endpoint = parse_peer(peer)
                if endpoint is not None:
                    self._associated[endpoint] = identity.role if identity else None
                found.append((peer, identity))
        now = time.monotonic()
        for peer, identity in found:
            endpoint = parse_peer(peer)
            if endpoint is not None:
                self.admission.associated(endpoint[0], now)
            if identity is None:  # no roles configured: full rights, nobody authenticated
                log.debug("MMS association from %s (no roles configured: full rights)", peer)
                # Unprotected: without authentication anyone could make these by the
                # thousand (what they then change is audited, and protected).
                self._audit("mms.associate", peer, "ok", method="none", protect=False)
                continue
            log.info("MMS association: %s", identity.describe())
            self._audit("mms.associate", identity.describe(), "ok", role=identity.role,
                        method=identity.method)

    def _admit(self, now: float) -> bool:
        """One look at the server's sockets: close what may not keep its slot. True
        while there is something to watch closely (new or unassociated connections,
        addresses in penalty)."""
        self._discover_associations()
        port = self.server.port
        penalised = self.admission.penalised(now)
        if penalised != self._blocked:
            for host in sorted(set(penalised) - set(self._blocked)):
                log.warning("MMS: %s in penalty for %g s (more than %d connections at once "
                            "or %g/s, or %d failed ones in %g s): its connection attempts "
                            "are dropped", host, self.limits.penalty_s, self.limits.burst,
                            self.limits.rate, self.limits.failures,
                            self.limits.failure_window_s)
                self.refusals.refused(host, "mms.penalty", "connecting too fast or failing "
                                      "too often", penalty_s=self.limits.penalty_s)
            # Before accept(): a penalised address's SYNs are dropped by the kernel.
            if hardening.set_syn_filter(port, penalised) or not penalised:
                self._blocked = penalised
        blocked = set(penalised)
        # Every connection the kernel holds for the port, accepted or still in the
        # backlog: the library's single thread may be far behind a flood, so the
        # rate is counted here, not from what the library gets round to.
        try:
            kernel = list(sample_tcp(port))
        except OSError:
            kernel = []
        with self._lock:
            fresh = [e for e in kernel if e not in self._counted]
            for endpoint in fresh:
                self._counted[endpoint] = None
        for endpoint in fresh:
            self.admission.opened(endpoint[0], now)
        sockets = server_sockets(port)
        current = {(fd, inode): peer for fd, (inode, peer) in sockets.items()}
        to_cut: list[tuple[int, int, tuple[str, int], str, bool]] = []
        gone: list[tuple[str, int]] = []
        with self._lock:
            for key in [k for k in self._sockets if k not in current]:
                peer, _first = self._sockets.pop(key)
                if key not in self._cut and peer not in self._associated:
                    gone.append(peer)  # closed (by the library or the peer) unassociated
                self._cut.discard(key)
            pending: dict[str, int] = {}
            for key, peer in sorted(current.items(), key=lambda kv: self._sockets.get(
                    kv[0], (None, now))[1]):
                if key in self._cut:
                    continue
                associated = peer in self._associated
                role = self._associated.get(peer)
                known = self._sockets.get(key)
                if known is None or known[0] != peer:
                    self._sockets[key] = (peer, now)
                    reason = None
                    if peer not in self._counted:
                        self._counted[peer] = None
                        reason = self.admission.opened(peer[0], now)
                    if reason is not None and role not in PRIVILEGED_ROLES:
                        to_cut.append((*key, peer, reason, False))
                        continue
                    if not associated:
                        if reason is None and pending.get(peer[0], 0) >= \
                                self.limits.pending_per_peer:
                            reason = (f"already {pending[peer[0]]} unassociated "
                                      "connection(s) from this address")
                        if reason is not None:
                            to_cut.append((*key, peer, reason, True))
                            continue
                elif not associated and now - known[1] > self.limits.associate_within_s:
                    to_cut.append((*key, peer, "no MMS association within "
                                   f"{self.limits.associate_within_s:g} s", True))
                    continue
                if peer[0] in blocked and role not in PRIVILEGED_ROLES:
                    # A penalised address keeps no connection but privileged sessions.
                    to_cut.append((*key, peer, "address in penalty", False))
                    continue
                if not associated:
                    pending[peer[0]] = pending.get(peer[0], 0) + 1
            to_cut += self._fair_share(current, {(fd, inode) for fd, inode, *_ in to_cut})
            self._cut.update((fd, inode) for fd, inode, *_ in to_cut)
            if len(self._counted) > 4096:
                for endpoint in list(self._counted)[:2048]:
                    del self._counted[endpoint]
            # Associations that ended and whose socket is gone: forget them now (not at
            # the indication, or the socket would look as if it never associated).
            live = set(current.values())
            for endpoint in [e for e in self._ended if e not in live]:
                self._ended.discard(endpoint)
                self._associated.pop(endpoint, None)
        busy = bool(fresh or to_cut or gone or penalised or
                    any(p not in self._associated for p in current.values()))
        for peer in gone:
            self._failed(_peer_text(peer), "mms.connect", "closed before association")
        for fd, inode, peer, reason, failure in to_cut:
            if hardening.cut(fd, inode):
                self.cuts += 1
                if failure:
                    self._failed(_peer_text(peer), "mms.connect", reason)
                else:
                    self.refusals.refused(_peer_text(peer), "mms.connect", reason)
        return busy

    def _fair_share(self, current: dict[tuple[int, int], tuple[str, int]],
                    cutting: set[tuple[int, int]]
                    ) -> list[tuple[int, int, tuple[str, int], str, bool]]:
        """Near the cap (one slot or none free), an address holding more than one
        unassociated connection loses its newest ones until a slot is free again
        or every address holds one: one peer cannot take the last slots.

        A connection still inside its handshake (younger than half the association
        limit) is not counted yet: clients that connect one after another, as a
        control centre's applications do, are each mid-association for a moment,
        and on a loaded board that moment can outlast a guard tick."""
        live = {k: p for k, p in current.items() if k not in self._cut and k not in cutting}
        free = self.server.max_connections - len(live)
        out: list[tuple[int, int, tuple[str, int], str, bool]] = []
        settled = time.monotonic() - self.limits.associate_within_s / 2
        while free < 2:
            by_host: dict[str, list[tuple[int, int]]] = {}
            for key, peer in live.items():
                if peer not in self._associated and \
                        self._sockets.get(key, (None, 0.0))[1] <= settled:
                    by_host.setdefault(peer[0], []).append(key)  # associated keep theirs
            host, keys = max(by_host.items(), key=lambda kv: len(kv[1]), default=("", []))
            if len(keys) < 2:
                break
            newest = max(keys, key=lambda k: self._sockets.get(k, (None, 0.0))[1])
            peer = live.pop(newest)
            out.append((*newest, peer, f"the connection cap is near and {host} holds "
                        f"{len(keys)} connections", True))
            free += 1
        return out

    def _close_idle(self, timeout: float) -> None:
        """Abort associations silent for longer than the idle timeout.

        A client with an enabled report control block is not idle: it is
        waiting for reports, which is the normal way to watch the gateway.
        """
        lib = nat.lib()
        # Reads run no Python: what a client sent is in the kernel's counters.
        active = self.server.last_heard()
        if active is None:  # reads run no Python: without the counters, never judge silence
            return
        now = time.monotonic()
        idle: list[int] = []
        with self._lock:
            for connection in self._seen:
                heard = active.get(parse_peer(client_peer(connection)) or ("?", 0))
                if heard is not None and heard > self._seen[connection]:
                    self._seen[connection] = heard
            for connection, seen in self._seen.items():
                if now - seen > timeout and not self._subscribed.get(connection):
                    # Claimed under our lock: the disconnect indication (which needs
                    # the lock) cannot free it before we are done with it.
                    idle.append(lib.ClientConnection_claimOwnership(connection))
                    self._seen[connection] = now  # one abort per timeout at most
        for connection in idle:
            who = self.who(connection)
            peer = client_peer(connection)
            token = lib.ClientConnection_getSecurityToken(connection)
            # No indication follows an abort and the socket is gone right after
            # it: take its last byte counts now.
            final = self.server.wire_final(peer)
            try:
                aborted = lib.ClientConnection_abort(connection)
                if aborted:
                    self.server.wire.closed(peer, time.time(), final)
                    # 1.6.1 removes an aborted connection without calling the
                    # connection indication: do its bookkeeping here.
                    self._forget(connection, token)
                    endpoint = parse_peer(peer)
                    with self._lock:
                        if endpoint is not None:
                            self._ended.add(endpoint)
            finally:
                lib.ClientConnection_release(connection)
            log.warning("MMS connection %s idle for more than %g s: %s", who, timeout,
                        "closed" if aborted else "already gone")
            self._audit("mms.idle_close", who, "ok" if aborted else "gone",
                        idle_timeout_s=timeout)

    # --- TLS events -------------------------------------------------------------------------------
    def tls_event(self, _param: int, level: int, code: int, message: bytes | None,
                  connection: int) -> None:
        """TLS layer events: failed handshakes (other CA, revoked, expired, plain
        client, old protocol, no common suite) are refusals of an unauthenticated
        peer: aggregated in the audit log and counted towards its penalty."""
        try:
            text = message.decode(errors="replace") if message else f"TLS event {code}"
            peer = "?"
            if connection:
                buffer = ctypes.create_string_buffer(130)
                raw = nat.lib().TLSConnection_getPeerAddress(connection, buffer)
                peer = raw.decode(errors="replace") if raw else "?"
            if level >= nat.TLS_SEC_EVT_INCIDENT:
                self._failed(peer, "mms.tls", text)
            elif level == nat.TLS_SEC_EVT_WARNING:
                self._warn_once(code, f"MMS TLS from {peer}: {text}")
            else:
                log.debug("MMS TLS from %s: %s", peer, text)
        except Exception:
            log.exception("TLS event handler failed")

    def _warn_once(self, code: int, message: str) -> None:
        key = ("tls-warning", str(code), "")
        with self._lock:
            if key in self._refusals:
                return
            self._refusals[key] = (time.monotonic(), 0)
        log.warning("%s (further warnings of this kind are not logged)", message)


def _peer_text(peer: tuple[str, int]) -> str:
    return f"[{peer[0]}]:{peer[1]}" if ":" in peer[0] else f"{peer[0]}:{peer[1]}"


def client_peer(connection: int | None) -> str:
    """The address of a libiec61850 ClientConnection ("?" if none)."""
    if not connection:
        return "?"
    peer = nat.lib().ClientConnection_getPeerAddress(connection)
    return peer.decode(errors="replace") if peer else "?"
