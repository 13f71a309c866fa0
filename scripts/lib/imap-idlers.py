"""Keeps IMAP clients in IDLE on a mailbox's INBOX, as mail clients do, and reports what each
one sees as JSON lines on standard output:

    {"client": 3, "event": "idle", "exists": 12}       in IDLE (again), with the mailbox's size
    {"client": 3, "event": "exists", "exists": 13}     a new message announced in IDLE
    {"client": 3, "event": "bye"}                      the server said goodbye (* BYE)
    {"client": 3, "event": "closed"}                   the connection closed without one
    {"client": 3, "event": "retry", "error": "..."}    a reconnection failed; tried again in 0.5 s

A client whose connection ends connects again (through the same address: a Service sends it to
a pod that still serves) and goes back to IDLE, for up to RECONNECT_SECONDS.

    python3 scripts/lib/imap-idlers.py HOST:PORT USER PASSWORD COUNT [SECONDS]

It stops after SECONDS (default 600), or when killed. The node tests use it to follow IDLE
sessions through rolling restarts.
"""
import imaplib
import json
import os
import re
import ssl
import sys
import threading
import time

RECONNECT_SECONDS = 120

server, user, password, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
lifetime = float(sys.argv[5]) if len(sys.argv) > 5 else 600
host, port = server.rsplit(":", 1)
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
printing = threading.Lock()


def report(client, event, **fields):
    with printing:
        print(json.dumps({"client": client, "event": event, **fields}), flush=True)


def idle_session():
    """A session in IDLE on INBOX, and the mailbox's size when it began."""
    imap = imaplib.IMAP4(host, int(port), timeout=30)
    try:
        imap.starttls(context)
        imap.login(user, password)
        _, data = imap.select("INBOX", readonly=True)
        imap.send(b"I1 IDLE\r\n")
        while True:
            line = imap.readline()
            if line.startswith(b"+"):
                break
            if not line or line.startswith(b"I1 "):
                raise imaplib.IMAP4.error(f"IDLE refused: {line!r}")
        # In IDLE nothing may come for a long time.
        imap.sock.settimeout(None)
        return imap, int(data[0])
    except BaseException:
        imap.shutdown()
        raise


def connect(client):
    deadline = time.monotonic() + RECONNECT_SECONDS
    while True:
        try:
            return idle_session()
        except (OSError, imaplib.IMAP4.error) as error:
            report(client, "retry", error=repr(error))
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def follow(client):
    while True:
        imap, exists = connect(client)
        report(client, "idle", exists=exists)
        ended = "closed"
        try:
            while True:
                line = imap.readline()
                if not line:
                    break
                if line.startswith(b"* BYE"):
                    ended = "bye"
                    break
                match = re.match(rb"\* (\d+) EXISTS", line)
                if match:
                    report(client, "exists", exists=int(match.group(1)))
        except OSError:
            pass
        report(client, ended)
        try:
            imap.shutdown()
        except OSError:
            pass


for client in range(count):
    threading.Thread(target=follow, args=(client,), daemon=True).start()
time.sleep(lifetime)
os._exit(0)
