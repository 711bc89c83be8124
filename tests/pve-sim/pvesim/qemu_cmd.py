"""Boot mode: the QEMU command line for a VM config, as qemu-server builds it.

Transcribed (not copied) from qemu-server at e6352be6 (bumped to 9.2.6; the
9.1 code paths used here are the same): `src/PVE/QemuServer.pm`
`config_to_command` (argument order, -smp/-nodefaults/-boot, vga, serial,
guest agent, balloon, the drive loop, nets, pci bridges, -machine flags),
`QemuServer/OVMF.pm` (`get_ovmf_files`, `generate_ovmf_blockdev`),
`QemuServer/Blockdev.pm` (`generate_drive_blockdev`: throttle -> format ->
file nodes, `get_node_name`, `generate_throttle_group`),
`QemuServer/DriveDevice.pm` (`scsihw_infos`, `print_drivedevice_full`),
`QemuServer/PCI.pm` (`print_pci_addr` and its address map),
`QemuServer/CPUConfig.pm` (`get_cpu_options` with kvm off),
`QemuServer/Memory.pm` (`config` without memory hotplug),
`QemuServer/Machine.pm` (`get_power_state_flags`), `QemuServer/USB.pm`
(`get_usb_controllers`), `print_netdev_full`/`print_netdevice_full`,
`device_bootorder`. Machine versions >= 10.0 use -blockdev (not -drive),
so that is what this emits for the installed QEMU 10.x.

Deliberate differences (this is a test machine, not a PVE node; each one is
named where it happens): QEMU runs as a tracked child (no -daemonize), under
TCG (`accel=tcg`, PVE's own `kvm: 0` path: no `enforce`, no kvm_pv_* flags;
`cpu: host` becomes `max`, which is the TCG equivalent), memory/cores are
capped, the machine type has no `+pveN` suffix (upstream QEMU has no PVE
machine versions), sockets live under DIR/vms/<vmid>/ instead of
/var/run/qemu-server/, serialN=socket is a log file, taps are created by the
simulator and named on -netdev with script=no (PVE lets QEMU create them and
runs /usr/libexec/qemu-server/pve-bridge), volumes are plain files (a zvol
is a block device on PVE: `host_device` there, `file` here), no boot splash
(/usr/share/qemu-server/bootsplash.jpg is not installed), no -iscsi.
Config keys outside what waddlec uses and the above handles fail the start
with `pve-sim boot mode: ... not supported`.
"""

import hashlib
import json
import os
import re

from .state import TaskFailed

# PCI.pm get_pci_addr_map (the entries used here)
PCI_ADDR = {
    "piix3": (0, 1), "vga": (0, 2), "balloon0": (0, 3), "scsihw0": (0, 5), "pci.3": (0, 5),
    "qga0": (0, 8), "pci.1": (0, 30), "pci.2": (0, 31),
}
PCI_ADDR.update({f"net{i}": (0, 18 + i) for i in range(6)})
PCI_ADDR.update({f"virtioscsi{i}": (3, 1 + i) for i in range(31)})
PCI_ADDR.update({f"virtio{i}": (0, 10 + i) for i in range(6)})  # virtio0..5: bus 0, 0xa..0xf

# CPUConfig.pm $builtin_models_by_arch->{x86_64}
BUILTIN_CPU = {
    "x86-64-v2": ("qemu64", "+popcnt;+pni;+sse4.1;+sse4.2;+ssse3"),
    "x86-64-v2-AES": ("qemu64", "+aes;+popcnt;+pni;+sse4.1;+sse4.2;+ssse3"),
    "x86-64-v3": ("qemu64", "+aes;+popcnt;+pni;+sse4.1;+sse4.2;+ssse3;+avx;+avx2;+bmi1;+bmi2;+f16c;+fma;"
                            "+abm;+movbe;+xsave"),
    "x86-64-v4": ("qemu64", "+aes;+popcnt;+pni;+sse4.1;+sse4.2;+ssse3;+avx;+avx2;+bmi1;+bmi2;+f16c;+fma;"
                            "+abm;+movbe;+xsave;+avx512f;+avx512bw;+avx512cd;+avx512dq;+avx512vl"),
}
# keys this transcription handles (everything else that changes the command line is refused)
IGNORED_KEYS = {"boot", "bootdisk", "description", "digest", "meta", "name", "onboot", "ostype", "tags",
                "smbios1", "vmgenid", "agent", "serial0", "vga", "cores", "sockets", "memory", "cpu",
                "bios", "scsihw", "balloon", "shares", "startup", "protection", "hotplug", "lock",
                "template", "kvm", "numa", "tablet", "acpi", "localtime", "cpuunits", "cpulimit", "vcpus",
                "machine", "ciuser", "cipassword", "citype", "ciupgrade", "sshkeys", "nameserver",
                "searchdomain", "hookscript", "migrate_downtime", "migrate_speed", "keyboard"}


def pci_addr(dev_id, bridges):
    entry = PCI_ADDR.get(dev_id)
    if entry is None:
        return ""
    bus, addr = entry
    bridges.add(bus)
    return f",bus=pci.{bus},addr={addr:#x}"


def simple_props(text, default_key):
    """A property string of a named format (pve-qm-boot, pve-vm-cpu-conf, smbios1)."""
    result = {}
    for part in (text or "").split(","):
        if not part:
            continue
        if "=" in part:
            key, value = part.split("=", 1)
        else:
            key, value = default_key, part
        result[key] = value
    return result


def to_json(obj):
    """Perl's to_json($x, {canonical => 1}): sorted keys, compact."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def node_name(kind, drive_id, volid):
    """Blockdev.pm get_node_name: prefix + first 30 hex digits of sha256('drive=ID,volid=VOLID')."""
    digest = hashlib.sha256(f"drive={drive_id},volid={volid}".encode()).hexdigest()[:30]
    return {"file": "e", "fmt": "f"}[kind] + digest


class Env:
    """What the command line needs from the node (filled in by boot.py)."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


def build(vmid, conf, env):
    """(argv, log lines, taps). `env`: qemu, qemu_version (major, minor), vm_dir, event_socket,
    volume(volid) -> (path, format, storage type), bridge_mtu(bridge), parse(key, value),
    memory_cap, cores_cap, ovmf_code, ovmf_vars, vhost."""
    notes, taps = [], []
    unsupported = sorted(k for k in conf if k not in IGNORED_KEYS and not re.match(
        r"^(scsi\d+|virtio\d+|efidisk0|net\d+|unused\d+|ide2)$", k))
    if unsupported:
        raise TaskFailed(f"pve-sim boot mode: config key(s) {', '.join(unsupported)} not supported")
    if conf.get("machine") not in (None, "pc", "i440fx"):
        raise TaskFailed(f"pve-sim boot mode: machine '{conf['machine']}' not supported (pc-i440fx only)")
    major, minor = env.qemu_version
    machine_version = (major, minor)
    vm_dir = env.vm_dir
    bridges = set()
    machine_flags = []
    cmd = [env.qemu]  # PVE: `-id <vmid>`, an option only pve-qemu has
    name = conf.get("name") or f"vm{vmid}"
    cmd += ["-name", name if major >= 11 else f"{name},debug-threads=on"]
    cmd += ["-no-shutdown"]
    cmd += ["-chardev", f"socket,id=qmp,path={vm_dir}/qmp.sock,server=on,wait=off",
            "-mon", "chardev=qmp,mode=control"]
    # qmeventd's socket: QEMU connects to it (boot.py plays qmeventd)
    cmd += ["-chardev", f"socket,id=qmp-event,path={env.event_socket},reconnect-ms=5000",
            "-mon", "chardev=qmp-event,mode=control"]
    cmd += ["-pidfile", f"{vm_dir}/qemu.pid"]  # no -daemonize: the simulator tracks the child
    if conf.get("smbios1"):
        smbios = simple_props(conf["smbios1"], "uuid")
        smbios.pop("base64", None)  # values are not base64 in what waddlec writes
        text = "".join(f",{k}={v.replace(',', ',,')}" for k, v in sorted(smbios.items()) if v)
        cmd += ["-smbios", "type=1" + text]

    efidisk = env.parse("efidisk0", conf["efidisk0"]) if conf.get("efidisk0") else None
    if conf.get("bios") == "ovmf":
        cmd += _ovmf(conf, efidisk, env, machine_flags)

    devices = []
    if conf.get("vmgenid"):
        devices += ["-device", f"vmgenid,guid={conf['vmgenid']}"]
    devices += ["-device", "piix3-usb-uhci,id=uhci" + pci_addr("piix3", bridges) + ".0x2"]

    vga = env.parse("vga", conf["vga"]) if conf.get("vga") else {}
    vga_type = vga.get("type") or "std"
    serial_vga = bool(re.match(r"^serial\d+$", vga_type))
    tablet = conf.get("tablet", "1") == "1" and not serial_vga
    if tablet:
        devices += ["-device", "usb-tablet,id=tablet,bus=uhci.0,port=1"]

    bootorder = {}
    boot = simple_props(conf.get("boot"), "legacy")
    if boot.get("order"):
        for index, dev in enumerate(d for d in re.split(r"[;,\s]+", boot["order"]) if d):
            bootorder[dev] = 100 + index
    elif conf.get("boot") is None or boot.get("legacy"):
        raise TaskFailed("pve-sim boot mode: legacy boot order (boot: cdn) not supported")

    for i in range(4):
        path = conf.get(f"serial{i}")
        if not path:
            continue
        if path != "socket":
            raise TaskFailed(f"pve-sim boot mode: serial{i}: host device '{path}' not supported")
        # PVE: a unix socket /var/run/qemu-server/<vmid>.serialN (server=on,wait=off);
        # here the serial output goes to a log file the tests can read
        devices += ["-chardev", f"file,id=serial{i},path={vm_dir}/console{'' if i == 0 else i}.log",
                    "-device", f"isa-serial,chardev=serial{i}"]

    sockets = int(conf.get("sockets", 1))
    cores = int(conf.get("cores", 1))
    if cores > env.cores_cap:
        notes.append(f"boot mode: cores {cores} scaled to {env.cores_cap} for this machine")
        cores = env.cores_cap
    if sockets > 1:
        notes.append(f"boot mode: sockets {sockets} scaled to 1 for this machine")
        sockets = 1
    maxcpus = sockets * cores
    vcpus = min(int(conf.get("vcpus") or maxcpus), maxcpus)
    hotplug = conf.get("hotplug", "1")
    hotplug = "network,disk,usb" if hotplug == "1" else ("" if hotplug == "0" else hotplug)
    if "cpu" in hotplug.split(","):
        cmd += ["-smp", f"1,sockets={sockets},cores={cores},maxcpus={maxcpus}"]
        if vcpus > 1:
            raise TaskFailed("pve-sim boot mode: cpu hotplug with vcpus > 1 not supported")
    else:
        cmd += ["-smp", f"{vcpus},sockets={sockets},cores={cores},maxcpus={maxcpus}"]
    cmd += ["-nodefaults"]
    # PVE adds splash=/usr/share/qemu-server/bootsplash.jpg (not installed here)
    cmd += ["-boot", "menu=on,strict=on,reboot-timeout=1000"]
    if conf.get("acpi") == "0":
        machine_flags.append("acpi=off")

    if vga_type not in ("none",) and not serial_vga:
        if vga_type != "std":
            raise TaskFailed(f"pve-sim boot mode: vga type '{vga_type}' not supported")
        devices += ["-device", "VGA,id=vga" + pci_addr("vga", bridges)]
        cmd += ["-vnc", f"unix:{vm_dir}/vnc.sock,password=on"]
    else:
        if vga_type == "none":
            cmd += ["-vga", "none"]
        cmd += ["-nographic"]

    cmd += ["-cpu", _cpu(conf, notes)]

    memory = int(env.parse("memory", conf["memory"]).get("current", 512)) if conf.get("memory") else 512
    if "memory" in hotplug.split(","):
        raise TaskFailed("pve-sim boot mode: memory hotplug not supported")
    if memory > env.memory_cap:
        notes.append(f"boot mode: memory {memory} MiB scaled to {env.memory_cap} MiB for this machine")
        memory = env.memory_cap
    cmd += ["-m", str(memory)]
    if conf.get("keyboard"):
        cmd += ["-k", conf["keyboard"]]

    agent = env.parse("agent", conf["agent"]) if conf.get("agent") else {}
    if agent.get("enabled") in ("1", 1, True):
        devices += ["-chardev", f"socket,path={vm_dir}/qga.sock,server=on,wait=off,id=qga0"]
        if agent.get("type", "virtio") == "virtio":
            devices += ["-device", "virtio-serial,id=qga0" + pci_addr("qga0", bridges),
                        "-device", "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0"]
        else:
            devices += ["-device", "isa-serial,chardev=qga0"]

    if conf.get("balloon", "1") != "0":
        devices += ["-device", "virtio-balloon-pci,id=balloon0" + pci_addr("balloon0", bridges)
                    + (",free-page-reporting=on" if machine_version >= (6, 2) else "")]

    scsihw = conf.get("scsihw") or "lsi"
    controllers = set()
    for key in _drive_keys(conf):
        drive = env.parse(key, conf[key])
        interface, index = re.match(r"^([a-z]+)(\d+)$", key).groups()
        index = int(index)
        if drive.get("file") in (None, "none"):
            continue
        if drive.get("media") == "cdrom":
            raise TaskFailed(f"pve-sim boot mode: {key}: CD-ROM drives not supported")
        bootindex = bootorder.get(key)
        if interface == "scsi":
            single = scsihw == "virtio-scsi-single"
            maxdev = 1 if single else (7 if scsihw.startswith("lsi") else 256)
            controller = index // maxdev
            prefix = "virtioscsi" if single else "scsihw"
            if controller not in controllers:
                controllers.add(controller)
                iothread = ""
                if single and drive.get("iothread") == "1":
                    iothread = f",iothread=iothread-{prefix}{controller}"
                    cmd += ["-object", f"iothread,id=iothread-{prefix}{controller}"]
                queues = f",num_queues={drive['queues']}" if single and drive.get("queues") else ""
                hw_type = "virtio-scsi-pci" if scsihw.startswith("virtio-scsi-single") else scsihw
                devices += ["-device", f"{hw_type},id={prefix}{controller}"
                            + pci_addr(f"{prefix}{controller}", bridges) + iothread + queues]
        elif interface == "virtio":
            if drive.get("iothread") == "1":
                cmd += ["-object", f"iothread,id=iothread-{key}"]
        else:
            raise TaskFailed(f"pve-sim boot mode: {key}: only scsi and virtio disks are supported")
        cmd += ["-object", to_json({"id": f"throttle-drive-{key}", "limits": _limits(drive),
                                    "qom-type": "throttle-group"})]
        devices += ["-blockdev", to_json(_drive_blockdev(key, drive, env))]
        devices += ["-device", _drive_device(key, interface, index, drive, scsihw, bootindex, bridges)]

    for i in range(32):
        key = f"net{i}"
        if not conf.get(key):
            continue
        net = env.parse(key, conf[key])
        ifname = f"tap{vmid}i{i}"
        if len(ifname) >= 16:
            raise TaskFailed(f"interface name '{ifname}' is too long (max 15 character)")
        if not net.get("bridge"):
            devices += ["-netdev", f"type=user,id={key},hostname={name}"]
        else:
            vhost = ",vhost=on" if env.vhost and net["model"] == "virtio" else ""
            # PVE: script=/usr/libexec/qemu-server/pve-bridge,downscript=.../pve-bridgedown;
            # here boot.py creates and plugs the tap before QEMU starts
            queues = f",queues={net['queues']}" if net.get("queues") and net["model"] == "virtio" else ""
            devices += ["-netdev", f"type=tap,id={key},ifname={ifname},script=no,downscript=no{vhost}{queues}"]
            taps.append({"ifname": ifname, "bridge": net["bridge"], "key": key, "mac": net["macaddr"],
                         "mtu": net.get("mtu")})
        devices += ["-device", _net_device(key, net, bootorder.get(key), bridges, machine_version, env)]

    # pci bridges (i440fx): pci.1 and pci.2 always, pci.3 for virtio-scsi-single
    bridges.update((1, 2))
    if scsihw.startswith("virtio-scsi-single"):
        bridges.add(3)
    front = []
    for k in sorted((b for b in bridges if b > 0), reverse=True):
        front = ["-device", f"pci-bridge,id=pci.{k},chassis_nr={k}" + pci_addr(f"pci.{k}", set())] + front
    machine_flags.append(f"accel={env.accel}")
    # Machine.pm get_power_state_flags: S3/S4 off by default since machine 9.2+pve1
    if machine_version >= (9, 2):
        cmd += ["-global", "PIIX4_PM.disable_s3=1", "-global", "PIIX4_PM.disable_s4=1"]
    if conf.get("bios") != "ovmf" and (serial_vga or vga_type == "none"):
        machine_flags.append("smm=off")
    # PVE: type=pc+pve0 (pve-qemu's versioned machine); upstream QEMU: the versioned i440fx
    machine_flags.append(f"type=pc-i440fx-{major}.{minor}")
    cmd += front + devices
    cmd += ["-machine", ",".join(machine_flags)]
    return cmd, notes, taps


def _drive_keys(conf):
    """PVE::QemuConfig->foreach_volume order: ide, sata, scsi, virtio (efidisk0 is with the OVMF args)."""
    keys = []
    for bus, count in (("ide", 4), ("sata", 6), ("scsi", 31), ("virtio", 16)):
        keys += [f"{bus}{i}" for i in range(count) if conf.get(f"{bus}{i}")]
    return keys


def _limits(drive):
    limits = {}
    for direction, name in (("", "-total"), ("_rd", "-read"), ("_wr", "-write")):
        if drive.get(f"mbps{direction}"):
            limits[f"bps{name}"] = int(float(drive[f"mbps{direction}"]) * 1024 * 1024)
        if drive.get(f"mbps{direction}_max"):
            limits[f"bps{name}-max"] = int(float(drive[f"mbps{direction}_max"]) * 1024 * 1024)
        if drive.get(f"iops{direction}"):
            limits[f"iops{name}"] = int(drive[f"iops{direction}"])
        if drive.get(f"iops{direction}_max"):
            limits[f"iops{name}-max"] = int(drive[f"iops{direction}_max"])
    return limits


def _drive_blockdev(key, drive, env, cache=None, size=None):
    """Blockdev.pm generate_drive_blockdev: throttle(drive-KEY) -> format -> file."""
    volid = drive["file"]
    path, fmt, storage_type = env.volume(volid)
    cache = cache or drive.get("cache")
    if cache:
        direct = cache in ("off", "none", "directsync")
    else:
        direct = not (storage_type == "btrfs")
    caching = {"direct": direct, "no-flush": cache == "unsafe"}
    aio = drive.get("aio") or ("io_uring" if storage_type not in ("lvm", "cifs") else
                               ("native" if direct else "threads"))
    discard = "unmap" if drive.get("discard") == "on" else "ignore"
    if drive.get("detect_zeroes") == "0":
        zeroes = "off"
    elif drive.get("discard"):
        zeroes = "unmap" if drive["discard"] == "on" else "on"
    else:
        zeroes = "on"
    common = {"discard": discard, "detect-zeroes": zeroes, "read-only": drive.get("ro") == "1"}
    file_node = dict({"driver": "file", "filename": path, "cache": caching, "aio": aio,
                      "node-name": node_name("file", key, volid)}, **common)
    fmt_node = dict({"node-name": node_name("fmt", key, volid), "driver": fmt, "file": file_node,
                     "cache": caching}, **common)
    if size is not None:
        fmt_node["size"] = size
    return dict({"driver": "throttle", "node-name": f"drive-{key}", "throttle-group": f"throttle-drive-{key}",
                 "file": fmt_node}, **common)


def _drive_device(key, interface, index, drive, scsihw, bootindex, bridges):
    if interface == "virtio":
        device = f"virtio-blk-pci,drive=drive-{key},id={key}" + pci_addr(key, bridges)
        if drive.get("iothread") == "1":
            device += f",iothread=iothread-{key}"
    else:
        single = scsihw == "virtio-scsi-single"
        maxdev = 1 if single else (7 if scsihw.startswith("lsi") else 256)
        prefix = "virtioscsi" if single else "scsihw"
        controller, unit = index // maxdev, index % maxdev
        if scsihw.startswith("lsi") or scsihw == "pvscsi":
            device = f"scsi-hd,bus={prefix}{controller}.0,scsi-id={unit}"
        else:
            device = f"scsi-hd,bus={prefix}{controller}.0,channel=0,scsi-id=0,lun={index}"
        device += f",drive=drive-{key},id={key},device_id=drive-{key}"
        if drive.get("ssd") == "1":
            device += ",rotation_rate=1"
        if drive.get("wwn"):
            device += f",wwn={drive['wwn']}"
    if bootindex:
        device += f",bootindex={bootindex}"
    if drive.get("serial"):
        device += f",serial={drive['serial'].replace(',', ',,')}"
    write_cache = "off" if drive.get("cache") in ("writethrough", "directsync") else "on"
    device += f",write-cache={write_cache}"
    for option in ("rerror", "werror"):
        if drive.get(option):
            device += f",{option}={drive[option]}"
    return device


def _net_device(key, net, bootindex, bridges, machine_version, env):
    model = "virtio-net-pci" if net["model"] == "virtio" else net["model"]
    device = f"{model},mac={net['macaddr']},netdev={key}" + pci_addr(key, bridges) + f",id={key}"
    queues = int(net.get("queues") or 0)
    if queues > 1 and net["model"] == "virtio":
        device += f",vectors={queues * 2 + 2},mq=on,packed=on"
    if net["model"] == "virtio":
        device += ",rx_queue_size=1024,tx_queue_size=256"
    if bootindex:
        device += f",bootindex={bootindex}"
    if net["model"] == "virtio" and net.get("bridge"):
        bridge_mtu = env.bridge_mtu(net["bridge"])
        mtu = int(net.get("mtu") or 1)
        if mtu == 1:
            mtu = bridge_mtu
        elif mtu < 576:
            raise TaskFailed(f"netdev {key}: MTU '{mtu}' is smaller than the IP minimum MTU '576'")
        elif mtu > bridge_mtu:
            raise TaskFailed(f"netdev {key}: MTU '{mtu}' is bigger than the bridge MTU '{bridge_mtu}' - adjust "
                             "the MTU for the network device in the VM configuration, while ensuring that the "
                             "bridge is configured as desired.")
        device += f",host_mtu={mtu}"  # machine >= 10.0+pve1 always adds it
    return device


def _cpu(conf, notes):
    """CPUConfig.pm get_cpu_options with $kvm = 0 (TCG): default qemu64, builtin models map to
    their reported model + flags, no `enforce`, no kvm_pv_* flags."""
    cpu = simple_props(conf.get("cpu"), "cputype") if conf.get("cpu") else {}
    cputype = cpu.get("cputype", "qemu64")
    flags = {}
    if cputype in BUILTIN_CPU:
        cputype, builtin = BUILTIN_CPU[cputype]
        for flag in builtin.split(";"):
            flags[flag[1:]] = flag[0]
    elif cputype == "host":
        notes.append("boot mode: cpu 'host' needs KVM; using 'max' (TCG's model with every emulated feature)")
        cputype = "max"
    elif cputype == "kvm64":
        flags.update({"lahf_lm": "+", "sep": "+"})
    for flag in (cpu.get("flags") or "").split(";"):
        if flag:
            flags[flag[1:]] = flag[0]
    if conf.get("ostype") == "solaris":
        flags["x2apic"] = "-"
    return cputype + "".join(f",{op}{name}" for name, op in sorted(flags.items()))


def _ovmf(conf, efidisk, env, machine_flags):
    """OVMF.pm print_ovmf_commandline (machine >= 10.0): pflash0 = code (read-only), pflash1 = the
    efidisk through the drive blockdev chain, `cache=writeback` unless set, raw `size` = vars size.
    i440fx has no SMM, so the 4m type is '4m-no-smm': OVMF_CODE_4M.fd + OVMF_VARS_4M(.ms).fd."""
    if not efidisk:
        raise TaskFailed("pve-sim boot mode: bios ovmf without efidisk0 (temporary efivars disk) not supported")
    if efidisk.get("efitype") != "4m":
        raise TaskFailed("pve-sim boot mode: only efitype=4m EFI disks are supported")
    code_file = env.ovmf_code
    vars_file = vars_template(env.ovmf_vars, efidisk)
    for path, what in ((code_file, "base"), (vars_file, "vars")):
        if not os.path.exists(path):
            raise TaskFailed(f"EFI {what} image '{path}' not found")
    code = {"driver": "raw", "file": {"driver": "file", "filename": code_file}, "node-name": "pflash0",
            "read-only": True}
    drive = dict(efidisk)
    drive["cache"] = drive.get("cache") or "writeback"
    _, fmt, _ = env.volume(drive["file"])
    size = os.path.getsize(vars_file) if fmt == "raw" else None
    vars_node = _drive_blockdev("efidisk0", drive, env, size=size)
    machine_flags += ["pflash0=pflash0", f"pflash1={vars_node['node-name']}"]
    return ["-object", to_json({"id": "throttle-drive-efidisk0", "limits": _limits(drive),
                                "qom-type": "throttle-group"}),
            "-blockdev", to_json(code), "-blockdev", to_json(vars_node)]


def vars_template(ovmf_vars, efidisk):
    """get_ovmf_files: pre-enrolled-keys=1 takes the .ms variant (Microsoft keys enrolled)."""
    if efidisk.get("pre-enrolled-keys") == "1":
        return re.sub(r"\.fd$", ".ms.fd", ovmf_vars)
    return ovmf_vars
