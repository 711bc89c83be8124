#!/usr/bin/python3
"""Stand-in for Teleport's `tctl`, the two commands the Teleport VM's
`waddlec-teleport-node-keys` runs (tool/tctl/common/auth_command.go, kingpin
grammar: `--name=value` or `--name value`; RFD 98 "Manual certificate
rotation"):

  tctl auth export --type=openssh
      prints the OpenSSH CA as `cert-authority KEY` lines, as tctl's export
      of an SSH CA does;
  tctl auth sign --host=PRINCIPALS --format=openssh --out=PATH
                 [--overwrite] [--ttl=DURATION]
      makes a key pair and a host certificate from the host CA for the
      comma-separated PRINCIPALS, written to PATH and PATH-cert.pub, then
      prints `The credentials have been written to PATH, PATH-cert.pub`.
      Only `--format=openssh` is accepted for `--host` (tctl: "invalid
      --format flag"); an existing PATH without --overwrite is refused.

The CAs are ssh-keygen keys in $TCTL_STAND_IN_DIR (`openssh_ca`,
`host_ca`), standing in for the auth service's. Anything else fails as tctl
does: `ERROR: ...` on stderr, exit status 1. Every call is appended to
$TCTL_STAND_IN_DIR/calls.log.
"""

import os
import subprocess
import sys


def fail(message):
    sys.stderr.write(f"ERROR: {message}\n")
    sys.exit(1)


def parse(argv, allowed):
    flags, words, i = {}, [], 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            if name not in allowed:
                fail(f"unknown long flag '--{name}'")
            if allowed[name] and not eq:
                i += 1
                if i == len(argv):
                    fail(f"expected argument for flag '--{name}'")
                value = argv[i]
            flags[name] = value if allowed[name] else True
        else:
            words.append(arg)
        i += 1
    return flags, words


def main():
    state = os.environ["TCTL_STAND_IN_DIR"]
    with open(os.path.join(state, "calls.log"), "a") as log:
        log.write(" ".join(sys.argv[1:]) + "\n")
    args = sys.argv[1:]
    if args[:2] == ["auth", "export"]:
        flags, words = parse(args[2:], {"type": True})
        if words:
            fail(f"unexpected {words[0]}")
        if flags.get("type") != "openssh":
            fail("this stand-in exports only --type=openssh")
        with open(os.path.join(state, "openssh_ca.pub")) as f:
            print(f"cert-authority {f.read().strip()}")
        return
    if args[:2] == ["auth", "sign"]:
        flags, words = parse(
            args[2:], {"host": True, "format": True, "out": True, "overwrite": False, "ttl": True}
        )
        if words:
            fail(f"unexpected {words[0]}")
        if "out" not in flags:
            fail("required flag --out not provided")
        if "host" not in flags:
            fail("--user or --host must be specified")
        if flags.get("format", "file") != "openssh":
            fail(f'invalid --format flag "{flags.get("format", "file")}", only "openssh" is supported')
        out = flags["out"]
        if os.path.exists(out) and not flags.get("overwrite"):
            fail(f"{out} already exists; use --overwrite")
        for path in (out, out + ".pub", out + "-cert.pub"):
            if os.path.exists(path):
                os.remove(path)
        subprocess.run(["ssh-keygen", "-q", "-t", "ecdsa", "-N", "", "-f", out], check=True)
        subprocess.run(
            ["ssh-keygen", "-q", "-s", os.path.join(state, "host_ca"), "-I", "teleport-host",
             "-h", "-n", flags["host"], out + ".pub"],
            check=True,
        )
        os.remove(out + ".pub")
        print(f"\nThe credentials have been written to {out}, {out}-cert.pub")
        return
    fail(f"this stand-in knows only `tctl auth export` and `tctl auth sign`, not {' '.join(args)!r}")


if __name__ == "__main__":
    main()
