//! Test-only stand-in for pve-firewall (which cannot be installed here):
//! `ruleset` translates exactly the subset of `cluster.fw` and `host.fw`
//! waddlec writes into iptables-restore input for the host namespace, in the
//! order pve-firewall's `PVEFW-HOST-IN` uses, and panics on anything else.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

// ---------------------------------------------------------------------------
// The stand-in pve-firewall
// ---------------------------------------------------------------------------

/// Test-only stand-in for pve-firewall: the iptables-restore input for the
/// host's `INPUT` filtering that pve-firewall would compile from these files.
///
/// It understands exactly what waddlec writes, and panics on any other line,
/// so a new rule form breaks this test instead of being silently ignored:
///
/// - cluster.fw `[OPTIONS]` `enable`, `policy_in`, `policy_out: ACCEPT`
///   (outbound filtering is not modelled); `[ALIASES]` `local_network`.
/// - host.fw `[OPTIONS]` `enable`; `[RULES]` (and cluster.fw `[RULES]`)
///   `IN ACCEPT|DROP|REJECT` with `-i IFACE`, `-source CIDR`, `-dest CIDR`, `-p tcp|udp`,
///   `-dport PORT`, `-log nolog` and a trailing `# comment`.
///
/// The chain has the shape of pve-firewall's `PVEFW-HOST-IN`
/// (`enable_host_firewall` in PVE/Firewall.pm): loopback accepted, invalid
/// packets dropped, established/related accepted, host rules, cluster rules,
/// then the management ipset (here: the `local_network` alias, which waddlec
/// pins so pve-firewall does not auto-detect it) admitted to 8006, 5900-5999,
/// 3128, 22 and 60000-60050, then `policy_in`. pve-firewall's ACCEPT in that
/// chain is a RETURN to an INPUT chain whose policy is ACCEPT: the same
/// verdict as the ACCEPT used here.
pub fn ruleset(cluster_fw: &str, host_fw: &str) -> String {
    let cluster = FwFile::parse(
        "cluster.fw",
        cluster_fw,
        &["enable", "policy_in", "policy_out"],
    );
    let host = FwFile::parse("host.fw", host_fw, &["enable"]);
    assert!(
        host.aliases.is_empty(),
        "pve-firewall stand-in: host.fw [ALIASES] are not modelled"
    );
    if let Some(policy) = cluster.options.get("policy_out") {
        assert_eq!(
            policy, "ACCEPT",
            "pve-firewall stand-in: outbound filtering (policy_out: {policy}) is not modelled"
        );
    }
    let mut ruleset = String::from("*filter\n:PVEFW-INPUT - [0:0]\n:PVEFW-HOST-IN - [0:0]\n");
    // Both default to a disabled firewall when absent (cluster) or to enabled (host).
    let on = cluster.options.get("enable").map(String::as_str) == Some("1")
        && host.options.get("enable").map(String::as_str) != Some("0");
    if on {
        let chain = "-A PVEFW-HOST-IN";
        ruleset.push_str("-A PVEFW-INPUT -j PVEFW-HOST-IN\n");
        ruleset.push_str(&format!("{chain} -i lo -j ACCEPT\n"));
        ruleset.push_str(&format!("{chain} -m conntrack --ctstate INVALID -j DROP\n"));
        ruleset.push_str(&format!(
            "{chain} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"
        ));
        for rule in host.rules.iter().chain(&cluster.rules) {
            ruleset.push_str(&format!("{chain} {rule}\n"));
        }
        let local_network = cluster.aliases.get("local_network").unwrap_or_else(|| {
            panic!("pve-firewall stand-in: no local_network alias; pve-firewall would auto-detect one, which the stand-in cannot")
        });
        for ports in ["8006", "5900:5999", "3128", "22", "60000:60050"] {
            ruleset.push_str(&format!(
                "{chain} -s {local_network} -p tcp -m tcp --dport {ports} -j ACCEPT\n"
            ));
        }
        match cluster
            .options
            .get("policy_in")
            .map_or("DROP", String::as_str)
        {
            "ACCEPT" => {}
            "DROP" => ruleset.push_str(&format!("{chain} -j DROP\n")),
            "REJECT" => ruleset.push_str(&format!("{chain} -j REJECT\n")),
            other => panic!("pve-firewall stand-in: policy_in: {other}"),
        }
    }
    ruleset.push_str("COMMIT\n");
    ruleset
}

struct FwFile {
    options: BTreeMap<String, String>,
    aliases: BTreeMap<String, Ipv4Net>,
    /// Translated to iptables rule specifications.
    rules: Vec<String>,
}

impl FwFile {
    fn parse(file: &str, text: &str, known_options: &[&str]) -> FwFile {
        let mut parsed = FwFile {
            options: BTreeMap::new(),
            aliases: BTreeMap::new(),
            rules: Vec::new(),
        };
        let mut section = None;
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            let fail = |why: &str| -> ! {
                panic!(
                    "pve-firewall stand-in: {file} line {}: {why}: `{line}`; teach the stand-in \
                     this form (as pve-firewall reads it) before relying on it",
                    number + 1
                )
            };
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                let name = name.to_ascii_uppercase();
                if !matches!(name.as_str(), "OPTIONS" | "ALIASES" | "RULES") {
                    fail("unknown section");
                }
                section = Some(name);
                continue;
            }
            match section.as_deref() {
                Some("OPTIONS") => {
                    let Some((key, value)) = line.split_once(':') else {
                        fail("not `key: value`")
                    };
                    let (key, value) = (key.trim(), value.trim());
                    let valid = match key {
                        "enable" => matches!(value, "0" | "1"),
                        "policy_in" | "policy_out" => matches!(value, "ACCEPT" | "DROP" | "REJECT"),
                        _ => false,
                    };
                    if !known_options.contains(&key) || !valid {
                        fail("option not modelled");
                    }
                    if parsed.options.insert(key.into(), value.into()).is_some() {
                        fail("option repeated");
                    }
                }
                Some("ALIASES") => {
                    let words: Vec<&str> = line.split_whitespace().collect();
                    let [name, cidr] = words[..] else {
                        fail("not `name cidr`")
                    };
                    if name != "local_network" {
                        fail("alias not modelled");
                    }
                    let Some(cidr) = parse_cidr(cidr) else {
                        fail("not an IPv4 address or network")
                    };
                    parsed.aliases.insert(name.into(), cidr);
                }
                Some("RULES") => match translate_rule(line) {
                    Ok(rule) => parsed.rules.push(rule),
                    Err(why) => fail(&why),
                },
                _ => fail("outside any section"),
            }
        }
        parsed
    }
}

fn parse_cidr(text: &str) -> Option<Ipv4Net> {
    text.parse::<Ipv4Net>()
        .ok()
        .or_else(|| text.parse::<Ipv4Addr>().ok().map(Ipv4Net::from))
}

/// One `[RULES]` line as an iptables rule specification (without the chain).
fn translate_rule(line: &str) -> Result<String, String> {
    // pve-firewall: everything after `#` is the rule's comment.
    let body = line.split_once('#').map_or(line, |(body, _)| body);
    let mut words = body.split_whitespace();
    if words.next() != Some("IN") {
        return Err("only IN rules are modelled".into());
    }
    let action = match words.next() {
        Some(action @ ("ACCEPT" | "DROP" | "REJECT")) => action,
        _ => return Err("action not modelled (macros are not)".into()),
    };
    let (mut iface, mut source, mut dest, mut proto, mut dport) = (None, None, None, None, None);
    while let Some(flag) = words.next() {
        let value = words.next().ok_or("flag without a value")?;
        let slot = match flag {
            "-i" if value.chars().all(|c| c.is_ascii_alphanumeric() || c == '.') => &mut iface,
            "-source" => &mut source,
            "-dest" => &mut dest,
            "-p" if matches!(value, "tcp" | "udp") => &mut proto,
            "-dport" if value.parse::<u16>().is_ok() => &mut dport,
            "-log" if value == "nolog" => continue,
            _ => return Err(format!("flag `{flag} {value}` not modelled")),
        };
        if slot.replace(value).is_some() {
            return Err(format!("{flag} repeated"));
        }
    }
    let source = source
        .map(|s| {
            parse_cidr(s)
                .ok_or("-source is not an IPv4 address or network (aliases are not modelled)")
        })
        .transpose()?;
    let mut spec = Vec::new();
    if let Some(iface) = iface {
        spec.push(format!("-i {iface}"));
    }
    if let Some(source) = source {
        spec.push(format!("-s {source}"));
    }
    if let Some(dest) = dest {
        let dest = parse_cidr(dest)
            .ok_or("-dest is not an IPv4 address or network (aliases are not modelled)")?;
        spec.push(format!("-d {dest}"));
    }
    match (proto, dport) {
        (Some(proto), Some(port)) => spec.push(format!("-p {proto} -m {proto} --dport {port}")),
        (Some(proto), None) => spec.push(format!("-p {proto}")),
        (None, Some(_)) => return Err("-dport without -p".into()),
        (None, None) => {}
    }
    spec.push(format!("-j {action}"));
    Ok(spec.join(" "))
}

// ---------------------------------------------------------------------------
// What the blueprint says should happen
// ---------------------------------------------------------------------------
