"""A Modbus device that answers with mutated frames, over TCP and over a pty (RTU).

The device serves a fixed register image (a corpus profile rendered once, so
every value is known). Each response is, by a seeded draw, either the correct
frame or a malformed one that *also carries different register data*: a frame
from another unit or for another transaction, a wrong function echo, a wrong
byte or MBAP length, a bad CRC, a truncated or padded frame, garbage before the
frame, random bytes, every exception code, or silence. If the master accepted
a malformed frame its readings would differ from the truth, so
:func:`fuzz_run` can tell "malformed value served as good" from a refused one.
Test harness only (used by tests/hal/test_fuzz_modbus.py and bench/fuzz.py).
"""

from __future__ import annotations

import os
import random
import select
import socket
import struct
import threading
import time
import tracemalloc
from typing import Any

from hal.inverter import Inverter
from hal.transport import RetryPolicy, RtuTransport, SerialSettings, TcpTransport
from simulator import modbus
from simulator.device import Inverter as SimInverter
from simulator.plant import Grid, PlantParams
from simulator.profile import apply, load_profile
from simulator.registers import RegisterImage

MUTATIONS = ("ok", "wrong_unit", "wrong_tid", "wrong_fc", "bad_byte_count", "bad_length",
             "bad_crc", "truncated", "padded", "garbage_before", "random", "exception",
             "silence", "two_frames")


def static_image(profile_path: str) -> RegisterImage:
    """A profile's register image with its measurements rendered once (then frozen)."""
    prof = load_profile(profile_path)
    image = RegisterImage(prof.base, list(prof.models), prof.ratings, prof.unit,
                          raw_models=prof.vendor_models, end_marker=prof.quirks.end_marker)
    inv = SimInverter(image, PlantParams(ratings=prof.ratings))
    inv.settle(0.0, Grid.nominal(prof.ratings))
    apply(prof, image)
    return image


class Mutator:
    """Decides, frame by frame, what the device sends instead of the good response."""

    def __init__(self, seed: int, bad_share: float = 0.5, silence_share: float = 0.02) -> None:
        self.rng = random.Random(seed)
        self.bad_share = bad_share
        self.silence_share = silence_share
        self.counts: dict[str, int] = {}
        self.recent: list[str] = []  # the last few answers' kinds, for a breach report

    def pick(self, rtu: bool) -> str:
        r = self.rng.random()
        if r < self.silence_share:
            kind = "silence"
        elif r > self.bad_share:
            kind = "ok"
        else:
            kinds = [m for m in MUTATIONS if m not in ("ok", "silence")
                     and (rtu or m not in ("bad_crc",)) and (not rtu or m != "wrong_tid")]
            kind = self.rng.choice(kinds)
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.recent = [*self.recent[-5:], kind]
        return kind

    def other_data(self, pdu: bytes) -> bytes:
        """The same response shape with different register values."""
        if len(pdu) < 3 or pdu[0] & 0x80:
            return pdu
        regs = bytes(self.rng.getrandbits(8) for _ in range(len(pdu) - 2))
        return pdu[:2] + regs

    def pdu(self, kind: str, good: bytes) -> bytes:
        rng = self.rng
        if kind in ("padded", "garbage_before", "two_frames"):
            return good  # well-formed answer, garbage around it: resync, keep the value
        if kind in ("wrong_unit", "wrong_tid", "bad_crc"):
            return self.other_data(good)
        if kind == "wrong_fc":
            fc = rng.choice([1, 2, 4, 6, 16, 23, 0x2B])
            return bytes((fc,)) + self.other_data(good)[1:]
        if kind == "bad_byte_count" and len(good) > 2 and not good[0] & 0x80:
            bc = (good[1] + rng.choice([-4, -2, -1, 1, 2, 4])) & 0xFF
            return bytes((good[0], bc)) + self.other_data(good)[2:]
        if kind == "exception":
            return bytes((good[0] | 0x80, rng.choice(range(0, 256))))
        return self.other_data(good)


def _tcp_frames(m: Mutator, kind: str, tid: int, unit: int, good: bytes) -> bytes:
    pdu = m.pdu(kind, good)
    u = (unit + 1 + m.rng.randrange(200)) & 0xFF if kind == "wrong_unit" else unit
    t = (tid + 1 + m.rng.randrange(1000)) & 0xFFFF if kind == "wrong_tid" else tid
    length = len(pdu) + 1
    if kind == "bad_length":
        length = max(0, length + m.rng.choice([-3, -1, 1, 5, 200]))
    frame = struct.pack(">HHHB", t, 0, length, u) + pdu
    if kind == "truncated":
        return frame[:m.rng.randrange(1, len(frame))]
    if kind == "padded":
        return frame + bytes(m.rng.getrandbits(8) for _ in range(m.rng.randrange(1, 9)))
    if kind == "garbage_before":
        return bytes(m.rng.getrandbits(8) for _ in range(m.rng.randrange(1, 12))) + frame
    if kind == "random":
        return bytes(m.rng.getrandbits(8) for _ in range(m.rng.randrange(1, 40)))
    if kind == "two_frames":  # the answer, then a stray one for another transaction
        stray = m.other_data(good)
        return frame + struct.pack(">HHHB", (tid + 7) & 0xFFFF, 0, len(stray) + 1, unit) + stray
    return frame


def _rtu_frames(m: Mutator, kind: str, unit: int, good: bytes) -> bytes:
    pdu = m.pdu(kind, good)
    u = (unit + 1 + m.rng.randrange(200)) & 0xFF if kind == "wrong_unit" else unit
    frame = modbus.with_crc(bytes((u,)) + pdu)
    if kind == "bad_crc":
        frame = frame[:-1] + bytes((frame[-1] ^ (1 + m.rng.randrange(255)),))
    elif kind == "truncated":
        frame = frame[:m.rng.randrange(1, len(frame))]
    elif kind == "padded":
        frame = frame + bytes(m.rng.getrandbits(8) for _ in range(m.rng.randrange(1, 9)))
    elif kind == "garbage_before":
        frame = bytes(m.rng.getrandbits(8) for _ in range(m.rng.randrange(1, 12))) + frame
    elif kind == "random":
        frame = bytes(m.rng.getrandbits(8) for _ in range(m.rng.randrange(1, 40)))
    elif kind == "bad_length":
        frame = frame[:-3] + frame[-2:]
    elif kind == "two_frames":  # the answer, then a stray frame from another unit
        frame = frame + modbus.with_crc(bytes(((unit + 1) & 0xFF,)) + m.other_data(good))
    return frame


class FuzzDevice:
    """Serves ``image`` at ``unit`` over TCP (``tcp=True``) or a pty, mutating answers."""

    def __init__(self, image: RegisterImage, unit: int, mutator: Mutator, tcp: bool) -> None:
        self.image, self.unit, self.m, self.tcp = image, unit, mutator, tcp
        self.frames = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        if tcp:
            self._srv = socket.create_server(("127.0.0.1", 0))
            self.port = self._srv.getsockname()[1]
            self._thread = threading.Thread(target=self._tcp_loop, daemon=True)
        else:
            self._master, slave = os.openpty()
            self.path = os.ttyname(slave)
            self._slave = slave
            self._thread = threading.Thread(target=self._rtu_loop, daemon=True)

    def __enter__(self) -> FuzzDevice:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.tcp:
            self._srv.close()
        self._thread.join(timeout=3)
        if not self.tcp:
            os.close(self._master)
            os.close(self._slave)

    def _answer(self, pdu: bytes) -> bytes:
        with self._lock:
            self.frames += 1
        return modbus.handle_pdu(pdu, self.image.read, lambda a, v: self.image.write(a, v))

    def _tcp_loop(self) -> None:
        self._srv.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._srv.accept()
            except OSError:
                continue
            threading.Thread(target=self._tcp_conn, args=(conn,), daemon=True).start()

    def _tcp_conn(self, conn: socket.socket) -> None:
        conn.settimeout(0.5)
        buf = b""
        with conn:
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(512)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not chunk:
                    return
                buf += chunk
                while len(buf) >= 7:
                    tid, _, length, unit = struct.unpack(">HHHB", buf[:7])
                    if len(buf) < 6 + length:
                        break
                    pdu, buf = buf[7:6 + length], buf[6 + length:]
                    try:
                        good = self._answer(pdu)
                    except ValueError:
                        continue
                    kind = self.m.pick(rtu=False)
                    if kind == "silence":
                        continue
                    out = _tcp_frames(self.m, kind, tid, unit, good) if kind != "ok" else \
                        struct.pack(">HHHB", tid, 0, len(good) + 1, unit) + good
                    try:
                        conn.sendall(out)
                    except OSError:
                        return

    def _rtu_loop(self) -> None:
        buf = b""
        while not self._stop.is_set():
            r, _, _ = select.select([self._master], [], [], 0.1)
            if not r:
                buf = b""  # a gap: the next bytes start a new frame
                continue
            try:
                buf += os.read(self._master, 512)
            except OSError:
                return
            n = modbus.rtu_request_length(buf)
            if n is None or len(buf) < n:
                continue
            frame, buf = buf[:n], buf[n:]
            if not modbus.crc_ok(frame):
                continue
            try:
                good = self._answer(frame[1:-2])
            except ValueError:
                continue
            kind = self.m.pick(rtu=True)
            if kind == "silence":
                continue
            out = _rtu_frames(self.m, kind, frame[0], good) if kind != "ok" else \
                modbus.with_crc(bytes((frame[0],)) + good)
            try:
                os.write(self._master, out)
            except OSError:
                return


def fuzz_run(profile_path: str, frames: int, tcp: bool = True, seed: int = 1,
             timeout: float = 0.05, time_limit: float = 120.0,
             bad_share: float = 0.5) -> dict[str, Any]:
    """Poll a fuzzing device until it has answered ``frames`` requests (or ``time_limit``).

    Returns counts and every breach: a poll that raised, a poll longer than its
    bound, a reading served good with a value that differs from the truth, and
    the memory growth (tracemalloc) between the first and the last tenth.
    """
    prof = load_profile(profile_path)
    image = static_image(profile_path)
    policy = RetryPolicy(timeout=timeout, retries=1, backoff=0.0, backoff_max=0.0)
    # the truth: the same image read cleanly
    with FuzzDevice(image, prof.unit, Mutator(seed, bad_share=0.0, silence_share=0.0),
                    tcp) as clean:
        t = TcpTransport("127.0.0.1", clean.port, policy) if tcp else \
            RtuTransport(SerialSettings(clean.path, baud=115200), policy)
        ref_inv = Inverter(t, unit=prof.unit)
        truth = ref_inv.poll(0.0)
        assert ref_inv.last_error is None, ref_inv.last_error
        t.close()
    truth = {k: r.value for k, r in truth.items() if r.quality.good}
    m = Mutator(seed, bad_share=bad_share, silence_share=min(0.02, bad_share / 10))
    out: dict[str, Any] = {"profile": prof.name, "transport": "tcp" if tcp else "rtu",
                           "polls": 0, "failed_polls": 0, "good_polls": 0, "raised": [],
                           "wrong_good": [], "slow_polls": 0, "max_poll_s": 0.0}
    with FuzzDevice(image, prof.unit, m, tcp) as dev:
        t = TcpTransport("127.0.0.1", dev.port, policy) if tcp else \
            RtuTransport(SerialSettings(dev.path, baud=115200), policy)
        inv = Inverter(t, unit=prof.unit, nameplate_every=1)
        t_end = time.monotonic() + time_limit
        tracemalloc.start()
        mem: list[int] = []
        n_models = 12
        # bound: discovery walks every model, then each poll reads every span; each
        # transaction takes at most (retries + 1) timeouts
        bound = (n_models + 6) * (policy.retries + 1) * (timeout + 0.05) + 0.5
        while dev.frames < frames and time.monotonic() < t_end:
            t0 = time.monotonic()
            try:
                snap = inv.poll(1.0)
            except Exception as exc:  # poll must never raise
                out["raised"].append(repr(exc))
                snap = {}
            dt = time.monotonic() - t0
            out["max_poll_s"] = max(out["max_poll_s"], dt)
            out["slow_polls"] += dt > bound
            out["polls"] += 1
            if inv.last_error is None:
                out["good_polls"] += 1
            else:
                out["failed_polls"] += 1
            for k, r in snap.items():
                if r.quality.good and k in truth and r.value != truth[k]:
                    out["wrong_good"].append((k, r.value, truth[k], tuple(m.recent)))
                elif r.quality.good and k not in truth and r.value is not None:
                    out["wrong_good"].append((k, r.value, None))
            if out["polls"] % 10 == 0:
                mem.append(tracemalloc.get_traced_memory()[0])
        tracemalloc.stop()
        t.close()
        out["frames"] = dev.frames
    out["seconds"] = round(time.monotonic() - (t_end - time_limit), 1)
    out["poll_bound_s"] = round(bound, 3)
    out["max_poll_s"] = round(out["max_poll_s"], 3)
    out["mutations"] = dict(sorted(m.counts.items()))
    k = max(1, len(mem) // 10)
    out["mem_growth_bytes"] = (sum(mem[-k:]) // k - sum(mem[:k]) // k) if len(mem) >= 4 else 0
    out["wrong_good"] = out["wrong_good"][:20]
    return out
