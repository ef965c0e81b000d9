"""Helpers of tests/bridge.rs, with pymavlink (PyPI):

  mavtools.py twin IN OUT
      writes a copy of the .tlog IN in which every decodable message of system id 1 is followed,
      at the same recorded time, by the same message re-encoded as system id 2 (two vehicles in
      one stream, as a ground station with two drones on one radio link would record);
  mavtools.py udp HOST:PORT LOG [SECONDS]
      sends the log's frames as UDP datagrams, one frame each, at the recorded pace; with
      SECONDS, starts over until that long has passed (a longer live stream from a short log);
  mavtools.py serial LOG
      opens a pseudo-terminal, prints the path of its serial end, waits until a reader has set
      it to raw mode (as `flightline bridge --serial` does), writes the log's frames to it at the
      recorded pace and exits once the reader has read them all.
"""

import fcntl
import os
import pty
import socket
import struct
import sys
import termios
import time

from pymavlink import mavutil
from pymavlink.dialects.v20 import common as mavlink


def records(path):
    log = mavutil.mavlink_connection(path, dialect="common", robust_parsing=True)
    while True:
        msg = log.recv_match()
        if msg is None:
            return
        if msg.get_type() == "BAD_DATA":
            continue
        yield round(msg._timestamp * 1e6), msg


def twin(source, target):
    with open(target, "wb") as out:
        for ts, msg in records(source):
            out.write(struct.pack(">Q", ts) + msg.get_msgbuf())
            if msg.get_srcSystem() == 1 and not msg.get_type().startswith("UNKNOWN"):
                encoder = mavlink.MAVLink(None, srcSystem=2, srcComponent=msg.get_srcComponent())
                encoder.seq = msg.get_seq()
                out.write(struct.pack(">Q", ts) + msg.pack(encoder))


def udp(address, path, seconds):
    host, port = address.rsplit(":", 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    frames = list(records(path))
    started = time.monotonic()
    sent = 0
    while True:
        lap = time.monotonic()
        first = frames[0][0]
        for ts, msg in frames:
            due = lap + (ts - first) / 1e6
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            sock.sendto(msg.get_msgbuf(), (host, int(port)))
            sent += 1
        if seconds is None or time.monotonic() - started >= seconds:
            break
    print(sent)


def serial(path):
    master, slave = pty.openpty()
    print(os.ttyname(slave), flush=True)
    deadline = time.monotonic() + 60
    while termios.tcgetattr(slave)[3] & termios.ICANON:
        if time.monotonic() > deadline:
            sys.exit("no reader set the serial port to raw mode")
        time.sleep(0.02)
    frames = list(records(path))
    started, first = time.monotonic(), frames[0][0]
    for ts, msg in frames:
        wait = started + (ts - first) / 1e6 - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        os.write(master, msg.get_msgbuf())
    unread = bytearray(4)
    while True:
        fcntl.ioctl(slave, termios.FIONREAD, unread)
        if int.from_bytes(unread, sys.byteorder) == 0:
            break
        time.sleep(0.02)
    print(len(frames), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "twin":
        twin(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "udp":
        udp(sys.argv[2], sys.argv[3], float(sys.argv[4]) if len(sys.argv) > 4 else None)
    elif sys.argv[1] == "serial":
        serial(sys.argv[2])
    else:
        sys.exit(__doc__)
