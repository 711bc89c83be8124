"""Node network: /nodes/{node}/network, pending (interfaces.new) vs active.

Owns the host's network configuration as PVE keeps it: the active
/etc/network/interfaces text, the pending /etc/network/interfaces.new text
(every API write goes there; `PUT .../network` renames it into place and
runs `ifreload -a`; `DELETE .../network` unlinks it), and the kernel's view
(which interfaces exist and are up). Sources, transcribed not copied:

* pve-manager `PVE/API2/Network.pm` (at 14a22df3): `index` (reads the
  pending file if there is one, adds the result attribute `changes` = the
  `diff -u` of interfaces vs interfaces.new, hides `lo`, `type` filter,
  bridges hidden from users without SDN.Audit/SDN.Use on
  /sdn/zones/localnetwork/<bridge>), `create_network` (`interface already
  exists`, `Default gateway already exists on interface 'x'.`,
  `<port> is already used on interface 'x'.`, cidr -> address/netmask,
  families/method/method6, OVS needs openvswitch-switch), `update_network`
  (`interface does not exist`, `delete`, the same checks), `network_config`,
  `delete_network`, `reload_network_config` (task `srvreload`, id
  `networking`), `revert_network_changes`;
* pve-common `src/PVE/INotify.pm` (`read_file`/`write_file` with the
  shadow file /etc/network/interfaces.new, `ccache_compute_diff`) and
  `src/PVE/Network/Interfaces.pm` (parser/writer, see ifaces.py);
* `active` comes from PVE::ProcFSTools::get_active_network_interfaces
  (IFF_UP): an interface that is only in interfaces.new is not up, so a
  pending bridge is listed *without* `active`; `exists` marks physical NICs.
"""

import difflib
import time

from . import ifaces as ifmod
from .perlish import split_list
from .state import ApiError, die, param_error

DEFAULT_NICS = ["eno1"]
DEFAULT_BRIDGES = [{"iface": "vmbr0", "cidr": "203.0.113.10/24", "ports": "eno1", "gateway": "203.0.113.1"}]
CURRENT = "/etc/network/interfaces"
SHADOW = "/etc/network/interfaces.new"
SIMULATED_TYPES = ("bridge", "eth")


class HostNetwork:
    """Active and pending interfaces files plus the kernel's interfaces (up/exists)."""

    def __init__(self, nics, bridges):
        self.nics = list(nics)
        ifaces = {nic: {"type": "eth", "method": "manual", "method6": "manual", "families": ["inet"]}
                  for nic in self.nics}
        for spec in bridges:
            bridge = {"type": "bridge", "autostart": 1, "bridge_ports": spec.get("ports", ""),
                      "families": ["inet"], "method6": "manual"}
            if spec.get("cidr"):
                bridge.update(method="static", cidr=spec["cidr"])
            else:
                bridge["method"] = "manual"
            if spec.get("gateway"):
                bridge["gateway"] = spec["gateway"]
            ifaces[spec["iface"]] = bridge
        ifaces["lo"] = {"type": "loopback", "method": "loopback", "autostart": 1, "priority": 1,
                        "families": ["inet"]}
        self.active_text = ifmod.write(ifaces, [])
        self.pending_text = None
        self.mtime = {CURRENT: time.time(), SHADOW: None}
        self.up = set()
        self.boot = None  # boot.BootMode with --boot: bridges live in its network namespace
        self._ifreload()

    # --- PVE::INotify read_file/write_file on 'interfaces' ---------------------------

    def read(self):
        """(ifaces, options) from interfaces.new if it exists, else interfaces."""
        text = self.pending_text if self.pending_text is not None else self.active_text
        return ifmod.parse(text, self.nics, self.up)

    def changes(self):
        if self.pending_text is None:
            return None
        lines = difflib.unified_diff(
            self.active_text.split("\n")[:-1], self.pending_text.split("\n")[:-1],
            CURRENT, SHADOW, _stamp(self.mtime[CURRENT]), _stamp(self.mtime[SHADOW]), lineterm="")
        diff = "".join(line + "\n" for line in lines)
        return diff or None

    def write(self, config):
        ifaces, options = config
        try:
            self.pending_text = ifmod.write(ifaces, options)
        except ifmod.InterfacesError as err:
            raise die(str(err)) from None
        self.mtime[SHADOW] = time.time()

    def revert(self):
        self.pending_text = None
        self.mtime[SHADOW] = None

    def apply(self):
        """The srvreload worker: rename interfaces.new into place, `ifreload -a`."""
        if self.pending_text is not None:
            self.active_text = self.pending_text
            self.mtime[CURRENT] = self.mtime[SHADOW]
            self.revert()
        self._ifreload()

    def _ifreload(self):
        """ifupdown2 `ifreload -a`: auto interfaces (and their bridge ports) come up,
        interfaces no longer configured go away, others keep their state."""
        ifaces, _ = ifmod.parse(self.active_text, self.nics, ())
        up = {name for name in self.up if name in ifaces}
        for name, d in ifaces.items():
            if d.get("autostart"):
                up.add(name)
                if d.get("type") == "bridge":
                    up.update((d.get("bridge_ports") or "").split())
        self.up = up
        if self.boot:
            self.boot.sync_bridges(self)

    def device_exists(self, name):
        """/sys/class/net/<name> exists: a physical NIC or a device ifupdown created."""
        if self.boot:
            return self.boot.link_exists(name)
        return name in self.nics or name in self.up

    def primary_address(self):
        """The node's address: the active bridge with the default gateway, else the first
        interface with an IPv4 address (what a node would put into /etc/hosts)."""
        ifaces, _ = ifmod.parse(self.active_text, self.nics, ())
        with_address = [(0 if d.get("gateway") else 1, name, d) for name, d in sorted(ifaces.items())
                        if d.get("cidr") or d.get("address")]
        if not with_address:
            return None
        d = min(with_address, key=lambda t: t[:2])[2]
        return (d.get("cidr") or d.get("address")).split("/")[0]

    def snapshot(self):
        return {"interfaces": self.active_text, "interfaces.new": self.pending_text,
                "up": sorted(self.up), "nics": self.nics}


def _stamp(mtime):
    if mtime is None:
        return "1970-01-01 00:00:00.000000000 +0000"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(mtime)) + f".{int(mtime % 1 * 1e9):09d} +0000"


def _check_duplicate(ifaces, new_iface, key, name):
    for other, d in ifaces.items():
        if other != new_iface and d.get(key):
            raise param_error({key: f"{name} already exists on interface '{other}'."})


def _portlist(d, names):
    ports = ""
    for key in ("bridge_ports", "ovs_ports", "slaves", "ovs_bonds"):
        if d.get(key):
            ports += f" {d[key]}"
            names.append(key)
    return split_list(ports)


def _check_duplicate_ports(ifaces, new_iface, param):
    names = []
    new_ports = set(_portlist(param, names))
    if not new_ports:
        return
    for other, d in ifaces.items():
        if other == new_iface:
            continue
        for port in _portlist(d, []):
            if port in new_ports:
                raise param_error({names[0]: f"{port} is already used on interface '{other}'."})


def _map_cidr_to_address_netmask(param):
    if param.get("cidr"):
        if param.get("address"):
            raise param_error({"address": "address conflicts with cidr"})
        if param.get("netmask"):
            raise param_error({"netmask": "netmask conflicts with cidr"})
        param["address"], param["netmask"] = param.pop("cidr").rsplit("/", 1)
    if param.get("cidr6"):
        if param.get("address6"):
            raise param_error({"address6": "address6 conflicts with cidr6"})
        if param.get("netmask6"):
            raise param_error({"netmask6": "netmask6 conflicts with cidr6"})
        param["address6"], param["netmask6"] = param.pop("cidr6").rsplit("/", 1)


def _check_bridge_vids(param):
    if param.get("bridge_vids"):
        items = split_list(param["bridge_vids"])
        if not items:
            raise param_error({"bridge_vids": "VLAN list items are empty"})
        param["bridge_vids"] = " ".join(items)


def _check_type_simulated(param):
    type_ = param.get("type")
    if type_ and type_.startswith("OVS"):
        raise die("Open VSwitch is not installed (need package 'openvswitch-switch')")
    if type_ not in SIMULATED_TYPES:
        raise ApiError(501, f"pve-sim: network interfaces of type '{type_}' are not simulated")
    if param.get("address6") or param.get("cidr6"):
        raise ApiError(501, "pve-sim: IPv6 interface addresses are not simulated")


class NetworkApi:
    def __init__(self, node):
        self.node = node
        self.sdn = None  # sdn.SdnApi, set by api.Api
        self.routes = {
            ("GET", "/nodes/{node}/network"): self.index,
            ("POST", "/nodes/{node}/network"): self.create,
            ("PUT", "/nodes/{node}/network"): self.reload,
            ("DELETE", "/nodes/{node}/network"): self.revert,
            ("GET", "/nodes/{node}/network/{iface}"): self.read_one,
            ("PUT", "/nodes/{node}/network/{iface}"): self.update,
            ("DELETE", "/nodes/{node}/network/{iface}"): self.delete,
        }

    @property
    def net(self):
        return self.node.network

    def index(self, p, ctx):
        ifaces, _ = self.net.read()
        changes = self.net.changes()
        if changes:
            ctx.attribs["changes"] = changes
        ifaces.pop("lo", None)
        wanted = p.get("type")
        if wanted and wanted != "include_sdn":
            for name in list(ifaces):
                type_ = ifaces[name]["type"]
                is_bridge = type_ in ("bridge", "OVSBridge")
                if not (wanted == type_ or (is_bridge and wanted in ("any_bridge", "any_local_bridge"))):
                    del ifaces[name]
        for name in list(ifaces):
            if ifaces[name]["type"] in ("bridge", "OVSBridge") and not ctx.can_see_bridge(name):
                del ifaces[name]
        if self.sdn and wanted in ("any_bridge", "include_sdn", "vnet"):  # get_local_vnets
            ifaces.update(self.sdn.local_vnets(self.node.name, ctx))
        return [dict(d, iface=name) for name, d in sorted(ifaces.items())]

    def create(self, p, ctx):
        param = {k: v for k, v in p.items() if k not in ("node", "iface")}
        iface = p["iface"]
        ifaces, options = self.net.read()
        if iface in ifaces:
            raise param_error({"iface": "interface already exists"})
        if param.get("gateway"):
            _check_duplicate(ifaces, iface, "gateway", "Default gateway")
        if param.get("gateway6"):
            _check_duplicate(ifaces, iface, "gateway6", "Default ipv6 gateway")
        _check_duplicate_ports(ifaces, iface, param)
        _map_cidr_to_address_netmask(param)
        _check_type_simulated(param)
        param["families"] = ["inet"]
        param["method"] = "static" if param.get("address") else "manual"
        param["method6"] = "manual"
        _check_bridge_vids(param)
        ifaces[iface] = param
        self.net.write((ifaces, options))
        return None

    def update(self, p, ctx):
        param = {k: v for k, v in p.items() if k not in ("node", "iface", "delete")}
        iface = p["iface"]
        ifaces, options = self.net.read()
        if iface not in ifaces:
            raise param_error({"iface": "interface does not exist"})
        d = ifaces[iface]
        for key in split_list(p.get("delete")):
            d.pop(key, None)
            if key == "cidr":
                d.pop("netmask", None)
                d.pop("address", None)
            elif key == "cidr6":
                d.pop("netmask6", None)
                d.pop("address6", None)
        _map_cidr_to_address_netmask(param)
        if param.get("gateway"):
            _check_duplicate(ifaces, iface, "gateway", "Default gateway")
        if param.get("gateway6"):
            _check_duplicate(ifaces, iface, "gateway6", "Default ipv6 gateway")
        _check_duplicate_ports(ifaces, iface, param)
        _check_type_simulated(param)
        param["families"] = ["inet"]
        param["method"] = "static" if param.get("address") else "manual"
        param["method6"] = "manual"
        d.update(param)
        _check_bridge_vids(param)
        self.net.write((ifaces, options))
        return None

    def read_one(self, p, ctx):
        ifaces, _ = self.net.read()
        if p["iface"] not in ifaces:
            raise param_error({"iface": "interface does not exist"})
        return ifaces[p["iface"]]

    def delete(self, p, ctx):
        ifaces, options = self.net.read()
        if p["iface"] not in ifaces:
            raise param_error({"iface": "interface does not exist"})
        del ifaces[p["iface"]]
        self.net.write((ifaces, options))
        return None

    def reload(self, p, ctx):
        def worker(log):  # reload_network_config also writes the SDN running config (have_sdn)
            self.net.apply()
            if self.sdn:
                self.sdn.apply_on(self.node.members[self.node.name])

        return self.node.run_task("srvreload", "networking", worker)

    def revert(self, p, ctx):
        self.net.revert()
        return None
