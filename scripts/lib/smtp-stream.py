"""Sends a steady stream of numbered messages over SMTP, a new connection for each as MTAs
mostly do, and reports each attempt as a JSON line on standard output:

    {"n": 17, "result": "accepted"}                       250 after DATA
    {"n": 18, "result": "rejected", "code": 451, ...}     the server answered with an error
    {"n": 19, "result": "failed", "error": "..."}         no answer: refused, reset, timed out

Each message's Subject is `TAG N`. It stops when its standard input closes (after the
messages in flight), or after an hour.

    python3 scripts/lib/smtp-stream.py HOST:PORT FROM TO TAG [SENDERS] [INTERVAL]

SENDERS clients (default 2) each send one message every INTERVAL seconds (default 1): about
two connections a second, within smtp-ingress's default of 120 a minute from one address even
when one pod takes them all. The node tests run it through rolling restarts and deleted pods.
"""
import itertools
import json
import smtplib
import sys
import threading
import time

server, sender, recipient, tag = sys.argv[1:5]
senders = int(sys.argv[5]) if len(sys.argv) > 5 else 2
interval = float(sys.argv[6]) if len(sys.argv) > 6 else 1.0
host, port = server.rsplit(":", 1)
stop = threading.Event()
printing = threading.Lock()
numbers = itertools.count(1)


def report(**fields):
    with printing:
        print(json.dumps(fields), flush=True)


def send(n):
    message = (
        f"From: {sender}\r\nTo: {recipient}\r\nSubject: {tag} {n}\r\n"
        f"Message-ID: <{tag.replace(' ', '.')}.{n}@client.test>\r\n\r\nMessage {n} of the stream.\r\n"
    )
    try:
        with smtplib.SMTP(host, int(port), local_hostname="client.test", timeout=60) as smtp:
            smtp.sendmail(sender, [recipient], message)
        report(n=n, result="accepted")
    except smtplib.SMTPResponseException as error:
        report(n=n, result="rejected", code=error.smtp_code, error=repr(error))
    except smtplib.SMTPRecipientsRefused as error:
        report(n=n, result="rejected", code=error.recipients[recipient][0], error=repr(error))
    except (OSError, smtplib.SMTPException) as error:
        report(n=n, result="failed", error=repr(error))


def stream():
    while not stop.is_set():
        send(next(numbers))
        stop.wait(interval)


threads = [threading.Thread(target=stream) for _ in range(senders)]
for thread in threads:
    thread.start()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
stop.wait(3600)
stop.set()
for thread in threads:
    thread.join()
