#!/usr/bin/python3
"""Stand-in for a recursive DNS resolver: answers A questions over UDP.

Message format from RFC 1035 §4.1 (header, question, answer resource
records; names in answers point back at the question with a compression
pointer, §4.1.4). A name in the table gets its A records (RCODE 0); a name
under a wildcard entry `*.SUFFIX` (RFC 4592) gets the wildcard's; a name
the table lists with no address gets an empty answer (RCODE 0, "no A
record"); any other name gets NXDOMAIN (RCODE 3).

Usage: dns_stand_in.py RECORDS.json — {"name": ["203.0.113.10", ...]}.
Prints its UDP port on stdout once bound; logs each question's name to
RECORDS.json + ".log".
"""

import json
import socket
import struct
import sys

RECORDS = sys.argv[1]


def question(message):
    labels, at = [], 12
    while message[at]:
        length = message[at]
        labels.append(message[at + 1:at + 1 + length].decode("ascii").lower())
        at += 1 + length
    return ".".join(labels), at + 5


def lookup(records, name):
    if name in records:
        return 0, records[name]
    parts = name.split(".")
    for i in range(1, len(parts)):
        wildcard = "*." + ".".join(parts[i:])
        if wildcard in records:
            return 0, records[wildcard]
    return 3, []


def main():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    while True:
        message, peer = sock.recvfrom(512)
        if len(message) < 17:
            continue
        name, end = question(message)
        qtype = struct.unpack("!H", message[end - 4:end - 2])[0]
        with open(RECORDS + ".log", "a", encoding="utf-8") as log:
            log.write(name + "\n")
        with open(RECORDS, encoding="utf-8") as handle:
            records = {k.lower(): v for k, v in json.load(handle).items()}
        rcode, addresses = lookup(records, name)
        if qtype != 1:
            addresses = []
        header = message[:2] + struct.pack("!BBHHHH", 0x81, 0x80 | rcode, 1, len(addresses), 0, 0)
        answers = b"".join(
            struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton(a) for a in addresses
        )
        sock.sendto(header + message[12:end] + answers, peer)


main()
