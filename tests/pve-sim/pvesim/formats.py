"""Named `format`s of the PVE JSON schema (PVE::JSONSchema::register_format).

A named format is either a validator function (value -> None, raising
FormatError like PVE's `die`) or a dict describing a property string (parsed
by schema.parse_property_string). The names, regexes and messages follow
pve-common, pve-storage, pve-access-control and qemu-server.

Formats the simulator does not implement are *rejected* (fail closed): the
schema uses ~130 names and only those needed by the API calls waddlec makes
(and their neighbours) are implemented; see `lookup`.
"""

import ipaddress
import re

from .perlish import full_match, parse_size, split_list


class FormatError(Exception):
    """A `die` inside format checking; `errors` is set for property strings."""

    def __init__(self, message, errors=None):
        super().__init__(message)
        self.message = message if message.endswith("\n") else message + "\n"
        self.errors = errors or {}

    def pve_text(self):
        """PVE::Exception stringification (message, then 'key: error' lines)."""
        return self.message + "".join(f"{k}: {v}\n" for k, v in self.errors.items())


def fail(message):
    raise FormatError(message)


# --- pve-common: identifiers -------------------------------------------------

CONFIGID_RE = r"[a-z][a-z0-9_-]+"
DNS_LABEL = r"([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?)"


def pve_node(v):
    if not full_match(DNS_LABEL, v):
        fail("value does not look like a valid node name")


def pve_vmid(v):
    if not full_match(r"[1-9][0-9]{2,8}", v):
        fail("value does not look like a valid VM ID")


def _parse_id(v, kind):
    if not full_match(r"[a-z][a-z0-9\-\_\.]*[a-z0-9]", v, re.I):
        fail(f"{kind} ID '{v}' contains illegal characters")


def pve_storage_id(v):
    _parse_id(v, "storage")


def pve_configid(v):
    if not full_match(CONFIGID_RE, v, re.I):
        fail(f"invalid configuration ID '{v}'")


def pve_bridge_id(v):
    if not full_match(r"[-_.\w\d]+", v):
        fail(f"invalid bridge ID '{v}'")


def pve_iface(v):
    if not full_match(r"[a-z][a-z0-9_]{1,20}([:\.]\d+)?", v, re.I):
        fail(f"invalid network interface name '{v}'")


def dns_name(v):
    if not full_match(rf"({DNS_LABEL}\.)*{DNS_LABEL}", v):
        fail("value does not look like a valid DNS name")


def mac_addr(v):
    if not full_match(r"[a-f0-9][02468ace](?::[a-f0-9]{2}){5}", v, re.I):
        fail("value does not look like a valid unicast MAC address")


def urlencoded(v):
    if not full_match(r"[-%a-zA-Z0-9_.!~*'()]*", v):
        fail(f"invalid urlencoded string: {v}")


def disk_size(v):
    if parse_size(v) is None:
        fail(f"value does not look like a valid disk size: {v}")


def pve_tag(v):
    if not full_match(r"[a-z0-9_][a-z0-9_\-\+\.]*", v, re.I):
        fail("invalid characters in tag")


def pve_startup_order(v):
    ok = bool(v)
    for part in v.split(","):
        if re.match(r"^\s*$", part):
            continue
        if not re.match(r"^((order=)?\d+|up=\d+|down=\d+)$", part):
            ok = False
    if not ok:
        fail("unable to parse startup options")


def pve_poolid(v):
    if len(v.split("/")) > 3:
        fail(f"pool name '{v}' nested too deeply (max levels = 3)")
    if not full_match(r"[A-Za-z0-9_\-]+(?:/[A-Za-z0-9_\-]+){0,2}", v):
        fail(f"invalid characters in pool name '{v}'")


def pve_userid(v):
    if not full_match(r"[^\s:/]+@[A-Za-z][A-Za-z0-9\.\-_]+", v):
        fail(f"value '{v}' does not look like a valid user name")


def pve_priv(v):
    """pve-access-control AccessControl.pm verify_privname (PVE 9's privilege list)."""
    from .access import VALID_PRIVS
    if v not in VALID_PRIVS:
        fail(f"invalid privilege '{v}'")


def pve_roleid(v):
    if not full_match(r"[A-Za-z0-9\.\-_]+", v):
        fail(f"role name '{v}' contains invalid characters")


def pve_groupid(v):
    if not full_match(r"[A-Za-z0-9\.\-_]+", v):
        fail(f"group name '{v}' contains invalid characters")


def pve_tokenid(v):
    if not full_match(r"[^\s:/]+@[A-Za-z][A-Za-z0-9\.\-_]+![A-Za-z][A-Za-z0-9\.\-_]+", v):
        fail(f"value '{v}' does not look like a valid token ID")


def email(v):
    if not full_match(r"[\w\+\-\~]+(\.[\w\+\-\~]+)*@[a-zA-Z0-9\-]+(\.[a-zA-Z0-9\-]+)*", v):
        fail("value does not look like a valid email address")


def anything(_v):
    pass


def pve_task_status_type(v):
    if not re.match(r"^(ok|error|warning|unknown)$", v, re.I):
        fail(f"invalid status '{v}'")


# --- pve-common: addresses ---------------------------------------------------


def _is_ipv4(v):
    try:
        ipaddress.IPv4Address(v)
        return True
    except ValueError:
        return False


def _is_ipv6(v):
    if "%" in v:
        return False
    try:
        ipaddress.IPv6Address(v)
        return True
    except ValueError:
        return False


def ipv4(v):
    if not _is_ipv4(v):
        fail("value does not look like a valid IPv4 address")


def ipv6(v):
    if not _is_ipv6(v):
        fail("value does not look like a valid IPv6 address")


def ip(v):
    if not (_is_ipv4(v) or _is_ipv6(v)):
        fail("value does not look like a valid IP address")


def address(v):
    if not (_is_ipv4(v) or _is_ipv6(v) or full_match(rf"({DNS_LABEL}\.)*{DNS_LABEL}", v)):
        fail(f"value does not look like a valid address: {v}")


def _cidr_ok(v, is_addr, max_bits):
    match = re.match(r"^(.*)/(\d+)$", v)
    return bool(match) and is_addr(match.group(1)) and 7 < int(match.group(2)) <= max_bits


def _sdn_object_id(v):
    """pve-network's SDN zone/vnet ids (`pve-sdn-zone-id`, `pve-sdn-vnet-id` in
    Zones/Plugin.pm and VnetPlugin.pm: pattern [a-zA-Z][a-zA-Z0-9]*[a-zA-Z0-9],
    2..8 characters), checked with PVE::JSONSchema's pattern/length messages."""
    if len(v) < 2:
        fail("value must be at least 2 characters long")
    if len(v) > 8:
        fail("value may only be 8 characters long")
    if not full_match(r"[a-zA-Z][a-zA-Z0-9]*[a-zA-Z0-9]", v):
        fail("value does not match the regex pattern")


def pve_sdn_subnet_id(v):
    """SubnetPlugin.pm parse_sdn_subnet_id: a CIDR, or `<zone>-<network>-<mask>`."""
    cidr = v
    if "/" not in v:
        parts = v.split("-")
        cidr = f"{parts[1] if len(parts) > 1 else ''}/{parts[2] if len(parts) > 2 else ''}"
    if not (_cidr_ok(cidr, _is_ipv4, 32) or _cidr_ok(cidr, _is_ipv6, 128)):
        fail("value does not look like a valid CIDR network")


def cidrv4(v):
    if not _cidr_ok(v, _is_ipv4, 32):
        fail("value does not look like a valid IPv4 CIDR network")


def cidrv6(v):
    if not _cidr_ok(v, _is_ipv6, 128):
        fail("value does not look like a valid IPv6 CIDR network")


def cidr(v):
    if not (_cidr_ok(v, _is_ipv4, 32) or _cidr_ok(v, _is_ipv6, 128)):
        fail("value does not look like a valid CIDR network")


def ipv4mask(v):
    """pve_verify_ipv4mask: one of the 33 contiguous dotted masks."""
    bits = [f"{(0xFFFFFFFF << (32 - n)) & 0xFFFFFFFF:032b}" for n in range(33)]
    masks = {".".join(str(int(b[i:i + 8], 2)) for i in range(0, 32, 8)) for b in bits}
    if v not in masks:
        fail("value does not look like a valid IP netmask")


def pve_vlan_id_or_range(v):
    match = re.match(r"^(\d+)(?:-(\d+))?$", v)
    if not match:
        fail(f"invalid VLAN configuration '{v}'")
    for tag in (match.group(1), match.group(2)):
        if tag and not 2 <= int(tag) <= 4094:
            fail(f"invalid VLAN tag '{tag}'")
    if match.group(2) and int(match.group(1)) >= int(match.group(2)):
        fail(f"VLAN range must go from lower to higher tag '{v}'")


def ipv4_config(v):
    if not (v in ("dhcp", "manual") or _cidr_ok(v, _is_ipv4, 32)):
        fail("value does not look like a valid ipv4 network configuration")


def ipv6_config(v):
    if not (v in ("auto", "dhcp", "manual") or _cidr_ok(v, _is_ipv6, 128)):
        fail("value does not look like a valid ipv6 network configuration")


# --- pve-storage -------------------------------------------------------------

STORAGE_CONTENT_TYPES = ("images", "rootdir", "vztmpl", "iso", "backup", "snippets", "import", "none")


def pve_storage_content(v):
    if v not in STORAGE_CONTENT_TYPES:
        fail(f"invalid content type '{v}'")


def pve_volume_id(v):
    if not full_match(r"([a-z][a-z0-9\-\_\.]*[a-z0-9]):(.+)", v, re.I | re.S):
        fail(f"unable to parse volume ID '{v}'")


def pve_volume_id_or_absolute_path(v):
    if v.startswith("/"):
        return
    pve_volume_id(v)


def pve_volume_id_or_qm_path(v):
    if v in ("none", "cdrom"):
        return
    pve_volume_id_or_absolute_path(v)


def storage_pair(v):
    """One entry of PVE::JSONSchema::parse_idmap with pve-storage-id members."""
    if v == "1":
        return
    match = re.match(r"^([^:]+):([^:]+)$", v)
    members = [match.group(1), match.group(2)] if match else [v]
    for member in members:
        try:
            pve_storage_id(member)
        except FormatError as err:
            fail(f"entry '{v}' contains invalid ID - {err.message}")


# --- qemu-server ---------------------------------------------------------------

DRIVE_BUSES = {"ide": 4, "sata": 6, "scsi": 31, "virtio": 16}


def is_valid_drivename(name):
    match = re.match(r"^(ide|sata|scsi|virtio)(\d+)$", name)
    if match and str(int(match.group(2))) == match.group(2):
        return int(match.group(2)) < DRIVE_BUSES[match.group(1)]
    return name in ("efidisk0", "tpmstate0")


def pve_qm_bootdisk(v):
    if not is_valid_drivename(v) or v in ("efidisk0", "tpmstate0"):
        fail(f"invalid boot disk '{v}'")


def pve_qm_bootdev(v):
    if is_valid_drivename(v) and v not in ("efidisk0", "tpmstate0"):
        return
    for base, count in (("net", 32), ("usb", 15), ("hostpci", 16)):
        match = re.match(rf"^{base}(\d+)$", v)
        if match and int(match.group(1)) < count and str(int(match.group(1))) == match.group(1):
            return
    fail(f"invalid boot device '{v}'")


def pve_hotplug_features(v):
    if v == "0":
        return
    features = "network,disk,usb" if v == "1" else v
    for feature in split_list(features):
        if feature not in ("network", "disk", "cpu", "memory", "usb", "cloudinit"):
            fail(f"invalid hotplug feature '{feature}'")


def pve_cpuset(v):
    for part in v.split(","):
        match = re.match(r"^(\d+)(?:-(\d+))?$", part)
        if not match or (match.group(2) and int(match.group(2)) < int(match.group(1))):
            fail(f"unable to parse cpuset option '{v}'")


BUILTIN_CPU_MODELS = {
    "host", "max", "kvm32", "kvm64", "qemu32", "qemu64", "x86-64-v2", "x86-64-v2-AES",
    "x86-64-v3", "x86-64-v4", "486", "pentium", "pentium2", "pentium3", "coreduo",
    "core2duo", "Conroe", "Penryn", "Nehalem", "Nehalem-IBRS", "Westmere", "Westmere-IBRS",
    "SandyBridge", "SandyBridge-IBRS", "IvyBridge", "IvyBridge-IBRS", "Haswell",
    "Haswell-noTSX", "Haswell-IBRS", "Haswell-noTSX-IBRS", "Broadwell", "Broadwell-noTSX",
    "Broadwell-IBRS", "Broadwell-noTSX-IBRS", "Skylake-Client", "Skylake-Client-IBRS",
    "Skylake-Client-noTSX-IBRS", "Skylake-Client-v4", "Skylake-Server", "Skylake-Server-IBRS",
    "Skylake-Server-noTSX-IBRS", "Skylake-Server-v4", "Skylake-Server-v5", "Cascadelake-Server",
    "Cascadelake-Server-noTSX", "Cascadelake-Server-v2", "Cascadelake-Server-v4",
    "Cascadelake-Server-v5", "Cooperlake", "Cooperlake-v2", "Icelake-Client",
    "Icelake-Client-noTSX", "Icelake-Server", "Icelake-Server-noTSX", "Icelake-Server-v3",
    "Icelake-Server-v4", "Icelake-Server-v5", "Icelake-Server-v6", "SapphireRapids",
    "SapphireRapids-v2", "GraniteRapids", "KnightsMill", "athlon", "phenom", "Opteron_G1",
    "Opteron_G2", "Opteron_G3", "Opteron_G4", "Opteron_G5", "EPYC", "EPYC-IBPB", "EPYC-v3",
    "EPYC-Rome", "EPYC-Rome-v2", "EPYC-Milan", "EPYC-Milan-v2", "EPYC-Genoa", "EPYC-Turin",
}


def pve_vm_cpu_type(v):
    if v.startswith("custom-"):
        if not full_match(r"custom-[a-zA-Z0-9_.-]+", v):
            fail(f"invalid custom CPU model '{v}'")
        return
    if v not in BUILTIN_CPU_MODELS:
        fail(f"Built-in cputype '{v}' is not defined (missing 'custom-' prefix?)")


def _opt(type_="string", **kw):
    return dict(type=type_, optional=1, **kw)


CPU_FLAG_RE = r"[+-][a-zA-Z0-9\-_\.]+"
BASE64_VALUE = _opt(pattern=r"[A-Za-z0-9+\/]+={0,2}")

HASH_FORMATS = {
    "pve-qm-boot": {
        "legacy": _opt(pattern="[acdn]{1,4}", default_key=1),
        "order": _opt(format="pve-qm-bootdev-list"),
    },
    "pve-vm-cpu-conf": {
        "cputype": _opt(format="pve-vm-cpu-type", default_key=1),
        "reported-model": _opt(enum=sorted(BUILTIN_CPU_MODELS - {"host", "max"}, key=str.lower)),
        "hidden": _opt("boolean"),
        "hv-vendor-id": _opt(pattern=r"[a-zA-Z0-9]{1,12}"),
        "flags": _opt(pattern=rf"{CPU_FLAG_RE}(;{CPU_FLAG_RE})*"),
        "phys-bits": _opt(pattern=r"(host|\d+)"),
        "guest-phys-bits": _opt("integer", minimum=32, maximum=64),
    },
    "pve-qm-ipconfig": {
        "ip": _opt(format="pve-ipv4-config"),
        "gw": _opt(format="ipv4"),
        "ip6": _opt(format="pve-ipv6-config"),
        "gw6": _opt(format="ipv6"),
    },
    "pve-qm-cicustom": {
        "meta": _opt(format="pve-volume-id"),
        "network": _opt(format="pve-volume-id"),
        "user": _opt(format="pve-volume-id"),
        "vendor": _opt(format="pve-volume-id"),
    },
    "pve-qm-rng": {
        "source": dict(type="string", enum=["/dev/urandom", "/dev/random", "/dev/hwrng"], default_key=1),
        "max_bytes": _opt("integer", default=1024),
        "period": _opt("integer", default=1000),
    },
    "pve-qm-watchdog": {
        "model": _opt(enum=["i6300esb", "ib700"], default_key=1),
        "action": _opt(enum=["reset", "shutdown", "poweroff", "pause", "debug", "none"]),
    },
    "pve-qm-smbios1": {
        "uuid": _opt(pattern=r"[a-fA-F0-9]{8}(?:-[a-fA-F0-9]{4}){3}-[a-fA-F0-9]{12}"),
        "version": BASE64_VALUE,
        "serial": BASE64_VALUE,
        "manufacturer": BASE64_VALUE,
        "product": BASE64_VALUE,
        "sku": BASE64_VALUE,
        "family": BASE64_VALUE,
        "base64": _opt("boolean"),
    },
}

VALIDATORS = {
    "string": anything,
    "pve-node": pve_node,
    "pve-vmid": pve_vmid,
    "pve-storage-id": pve_storage_id,
    "pve-configid": pve_configid,
    "pve-bridge-id": pve_bridge_id,
    "pve-iface": pve_iface,
    "dns-name": dns_name,
    "mac-addr": mac_addr,
    "urlencoded": urlencoded,
    "disk-size": disk_size,
    "pve-tag": pve_tag,
    "pve-startup-order": pve_startup_order,
    "pve-poolid": pve_poolid,
    "pve-userid": pve_userid,
    "pve-priv": pve_priv,
    "pve-roleid": pve_roleid,
    "pve-groupid": pve_groupid,
    "pve-tokenid": pve_tokenid,
    "email": email,
    "pve-task-status-type": pve_task_status_type,
    "ipv4": ipv4,
    "ipv6": ipv6,
    "ip": ip,
    "address": address,
    "CIDR": cidr,
    "CIDRv4": cidrv4,
    "CIDRv6": cidrv6,
    "pve-ipv4-config": ipv4_config,
    "ipv4mask": ipv4mask,
    "pve-vlan-id-or-range": pve_vlan_id_or_range,
    "pve-ipv6-config": ipv6_config,
    "pve-storage-content": pve_storage_content,
    "pve-volume-id": pve_volume_id,
    "pve-volume-id-or-absolute-path": pve_volume_id_or_absolute_path,
    "pve-volume-id-or-qm-path": pve_volume_id_or_qm_path,
    "storage-pair": storage_pair,
    "pve-qm-bootdisk": pve_qm_bootdisk,
    "pve-qm-bootdev": pve_qm_bootdev,
    "pve-hotplug-features": pve_hotplug_features,
    "pve-cpuset": pve_cpuset,
    "pve-vm-cpu-type": pve_vm_cpu_type,
    "pve-sdn-zone-id": _sdn_object_id,
    "pve-sdn-vnet-id": _sdn_object_id,
    "pve-sdn-subnet-id": pve_sdn_subnet_id,
}


def register_hash_format(name, fmt):
    """Formats whose definition lives in apidata.json itself (e.g. pve-qm-ide)."""
    HASH_FORMATS[name] = fmt


def lookup(name):
    """The validator or property-string dict for a format name, None if not implemented."""
    return VALIDATORS.get(name) or HASH_FORMATS.get(name)
