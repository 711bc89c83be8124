"""SDN: zones, vnets, subnets with PVE's pending model, `PUT /cluster/sdn` (apply).

Transcribed (not copied) from pve-network (at ecf98c5):

* `src/PVE/API2/Network/SDN.pm`: `index` (vnets, zones, controllers, ipams,
  dns, fabrics), `reload` (commit the running config inside
  lock_sdn_config, then the `reloadnetworkall` worker runs
  `pvesh set /nodes/<node>/network --regenerate-frr N` for every node of the
  node list; a failure is only `warn`ed, so an unreachable node does not
  stop the apply and keeps its old, now `pending`, local configuration);
* `src/PVE/Network/SDN.pm`: `pending_config` (`state` new/changed/deleted,
  `pending` values), `compile_running_cfg` (`version` + 1), `lock_sdn_config` /
  `lock_sdn_domain` (errors become `<errmsg>: <error>`; a parameter exception
  is stringified as `400 Parameter verification failed.` + `key: msg` lines;
  without quorum pve-cluster's cfs_lock fails `cfs-lock 'domain-sdn' error: no quorum!`),
  `get_local_vnets` (vnets of the running config listed in
  `/nodes/{node}/network` as `type: vnet`);
* `src/PVE/API2/Network/SDN/{Zones,Vnets,Subnets}.pm`: index/read (`pending`,
  `running`), create (`sdn zone object ID 'x' already defined`, dns/ipam
  checks), update (`digest`, `delete`), delete; `$check_vnet_access`;
* `src/PVE/Network/SDN/Zones/{Plugin,SimplePlugin,VxlanPlugin,EvpnPlugin}.pm`:
  per-type options (pve-common `SectionConfig.pm` `check_config`/`check_value`:
  `unexpected property 'x'`, `missing value for required option 'x'`),
  `on_update_hook` (vxlan: exactly one of peers/fabric; evpn: the controller
  must exist -- controllers are not simulated, so every evpn zone is refused),
  `vnet_update_hook` (simple: no tag; vxlan/evpn: tag required, unique among
  vxlan/evpn vnets), `on_delete_hook` (`zone x is used by vnet y`), `get_mtu`
  / generate_sdn_config (vxlan vnets: `mtu` or 1450);
* `src/PVE/Network/SDN/VnetPlugin.pm`, `SubnetPlugin.pm` (subnet id
  `<zone>-<network>-<mask>`, `gateway` inside the subnet unless /32,
  vlan-aware vnets take no subnets), `Zones.pm` `status` (per node:
  `available`, or `pending` while the node's applied version is older).
"""

import copy
import hashlib
import ipaddress

from .perlish import split_list
from .state import ApiError, die, param_error

KINDS = ("zones", "vnets", "subnets")
ZONE_OPTIONS = {
    "simple": {"nodes", "mtu", "dns", "reversedns", "dnszone", "ipam", "dhcp"},
    "vxlan": {"nodes", "peers", "vxlan-port", "mtu", "dns", "reversedns", "dnszone", "ipam", "fabric"},
    "evpn": {"nodes", "vrf-vxlan", "controller", "exitnodes", "exitnodes-local-routing", "exitnodes-primary",
             "advertise-subnets", "disable-arp-nd-suppression", "bridge-disable-mac-learning", "rt-import",
             "vxlan-port", "mtu", "mac", "dns", "reversedns", "dnszone", "ipam"},
}
ZONE_REQUIRED = {"evpn": ("controller", "vrf-vxlan")}
VNET_OPTIONS = {"zone", "tag", "alias", "vlanaware", "isolate-ports"}
SUBNET_OPTIONS = {"vnet", "gateway", "snat", "dnszoneprefix", "dhcp-range", "dhcp-dns-server"}
IPAMS = {"pve"}  # Ipams.pm config(): the built-in `pve` IPAM always exists
INTEGER_KEYS = {"mtu", "vxlan-port", "vrf-vxlan", "tag"}
BOOLEAN_KEYS = {"exitnodes-local-routing", "advertise-subnets", "disable-arp-nd-suppression",
                "bridge-disable-mac-learning", "vlanaware", "isolate-ports", "snat"}
CONTROL = ("lock-token", "digest", "delete", "release-lock", "pending", "running")
PLUGIN_PM = "/usr/share/perl5/PVE/Network/SDN/Zones"


class ParamExc(Exception):
    """raise_param_exc inside a locked section."""

    def __init__(self, errors):
        super().__init__(errors)
        self.errors = errors


def _exc_text(errors):
    """PVE::Exception stringify of a parameter exception (keys sorted; Perl's order is random)."""
    return "400 Parameter verification failed.\n" + "".join(f"{k}: {v}\n" for k, v in sorted(errors.items()))


def _value(key, value):
    if key in INTEGER_KEYS or key in BOOLEAN_KEYS:
        return int(value)
    if key in ("nodes", "exitnodes"):  # decode_value -> hash, encode_value -> sorted list
        return ",".join(sorted(set(split_list(value))))
    return value


def _cidr_of_subnet(subnet_id):
    """parse_sdn_subnet_id: `10.0.0.0/24` or `<zone>-10.0.0.0-24`."""
    if "/" in subnet_id:
        return subnet_id
    parts = subnet_id.split("-")
    return f"{parts[1]}/{parts[2]}" if len(parts) >= 3 else subnet_id


class SdnConfig:
    """The cluster's SDN configuration: the edited sections (`config`) and the applied
    running config (`running`, with its `version`)."""

    def __init__(self):
        self.config = {kind: {} for kind in KINDS}
        self.running = None

    def digest(self, kind):
        text = ""
        for sid, section in self.config[kind].items():
            text += f"{section.get('type')}: {sid}\n"
            text += "".join(f"\t{k} {v}\n" for k, v in sorted(section.items()) if k != "type") + "\n"
        return hashlib.sha1(text.encode()).hexdigest()

    def running_ids(self, kind):
        return (self.running or {}).get(kind, {})

    def version(self):
        return (self.running or {}).get("version")

    def snapshot(self):
        return {"config": self.config, "running": self.running}


class SdnApi:
    def __init__(self, api):
        self.api = api
        self.node = api.node
        self.sdn = SdnConfig()
        self.node.sdn = self.sdn
        self.routes = {
            ("GET", "/cluster/sdn"): self.index,
            ("PUT", "/cluster/sdn"): self.reload,
            ("GET", "/cluster/sdn/zones"): lambda p, ctx: self.list_objects("zones", p, ctx),
            ("POST", "/cluster/sdn/zones"): self.zone_create,
            ("GET", "/cluster/sdn/zones/{zone}"): lambda p, ctx: self.read_object("zones", p["zone"], p),
            ("PUT", "/cluster/sdn/zones/{zone}"): self.zone_update,
            ("DELETE", "/cluster/sdn/zones/{zone}"): self.zone_delete,
            ("GET", "/cluster/sdn/vnets"): lambda p, ctx: self.list_objects("vnets", p, ctx),
            ("POST", "/cluster/sdn/vnets"): self.vnet_create,
            ("GET", "/cluster/sdn/vnets/{vnet}"): self.vnet_read,
            ("PUT", "/cluster/sdn/vnets/{vnet}"): self.vnet_update,
            ("DELETE", "/cluster/sdn/vnets/{vnet}"): self.vnet_delete,
            ("GET", "/cluster/sdn/vnets/{vnet}/subnets"): self.subnet_index,
            ("POST", "/cluster/sdn/vnets/{vnet}/subnets"): self.subnet_create,
            ("GET", "/cluster/sdn/vnets/{vnet}/subnets/{subnet}"): self.subnet_read,
            ("PUT", "/cluster/sdn/vnets/{vnet}/subnets/{subnet}"): self.subnet_update,
            ("DELETE", "/cluster/sdn/vnets/{vnet}/subnets/{subnet}"): self.subnet_delete,
            ("GET", "/nodes/{node}/sdn/zones"): self.node_zones,
        }

    # --- helpers -------------------------------------------------------------------

    def _locked(self, errmsg, code):
        """lock_sdn_config -> lock_sdn_domain: every error is prefixed with errmsg."""
        if not self.node.quorate():
            raise die(f"{errmsg}: cfs-lock 'domain-sdn' error: no quorum!")
        try:
            return code()
        except ParamExc as exc:
            raise die(f"{errmsg}: {_exc_text(exc.errors)}") from None
        except ApiError as err:
            if err.status == 501:
                raise
            if err.errors:
                raise die(f"{errmsg}: {_exc_text(err.errors)}") from None
            raise die(f"{errmsg}: {err.message}") from None

    def _view(self, kind, p):
        """(ids, digest) of the config GET reads: pending_config, the running one, or the file."""
        if p.get("pending") == "1":
            return self._pending(kind), None
        if p.get("running") == "1":
            return self.sdn.running_ids(kind), None
        return self.sdn.config[kind], self.sdn.digest(kind)

    def _pending(self, kind):
        """PVE::Network::SDN::pending_config."""
        running, config = self.sdn.running_ids(kind), self.sdn.config[kind]
        pending = {}
        for oid in sorted(running):
            run_obj, cfg_obj = running[oid], config.get(oid) or {}
            entry = pending.setdefault(oid, {})
            for key in sorted(run_obj):
                entry[key] = run_obj[key]
                if not cfg_obj:
                    entry["state"] = "deleted"
                elif key not in cfg_obj:
                    entry.setdefault("pending", {})[key] = "deleted"
                    entry["state"] = "changed"
                elif str(run_obj[key]) != str(cfg_obj[key]):
                    entry["state"] = "changed"
            if entry.get("state") and "pending" not in entry:
                entry["pending"] = {}
        for oid in sorted(config):
            run_obj, cfg_obj = running.get(oid) or {}, config[oid]
            entry = pending.setdefault(oid, {})
            for key in sorted(cfg_obj):
                if key in ("type", "vnet"):
                    entry[key] = cfg_obj[key]
                elif key not in run_obj or str(cfg_obj[key]) != str(run_obj[key]):
                    entry.setdefault("pending", {})[key] = cfg_obj[key]
                if not run_obj:
                    entry["state"] = "new"
                elif key not in run_obj:
                    entry["state"] = "changed"
            if entry.get("state") and "pending" not in entry:
                entry["pending"] = {}
        return pending

    def _render(self, kind, oid, obj, digest):
        data = copy.deepcopy(obj)
        data[{"zones": "zone", "vnets": "vnet", "subnets": "subnet"}[kind]] = oid
        data["digest"] = digest
        if kind == "subnets":
            cidr = _cidr_of_subnet(oid)
            zone = oid.split("-")[0]
            data.update(id=oid, cidr=cidr, zone=zone, network=cidr.split("/")[0], mask=cidr.split("/")[1])
            data["dhcp-range"] = data.get("dhcp-range", [])
        return data

    def _missing(self, kind, oid):
        noun = {"zones": "sdn", "vnets": "sdn vnet", "subnets": "sdn subnet"}[kind]
        return die(f"{noun} '{oid}' does not exist")

    # --- index / apply -----------------------------------------------------------------

    def index(self, p, ctx):
        return [{"id": i} for i in ("vnets", "zones", "controllers", "ipams", "dns", "fabrics")]

    def reload(self, p, ctx):
        def commit():
            running = copy.deepcopy(self.sdn.config)
            running["version"] = (self.sdn.version() or 0) + 1
            self.sdn.running = running
        self._locked("could not commit SDN config", commit)
        regenerate_frr = 0  # no controller/fabric is simulated, so the config never has FRR parts

        def worker(log):
            self.node.check_cfs_quorum()
            for name in sorted(self.node.members):
                member = self.node.members[name]
                log.print(f"{name}: reloading network config")
                if not member.online:
                    log.print(f"ssh: connect to host {member.ip} port 22: No route to host")
                    log.print(f"command 'pvesh set /nodes/{name}/network --regenerate-frr {regenerate_frr}' "
                              "failed: exit code 255")
                    continue
                with self.node.on_node(name):
                    self.node.run_task("srvreload", "networking", lambda _log: self.reload_node(member))
        return self.node.run_task("reloadnetworkall", "", worker)

    def reload_node(self, member):
        """reload_network_config's worker on one node: interfaces.new into place, the SDN
        config of the running version written, `ifreload -a`."""
        member.network.apply()
        self.apply_on(member)

    def apply_on(self, member):
        """generate_etc_network_config: the node's vnets are those of the running config whose
        zone includes it; a vnet gets the zone's MTU (vxlan: `mtu` or 1450)."""
        if self.sdn.running is None:
            return
        zones, vnets = self.sdn.running_ids("zones"), self.sdn.running_ids("vnets")
        applied = {}
        for vnet, cfg in sorted(vnets.items()):
            zone = zones.get(cfg.get("zone"))
            if zone is None or not self._zone_on(zone, member.name):
                continue
            mtu = zone.get("mtu")
            if zone["type"] == "vxlan" and not mtu:
                mtu = 1450
            applied[vnet] = {"zone": cfg["zone"], "zone-type": zone["type"], "mtu": mtu or 1500,
                             "tag": cfg.get("tag"), "vlanaware": cfg.get("vlanaware", 0)}
        member.sdn_vnets = applied
        member.sdn_version = self.sdn.version()

    @staticmethod
    def _zone_on(zone, node):
        return not zone.get("nodes") or node in zone["nodes"].split(",")

    def node_zone_status(self, member):
        """Zones.pm status on that node: {zone: {status, zone-type}}."""
        version = self.sdn.version()
        if not version:
            return {}
        stale = member.sdn_version is None or member.sdn_version < version
        return {zid: {"status": "pending" if stale else "available", "zone-type": zone["type"]}
                for zid, zone in sorted(self.sdn.running_ids("zones").items()) if self._zone_on(zone, member.name)}

    def node_zones(self, p, ctx):
        """API2/Network/SDN/Nodes/Zones.pm index."""
        member = self.node.members[self.node.name]
        return [{"zone": zid, "status": st["status"]} for zid, st in self.node_zone_status(member).items()
                if ctx.allowed(f"/sdn/zones/{zid}", ["SDN.Audit"])]

    def local_vnets(self, node, ctx):
        """get_local_vnets: vnets of the running config on `node` (as `/nodes/{node}/network` lists them)."""
        result = {}
        zones = self.sdn.running_ids("zones")
        for vnet, cfg in sorted(self.sdn.running_ids("vnets").items()):
            zone = zones.get(cfg.get("zone"))
            if not cfg.get("zone") or zone is None:
                continue
            if ctx.perms is not None and not ctx.perms.check_sdn_bridge(cfg["zone"], vnet, ["SDN.Audit", "SDN.Use"],
                                                                       noerr=True):
                continue
            if not self._zone_on(zone, node):
                continue
            result[vnet] = {"type": "vnet", "active": "1", "ipam": 1 if zone.get("ipam") else 0,
                            "vlanaware": 1 if cfg.get("vlanaware") else 0, "comments": cfg.get("alias")}
        return result

    def zone_of_vnet(self, bridge):
        """GuestHelpers.pm check_vnet_access: the zone of a vnet of the running config."""
        cfg = self.sdn.running_ids("vnets").get(bridge)
        return cfg.get("zone") if cfg else None

    # --- generic list/read ------------------------------------------------------------

    def list_objects(self, kind, p, ctx):
        ids, digest = self._view(kind, p)
        result = []
        for oid in sorted(ids):
            obj = ids[oid]
            if kind == "zones":
                if not ctx.allowed(f"/sdn/zones/{oid}", ["SDN.Audit", "SDN.Allocate"], any_=True):
                    continue
                if p.get("type") and obj.get("type") != p["type"]:
                    continue
            if kind == "vnets":
                zone = obj.get("zone") or obj.get("pending", {}).get("zone")
                if not ctx.allowed(f"/sdn/zones/{zone}/{oid}", ["SDN.Audit", "SDN.Allocate"], any_=True):
                    continue
            result.append(self._render(kind, oid, obj, digest))
        return result

    def read_object(self, kind, oid, p):
        ids, digest = self._view(kind, p)
        if oid not in ids:
            raise self._missing(kind, oid)
        return self._render(kind, oid, ids[oid], digest)

    # --- zones ---------------------------------------------------------------------------

    def _zone_settings(self, type_, p, create):
        """SectionConfig check_config of the zone plugin."""
        if type_ not in ZONE_OPTIONS:
            raise ApiError(501, f"pve-sim: SDN zones of type '{type_}' are not simulated")
        settings = {}
        for key, value in sorted(p.items()):
            if key in CONTROL or key in ("zone", "type"):
                continue
            if key not in ZONE_OPTIONS[type_]:
                raise die(f"unexpected property '{key}'")
            settings[key] = _value(key, value)
        if create:
            for key in ZONE_REQUIRED.get(type_, ()):
                if key not in p:
                    raise die(f"missing value for required option '{key}'")
        return settings

    def _zone_hooks(self, zid, zone):
        """create/update checks inside the lock, then the plugin's on_update_hook."""
        if zone.get("dns"):
            raise ParamExc({"dns": f"{zone['dns']} don't exist"})
        if zone.get("reversedns"):
            raise ParamExc({"reversedns": f"{zone['reversedns']} don't exist"})
        if zone.get("dnszone") and not zone.get("dns"):
            raise ParamExc({"dnszone": "missing dns server"})
        if zone.get("ipam") and zone["ipam"] not in IPAMS:
            raise ParamExc({"ipam": f"{zone['ipam']} not existing"})
        if zone["type"] == "vxlan" and bool(zone.get("peers")) == bool(zone.get("fabric")):
            message = "must have exactly one of peers / fabric defined"
            raise ParamExc({"peers": message, "fabric": message})
        if zone["type"] == "evpn":  # no controller is simulated, so none exists
            raise die(f"controller {zone['controller']} don't exist at {PLUGIN_PM}/EvpnPlugin.pm line 354.")

    def zone_create(self, p, ctx):
        zid, type_ = p["zone"], p["type"]
        settings = self._zone_settings(type_, p, True)
        self.node.check_cfs_quorum()

        def code():
            if zid in self.sdn.config["zones"]:
                raise die(f"sdn zone object ID '{zid}' already defined")
            zone = dict(settings, type=type_)
            self._zone_hooks(zid, zone)
            self.sdn.config["zones"][zid] = zone
        self._locked("create sdn zone object failed", code)
        return None

    def zone_update(self, p, ctx):
        zid = p["zone"]

        def code():
            zones = self.sdn.config["zones"]
            if p.get("digest") and p["digest"] != self.sdn.digest("zones"):
                raise die("detected modified configuration - file changed by other user? Try again.")
            if zid not in zones:
                raise self._missing("zones", zid)
            zone = dict(zones[zid])
            settings = self._zone_settings(zone["type"], p, False)
            for key in split_list(p.get("delete")):
                if key in settings:
                    raise die(f"cannot set and delete property '{key}' at the same time!")
                if key in ZONE_REQUIRED.get(zone["type"], ()):
                    raise die(f"cannot delete required option '{key}'!")
                zone.pop(key, None)
            zone.update(settings)
            self._zone_hooks(zid, zone)
            zones[zid] = zone
        self._locked("update sdn zone object failed", code)
        return None

    def zone_delete(self, p, ctx):
        zid = p["zone"]

        def code():
            if zid not in self.sdn.config["zones"]:
                raise self._missing("zones", zid)
            for vnet, cfg in self.sdn.config["vnets"].items():
                if cfg.get("zone") == zid:
                    raise die(f"zone {zid} is used by vnet {vnet} at {PLUGIN_PM}/Plugin.pm line 148.")
            del self.sdn.config["zones"][zid]
        self._locked("delete sdn zone object failed", code)
        return None

    # --- vnets ---------------------------------------------------------------------------

    def _vnet_settings(self, p):
        settings = {}
        for key, value in sorted(p.items()):
            if key in CONTROL or key in ("vnet", "type"):
                continue
            if key not in VNET_OPTIONS:
                raise die(f"unexpected property '{key}'")
            settings[key] = _value(key, value)
        return settings

    def _vnet_hooks(self, vid, vnets):
        """The zone plugin's vnet_update_hook, then VnetPlugin on_update_hook."""
        vnet = vnets[vid]
        zone = self.sdn.config["zones"].get(vnet.get("zone"))
        if zone is None:  # Plugin->lookup(undef)
            raise die("unknown section type ''")
        tag = vnet.get("tag")
        if zone["type"] == "simple" and tag is not None:
            raise ParamExc({"tag": "vlan tag is not allowed on simple zone"})
        if zone["type"] in ("vxlan", "evpn"):
            if tag is None:
                raise ParamExc({"tag": "missing vxlan tag"})
            for other_id in sorted(vnets):
                other = vnets[other_id]
                if other_id == vid:
                    continue
                other_zone = self.sdn.config["zones"].get(other.get("zone"), {})
                if other_zone.get("type") not in ("vxlan", "evpn"):
                    continue
                if other.get("tag") and other["tag"] == tag:
                    raise ParamExc({"tag": f"vxlan tag {tag} already exist in vnet {other_id} in zone "
                                           f"{other['zone']} "})
        if vnet.get("vlanaware") and self._subnets_of(vid):
            raise ParamExc({"vlanaware": "vlanaware vnet is not compatible with subnets"})

    def _subnets_of(self, vid):
        return {sid: s for sid, s in self.sdn.config["subnets"].items() if s.get("vnet") == vid}

    def _vnet_access(self, vid, ctx, privs):
        """$check_vnet_access: the vnet must exist (in the edited config), then SDN privileges."""
        vnet = self.sdn.config["vnets"].get(vid)
        if vnet is None:
            raise self._missing("vnets", vid)
        if ctx.perms is not None:
            ctx.require(f"/sdn/zones/{vnet.get('zone')}/{vid}", privs, any_=True)
        return vnet

    def vnet_read(self, p, ctx):
        self._vnet_access(p["vnet"], ctx, ["SDN.Audit", "SDN.Allocate"])
        return self.read_object("vnets", p["vnet"], p)

    def vnet_create(self, p, ctx):
        vid = p["vnet"]
        self.node.check_cfs_quorum()

        def code():
            settings = self._vnet_settings(p)
            vnets = self.sdn.config["vnets"]
            if vid in vnets:
                raise die(f"sdn vnet object ID '{vid}' already defined")
            candidate = dict(vnets, **{vid: dict(settings, type="vnet")})
            self._vnet_hooks(vid, candidate)
            vnets[vid] = candidate[vid]
        self._locked("create sdn vnet object failed", code)
        return None

    def vnet_update(self, p, ctx):
        vid = p["vnet"]
        self._vnet_access(vid, ctx, ["SDN.Allocate"])

        def code():
            vnets = self.sdn.config["vnets"]
            if p.get("digest") and p["digest"] != self.sdn.digest("vnets"):
                raise die("detected modified configuration - file changed by other user? Try again.")
            settings = self._vnet_settings(p)
            vnet = dict(vnets[vid])
            old_zone = vnet.get("zone")
            for key in split_list(p.get("delete")):
                if key in settings:
                    raise die(f"cannot set and delete property '{key}' at the same time!")
                if key == "zone":
                    raise die("cannot delete required option 'zone'!")
                vnet.pop(key, None)
            vnet.update(settings)
            if self._subnets_of(vid) and vnet.get("zone") != old_zone:
                raise ParamExc({"zone": "can't change zone if subnets exist"})
            candidate = dict(vnets, **{vid: vnet})
            self._vnet_hooks(vid, candidate)
            vnets[vid] = vnet
        self._locked("update sdn vnet object failed", code)
        return None

    def vnet_delete(self, p, ctx):
        vid = p["vnet"]
        self._vnet_access(vid, ctx, ["SDN.Allocate"])

        def code():
            if self._subnets_of(vid):
                raise ParamExc({"vnet": "Can't delete vnet if subnets exists"})
            del self.sdn.config["vnets"][vid]
        self._locked("delete sdn vnet object failed", code)
        return None

    # --- subnets -------------------------------------------------------------------------

    def _subnet_settings(self, p):
        settings = {}
        for key, value in sorted(p.items()):
            if key in CONTROL or key in ("subnet", "type"):
                continue
            if key not in SUBNET_OPTIONS:
                raise die(f"unexpected property '{key}'")
            settings[key] = _value(key, value)
        return settings

    def _subnet_hook(self, sid, subnet):
        """SubnetPlugin on_update_hook."""
        vnet = self.sdn.config["vnets"].get(subnet.get("vnet"))
        if vnet is None:
            raise ParamExc({"vnet": f"{subnet.get('vnet')} don't exist"})
        if vnet.get("vlanaware"):
            raise ParamExc({"vnet": "you can't add a subnet on a vlanaware vnet"})
        cidr = _cidr_of_subnet(sid)
        network = ipaddress.ip_network(cidr, strict=False)
        gateway = subnet.get("gateway")
        if gateway:
            address = ipaddress.ip_address(gateway)
            pointopoint = address.version == 4 and network.prefixlen == 32
            if (address.version != network.version or address not in network) and not pointopoint:
                raise ParamExc({"gateway": f"{gateway} is not in subnet {cidr}"})

    def _subnet_of_vnet(self, p, ctx, privs):
        vnet = self._vnet_access(p["vnet"], ctx, privs)
        return vnet

    def subnet_index(self, p, ctx):
        self._subnet_of_vnet(p, ctx, ["SDN.Audit", "SDN.Allocate"])
        ids, digest = self._view("subnets", p)
        return [self._render("subnets", sid, obj, digest) for sid, obj in sorted(ids.items())
                if (obj.get("vnet") or obj.get("pending", {}).get("vnet")) == p["vnet"]]

    def subnet_read(self, p, ctx):
        self._subnet_of_vnet(p, ctx, ["SDN.Audit", "SDN.Allocate"])
        data = self.read_object("subnets", p["subnet"], p)
        if (data.get("vnet") or data.get("pending", {}).get("vnet")) != p["vnet"]:
            raise param_error({"vnet": "wrong vnet"})
        return data

    def subnet_create(self, p, ctx):
        vnet = self._subnet_of_vnet(p, ctx, ["SDN.Allocate"])
        self.node.check_cfs_quorum()

        def code():
            subnets = self.sdn.config["subnets"]
            sid = f"{vnet.get('zone')}-{p['subnet'].replace('/', '-')}"
            settings = self._subnet_settings(p)
            if sid in subnets:
                raise die(f"sdn subnet object ID '{sid}' already defined")
            subnet = dict(settings, type="subnet")
            self._subnet_hook(sid, subnet)
            subnets[sid] = subnet
        self._locked("create sdn subnet object failed", code)
        return None

    def subnet_update(self, p, ctx):
        self._subnet_of_vnet(p, ctx, ["SDN.Allocate"])
        sid = p["subnet"]

        def code():
            subnets = self.sdn.config["subnets"]
            if p.get("digest") and p["digest"] != self.sdn.digest("subnets"):
                raise die("detected modified configuration - file changed by other user? Try again.")
            if sid not in subnets:
                raise self._missing("subnets", sid)
            settings = self._subnet_settings(p)
            subnet = dict(subnets[sid])
            for key in split_list(p.get("delete")):
                if key in settings:
                    raise die(f"cannot set and delete property '{key}' at the same time!")
                subnet.pop(key, None)
            subnet.update(settings)
            self._subnet_hook(sid, subnet)
            subnets[sid] = subnet
        self._locked("update sdn subnet object failed", code)
        return None

    def subnet_delete(self, p, ctx):
        self._subnet_of_vnet(p, ctx, ["SDN.Allocate"])
        sid = p["subnet"]

        def code():
            if sid not in self.sdn.config["subnets"]:
                raise self._missing("subnets", sid)
            del self.sdn.config["subnets"][sid]
        self._locked("delete sdn subnet object failed", code)
        return None
