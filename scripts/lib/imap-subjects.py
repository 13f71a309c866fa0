"""Prints the Subject of every message in a mailbox's INBOX, one per line, read with Python's
imaplib over STARTTLS (the local cluster's certificates are self-signed, so none is checked).

    python3 scripts/lib/imap-subjects.py HOST:PORT USER PASSWORD

The node tests and bench/cluster.sh read mail through the IMAP Service with it.
"""
import email
import imaplib
import ssl
import sys

host, port = sys.argv[1].rsplit(":", 1)
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
imap = imaplib.IMAP4(host, int(port), timeout=30)
imap.starttls(context)
imap.login(sys.argv[2], sys.argv[3])
_, data = imap.select("INBOX", readonly=True)
if int(data[0]) > 0:
    _, data = imap.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    # Each message is a (prefix, headers) pair followed by the closing parenthesis.
    for item in data:
        if isinstance(item, tuple):
            print(email.message_from_bytes(item[1])["Subject"])
imap.logout()
