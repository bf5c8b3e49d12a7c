"""A fault-injecting TCP proxy for migration links (Python stdlib only).

The source migrates to the proxy's port; the proxy forwards every byte to
the destination daemon and back.  It parses nothing of TLS: it only counts
the bytes it forwards in each direction, and on command it

  - cuts the connection: closes both sides (FIN), or resets them
    (SO_LINGER 0, so the kernel sends RST);
  - stalls it: stops forwarding in one or both directions.  Bytes read
    meanwhile are held (up to HOLD_MAX per direction; beyond that the
    proxy stops reading, so the sender's TCP window fills as on a dead
    path).  A stalled direction also swallows its sender's close: the
    other side sees nothing at all, like a black hole;
  - releases held bytes: all of them or exactly n, then stalls again or
    passes;
  - throttles source->destination to a byte rate, so that each phase of a
    migration lasts long enough to be hit.

Triggers on byte counts: trigger_bytes(pred) freezes the link (both
directions held, nothing lost) just before forwarding the first chunk for
which pred(direction, forwarded_s2d, forwarded_d2s) is true, and sets
an Event the caller waits on, then applies its fault.

One thread runs a selector loop over every accepted connection; the
methods below may be called from any thread.
"""

import selectors
import socket
import struct
import threading
import time

S2D = "s2d"     # source -> destination
D2S = "d2s"     # destination -> source
HOLD_MAX = 1 << 20
CHUNK = 65536


class _Conn:
    def __init__(self, src, dst):
        self.sock = {S2D: src, D2S: dst}      # the side we read from
        self.out = {S2D: dst, D2S: src}       # the side we write to
        self.pending = {S2D: bytearray(), D2S: bytearray()}  # to write
        self.held = {S2D: bytearray(), D2S: bytearray()}     # stalled
        self.eof = {S2D: False, D2S: False}   # reader side closed
        self.shut = {S2D: False, D2S: False}  # we shut the writer side
        self.closed = False


class FaultProxy:
    def __init__(self, target_port, target_host="127.0.0.1", rate=None):
        self.target = (target_host, target_port)
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.lsock.setblocking(False)
        self.port = self.lsock.getsockname()[1]
        self.addr = "127.0.0.1:%d" % self.port
        self.rate = rate                     # bytes/s source->destination
        self.lock = threading.Lock()
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.lsock, selectors.EVENT_READ, None)
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.sel.register(self.wake_r, selectors.EVENT_READ, "wake")
        self.conns = []
        self.fwd = {S2D: 0, D2S: 0}          # bytes forwarded, all conns
        self.stalled = {S2D: False, D2S: False}
        self.release_n = {S2D: None, D2S: None}
        self.trigger = None
        self.triggered = threading.Event()
        self.drop_on_pass = False
        self.tokens = 0.0
        self.t_tokens = time.monotonic()
        self.stop_flag = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    # ---- commands (any thread) ----

    def _kick(self):
        try:
            self.wake_w.send(b"x")
        except OSError:
            pass

    def reset(self, rate=None):
        """Forget faults and triggers; new connections pass (at rate)."""
        with self.lock:
            self.stalled = {S2D: False, D2S: False}
            self.release_n = {S2D: None, D2S: None}
            self.trigger = None
            self.triggered.clear()
            self.rate = rate
            self.fwd = {S2D: 0, D2S: 0}
            self.drop_on_pass = False
        self._kick()

    def trigger_bytes(self, pred):
        with self.lock:
            self.trigger = pred
            self.triggered.clear()
        self._kick()

    def stall(self, s2d=True, d2s=True):
        with self.lock:
            if s2d:
                self.stalled[S2D] = True
            if d2s:
                self.stalled[D2S] = True
        self._kick()

    def freeze(self):
        self.stall(True, True)

    def unstall(self, drop=False):
        """Pass again; held bytes are forwarded, or dropped if drop."""
        with self.lock:
            self.stalled = {S2D: False, D2S: False}
            self.drop_on_pass = drop
        self._kick()

    def release(self, direction, n=None):
        """Forward n held bytes of direction (all if None), keep stalling."""
        with self.lock:
            self.release_n[direction] = n if n is not None else -1
        self._kick()

    def held(self, direction):
        with self.lock:
            return sum(len(c.held[direction]) for c in self.conns)

    def forwarded(self):
        with self.lock:
            return dict(self.fwd)

    def cut(self, rst=True):
        with self.lock:
            for c in self.conns:
                self._close_conn(c, rst)
        self._kick()

    def connections(self):
        with self.lock:
            return len(self.conns)

    def close(self):
        self.stop_flag = True
        self._kick()
        self.thread.join(5)
        with self.lock:
            for c in self.conns:
                self._close_conn(c, True)
        self.lsock.close()

    # ---- the loop (proxy thread) ----

    def _close_conn(self, c, rst):
        if c.closed:
            return
        c.closed = True
        for s in (c.sock[S2D], c.sock[D2S]):
            try:
                self.sel.unregister(s)
            except (KeyError, ValueError):
                pass
            if rst:
                try:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                 struct.pack("ii", 1, 0))
                except OSError:
                    pass
            s.close()

    def _accept(self):
        try:
            src, _ = self.lsock.accept()
        except OSError:
            return
        try:
            dst = socket.create_connection(self.target, timeout=5)
        except OSError:
            src.close()
            return
        for s in (src, dst):
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c = _Conn(src, dst)
        self.conns.append(c)
        self._register(c)

    def _register(self, c):
        """(Re)register c's sockets for what they need now."""
        if c.closed:
            return
        for s in (c.sock[S2D], c.sock[D2S]):
            ev = 0
            # read from s when its direction has room
            d = S2D if s is c.sock[S2D] else D2S
            if not c.eof[d] and len(c.pending[d]) < HOLD_MAX and \
                    len(c.held[d]) < HOLD_MAX:
                ev |= selectors.EVENT_READ
            # write to s what the other direction has pending
            other = D2S if d == S2D else S2D
            if c.pending[other]:
                ev |= selectors.EVENT_WRITE
            try:
                if ev:
                    try:
                        self.sel.modify(s, ev, c)
                    except KeyError:
                        self.sel.register(s, ev, c)
                else:
                    try:
                        self.sel.unregister(s)
                    except KeyError:
                        pass
            except (ValueError, OSError):
                pass

    def _budget(self, d):
        """Bytes direction d may forward now (rate limit on S2D)."""
        if d != S2D or not self.rate:
            return 1 << 30
        now = time.monotonic()
        self.tokens = min(self.tokens + (now - self.t_tokens) * self.rate,
                          self.rate / 10.0)
        self.t_tokens = now
        return int(self.tokens)

    def _move(self, c, d):
        """Move bytes of direction d from held to pending per the mode."""
        if self.stalled[d]:
            n = self.release_n[d]
            if n is not None:
                n = len(c.held[d]) if n < 0 else min(n, len(c.held[d]))
                c.pending[d] += c.held[d][:n]
                del c.held[d][:n]
                self.release_n[d] = None
            return
        if c.held[d]:
            if self.drop_on_pass:
                c.held[d].clear()
            else:
                c.pending[d] += c.held[d]
                c.held[d].clear()

    def _read(self, c, d):
        try:
            data = c.sock[d].recv(CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = None
        if not data:
            c.eof[d] = True
            if data is None and not self.stalled[d]:
                # reset by a peer: pass the reset on
                self._close_conn(c, True)
            return
        if self.trigger is not None and not self.triggered.is_set() and \
                self.trigger(d, self.fwd[S2D], self.fwd[D2S]):
            self.stalled = {S2D: True, D2S: True}
            self.triggered.set()
        c.held[d] += data

    def _write(self, c, d):
        """Write pending bytes of direction d to its receiver."""
        buf = c.pending[d]
        if not buf:
            return
        n = min(len(buf), self._budget(d))
        if n <= 0:
            return
        try:
            k = c.out[d].send(bytes(buf[:n]))
        except BlockingIOError:
            return
        except OSError:
            if not self.stalled[d]:
                self._close_conn(c, True)
            return
        del buf[:k]
        self.fwd[d] += k
        if d == S2D and self.rate:
            self.tokens -= k

    def _step(self, c):
        for d in (S2D, D2S):
            self._move(c, d)
            self._write(c, d)
            # the sender closed and everything got through: pass it on
            if c.eof[d] and not c.pending[d] and not c.held[d] and \
                    not self.stalled[d] and not c.shut[d] and not c.closed:
                c.shut[d] = True
                try:
                    c.out[d].shutdown(socket.SHUT_WR)
                except OSError:
                    pass
        if not c.closed and c.shut[S2D] and c.shut[D2S]:
            self._close_conn(c, False)

    def _loop(self):
        while not self.stop_flag:
            events = self.sel.select(timeout=0.01)
            with self.lock:
                for key, mask in events:
                    if key.data is None:
                        self._accept()
                        continue
                    if key.data == "wake":
                        try:
                            self.wake_r.recv(4096)
                        except OSError:
                            pass
                        continue
                    c = key.data
                    if c.closed:
                        continue
                    for d in (S2D, D2S):
                        if key.fileobj is c.sock[d] and \
                                mask & selectors.EVENT_READ:
                            self._read(c, d)
                for c in self.conns:
                    if not c.closed:
                        self._step(c)
                        self._register(c)
                self.conns = [c for c in self.conns if not c.closed]
