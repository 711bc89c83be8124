//! The rollout, as a property (issue 18, item 4): random sequences of real
//! blueprint edits, each rebuilt (`build --with-secrets --no-images`) and
//! deployed by the real `waddlec deploy` into `support::deploy_lab` (three
//! control planes and a worker), with random faults — never take the
//! simulated etcd below quorum, never leave a dead member, and a re-run
//! always converges to nodes running the build's machine configs, byte for
//! byte, on the blueprint's Talos version.
//!
//! Events (each an edit of the lab's blueprint, upgrades of Kubernetes only
//! and one minor at a time, as the generator keeps every sequence valid):
//! - a machine-config change: `[talos.cilium.values] operator.replicas`,
//!   which lands in the control planes' inline manifests (applied live);
//! - a Talos version within v1.12.x (the resolver refuses other releases):
//!   an `Upgrade` per node, node by node in one deploy;
//! - a schematic change: an extension added or removed (a new installer);
//! - a Kubernetes version, 1.33 → 1.35 (kubelet and control-plane images);
//! - any of these with `--allow-replace talos-cpN`.
//!
//! Faults, one at most per event:
//! - a node that never returns: a replaced node's guest stays off, or a
//!   node's reboot outlasts every wait (an hour, `set_reboot_time`;
//!   cleared by powering it on: the simulation's `never_return` cannot be
//!   cleared, and a node that never again returns from any reboot would
//!   stop every later event);
//! - the deploy killed (SIGKILL, its process group: the ssh tunnel too)
//!   after a random delay once it has begun changing things: a write to
//!   the simulator other than its lock, a Talos `Upgrade` or etcd removal,
//!   or a node's config changed; the next deploy breaks the lock it left;
//! - an etcd member unhealthy before the deploy starts: when the event
//!   takes a control plane down (an upgrade, a replace) the deploy must
//!   refuse before any change — no write to the simulator, no `Upgrade`,
//!   no etcd removal, every node's config, staged config and version as
//!   they were; a live-only change (config, Kubernetes) may go ahead.
//!
//! Invariants, sampled every 20 ms by a thread for the whole test, and
//! after every deploy:
//! - etcd has quorum (`TalosCluster::has_quorum`);
//! - no dead member. A member is dead when its data is gone for good or it
//!   is no node of the blueprint's: (a) no node runs it (a node replaced
//!   without leaving leaves its member so), seen in two samples in a row
//!   (one read of the cluster is not atomic); (b) its hostname is not a
//!   control plane of the blueprint; (c) two members share a hostname; (d)
//!   it is still listed the moment its node's VM is destroyed (the
//!   watcher's record of the destroy: the VM's disk held its data).
//!
//! After the faults are cleared (the node boots, the member is healthy
//! again), deploy runs at most once per Talos node plus once (a deploy may
//! hold nodes back for a later run), each succeeding, until one reports
//! nothing to do; then every node is up on the blueprint's Talos version
//! and runs exactly `dist/vms/<vm>/seed/user-data` (which passes Talos
//! 1.12's schema, `talos_lab::assert_valid`), nothing staged, etcd healthy
//! with exactly the blueprint's control planes. A node's config changes
//! only through `ApplyConfiguration`: a node the guest did not boot in the
//! event got those bytes from the deploy's own call (the guest's calls go
//! through another node's apid, the deploy's never do; checked).
//!
//! Seeded and repeatable up to timing: `WADDLEC_ROLLOUT_SEED=N` picks the
//! seed (default below); the seed and the sequences are printed at the
//! start (`--nocapture`) and in any failure.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::os::unix::process::CommandExt;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::support::deploy_lab::{Guest, Lab, CPS};
use crate::support::talos_lab::{assert_valid, talos_schema};
use crate::support::text;

const SEED_ENV: &str = "WADDLEC_ROLLOUT_SEED";
const DEFAULT_SEED: u64 = 18_04;
const SEQUENCES: usize = 3;
const EVENTS_PER_SEQUENCE: usize = 3;
const WORKERS: usize = 1;
/// A node's reboot in this test (the simulation's default is 1.5 s).
const REBOOT: Duration = Duration::from_millis(400);
/// A reboot that outlasts every wait: the node never returns.
const NEVER: Duration = Duration::from_secs(3600);
/// `--talos-wait` while a node may never return, and otherwise.
const SHORT_WAIT: &str = "6";
const LONG_WAIT: &str = "60";
const EXTENSIONS: [&str; 2] = ["siderolabs/util-linux-tools", "siderolabs/nfs-utils"];

/// What the test edits in the lab's blueprint.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Blueprint {
    /// `[talos.cilium.values] operator.replicas`.
    replicas: i64,
    /// `versions.talos`: v1.12.<talos_patch>.
    talos_patch: u32,
    /// `talos.extensions`.
    extensions: BTreeSet<String>,
    /// `versions.kubernetes`: 1.<minor>.<patch>.
    kubernetes: (u32, u32),
}

impl Blueprint {
    fn start() -> Blueprint {
        Blueprint {
            replicas: 2,
            talos_patch: 4,
            extensions: ["siderolabs/qemu-guest-agent", "siderolabs/iscsi-tools"]
                .into_iter()
                .map(str::to_string)
                .collect(),
            kubernetes: (33, 0),
        }
    }

    fn talos(&self) -> String {
        format!("v1.12.{}", self.talos_patch)
    }

    fn kubernetes(&self) -> String {
        format!("1.{}.{}", self.kubernetes.0, self.kubernetes.1)
    }

    /// Writes these values into a blueprint document.
    fn edit(&self, document: &mut toml::Table) {
        let talos = document["talos"].as_table_mut().unwrap();
        talos.insert(
            "extensions".into(),
            toml::Value::Array(self.extensions.iter().map(|e| e.clone().into()).collect()),
        );
        let operator = talos["cilium"]["values"]["operator"]
            .as_table_mut()
            .unwrap();
        operator.insert("replicas".into(), self.replicas.into());
        let versions = document["versions"].as_table_mut().unwrap();
        versions.insert("talos".into(), self.talos().into());
        versions.insert("kubernetes".into(), self.kubernetes().into());
    }

    fn after(&self, edit: &Edit) -> Blueprint {
        let mut next = self.clone();
        match edit {
            Edit::Config(replicas) => next.replicas = *replicas,
            Edit::Talos(patch) => next.talos_patch = *patch,
            Edit::Schematic(extension) => {
                if !next.extensions.remove(extension) {
                    next.extensions.insert(extension.clone());
                }
            }
            Edit::Kubernetes(minor, patch) => next.kubernetes = (*minor, *patch),
        }
        next
    }
}

#[derive(Clone, Debug)]
enum Edit {
    /// Cilium's operator replicas: the control planes' machine configs.
    Config(i64),
    /// Talos v1.12.N.
    Talos(u32),
    /// This extension toggled.
    Schematic(String),
    /// Kubernetes 1.M.P.
    Kubernetes(u32, u32),
}

#[derive(Clone, Debug)]
enum Fault {
    None,
    /// Node `i` never returns: the replaced node's guest stays off, or its
    /// reboot outlasts every wait.
    NeverReturns(usize),
    /// The deploy is killed this long after it began changing things.
    Killed(Duration),
    /// Control plane `i`'s etcd member is unhealthy before the deploy.
    Unhealthy(usize),
}

#[derive(Clone, Debug)]
struct Event {
    edit: Edit,
    /// `--allow-replace` for this control plane.
    replace: Option<usize>,
    fault: Fault,
}

impl Event {
    /// The event takes a control plane down (an upgrade, a replace): an
    /// unhealthy member must stop it.
    fn takes_a_control_plane_down(&self) -> bool {
        self.replace.is_some() || matches!(self.edit, Edit::Talos(_) | Edit::Schematic(_))
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.edit)?;
        if let Some(i) = self.replace {
            write!(f, " --allow-replace {}", CPS[i])?;
        }
        match self.fault {
            Fault::None => Ok(()),
            Fault::NeverReturns(i) => write!(f, " [node {i} never returns]"),
            Fault::Killed(after) => write!(f, " [killed {} ms in]", after.as_millis()),
            Fault::Unhealthy(i) => write!(f, " [{} unhealthy before]", CPS[i]),
        }
    }
}

/// A valid event from `blueprint`: Kubernetes only upward, one minor at a
/// time, within 1.35.
fn event(rng: &mut StdRng, blueprint: &Blueprint) -> Event {
    let edit = match rng.gen_range(0..4) {
        0 => {
            let choices: Vec<i64> = (1..=3).filter(|r| *r != blueprint.replicas).collect();
            Edit::Config(choices[rng.gen_range(0..choices.len())])
        }
        1 => {
            let choices: Vec<u32> = (0..=11).filter(|p| *p != blueprint.talos_patch).collect();
            Edit::Talos(choices[rng.gen_range(0..choices.len())])
        }
        2 => Edit::Schematic(EXTENSIONS[rng.gen_range(0..EXTENSIONS.len())].to_string()),
        _ => {
            let (minor, patch) = blueprint.kubernetes;
            if minor < 35 && rng.gen_bool(0.6) {
                Edit::Kubernetes(minor + 1, rng.gen_range(0..=2))
            } else {
                Edit::Kubernetes(minor, patch + rng.gen_range(1..=2))
            }
        }
    };
    let replace = rng.gen_bool(0.3).then(|| rng.gen_range(0..CPS.len()));
    let mut event = Event {
        edit,
        replace,
        fault: Fault::None,
    };
    let nodes = CPS.len() + WORKERS;
    event.fault = match rng.gen_range(0..5) {
        0 => Fault::Killed(Duration::from_millis(rng.gen_range(0..2500))),
        1 => {
            let others: Vec<usize> = (0..CPS.len()).filter(|i| Some(*i) != replace).collect();
            Fault::Unhealthy(others[rng.gen_range(0..others.len())])
        }
        // Only where a node reboots or is replaced.
        2 if replace.is_some() => Fault::NeverReturns(replace.unwrap_or_default()),
        2 if event.takes_a_control_plane_down() => Fault::NeverReturns(rng.gen_range(0..nodes)),
        _ => Fault::None,
    };
    event
}

fn sequences(seed: u64) -> Vec<Vec<Event>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut blueprint = Blueprint::start();
    (0..SEQUENCES)
        .map(|_| {
            (0..EVENTS_PER_SEQUENCE)
                .map(|_| {
                    let event = event(&mut rng, &blueprint);
                    blueprint = blueprint.after(&event.edit);
                    event
                })
                .collect()
        })
        .collect()
}

#[test]
fn random_rollouts_keep_etcd_whole_and_a_rerun_converges() {
    let seed = std::env::var(SEED_ENV)
        .ok()
        .map(|s| s.parse::<u64>().expect("WADDLEC_ROLLOUT_SEED is a number"))
        .unwrap_or(DEFAULT_SEED);
    let sequences = sequences(seed);
    let plan = describe(seed, &sequences);
    eprintln!("{plan}");
    let started = Instant::now();
    let mut blueprint = Blueprint::start();
    let lab = Lab::deployed_with(WORKERS, |document| blueprint.edit(document));
    let rollout = Rollout {
        lab: &lab,
        violations: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
        log: Mutex::new(Vec::new()),
    };
    for i in 0..lab.nodes.len() {
        lab.cluster.set_reboot_time(i, REBOOT);
    }
    // As from a fresh deploy: each VM's guest booted its files.
    for i in 0..lab.nodes.len() {
        lab.boot_from_its_files(i);
    }
    std::thread::scope(|scope| {
        scope.spawn(|| rollout.sample());
        let result = catch_unwind(AssertUnwindSafe(|| {
            rollout.converge(&blueprint, None, &[]);
            for (k, sequence) in sequences.iter().enumerate() {
                for (e, event) in sequence.iter().enumerate() {
                    rollout.note(format!("== sequence {k} event {e}: {event}"));
                    let next = blueprint.after(&event.edit);
                    rollout.run(event, &next);
                    blueprint = next;
                }
            }
        }));
        rollout.stop.store(true, Ordering::SeqCst);
        if let Err(panic) = result {
            eprintln!(
                "{plan}\nwhat happened:\n{}\nrepeat with {SEED_ENV}={seed}",
                rollout.log.lock().unwrap().join("\n")
            );
            resume_unwind(panic);
        }
    });
    lab.assert_no_violations();
    eprintln!(
        "seed {seed}: {} events in {} s",
        SEQUENCES * EVENTS_PER_SEQUENCE,
        started.elapsed().as_secs()
    );
}

fn describe(seed: u64, sequences: &[Vec<Event>]) -> String {
    let mut text = format!("rollout seed {seed} ({SEED_ENV} picks another):\n");
    for (k, sequence) in sequences.iter().enumerate() {
        for (e, event) in sequence.iter().enumerate() {
            text.push_str(&format!("  sequence {k} event {e}: {event}\n"));
        }
    }
    text
}

/// One finished deploy.
struct Deployed {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    /// What the lab's watcher saw (`destroy: members …`, `start`).
    seen: Vec<String>,
}

impl Deployed {
    fn summary(&self) -> String {
        let last = self
            .stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default();
        format!("exit {:?}: {last}", self.status.code())
    }

    /// Applied, perhaps holding steps back for a later run (exit 6 then,
    /// as the README documents), or nothing to do.
    fn succeeded(&self) -> bool {
        self.status.success()
            || (self.status.code() == Some(6)
                && self.stderr.lines().any(|l| l == "deployed")
                && self.stderr.contains("step(s) held back"))
    }

    fn converged(&self) -> bool {
        self.status.success()
            && self
                .stderr
                .contains("nothing to do: the host matches the blueprint")
    }
}

struct Rollout<'a> {
    lab: &'a Lab,
    /// What the sampler found.
    violations: Mutex<Vec<String>>,
    stop: AtomicBool,
    /// Everything done, for a failure's report.
    log: Mutex<Vec<String>>,
}

impl Rollout<'_> {
    fn note(&self, line: String) {
        eprintln!("{line}");
        self.log.lock().unwrap().push(line);
    }

    /// The sampler: quorum and dead members every 20 ms, until `stop`.
    fn sample(&self) {
        let cluster = &self.lab.cluster;
        let nodes = self.lab.nodes.len();
        let mut suspects: BTreeSet<u64> = BTreeSet::new();
        while !self.stop.load(Ordering::SeqCst) {
            let mut found = Vec::new();
            let runs_before: Vec<Option<u64>> = (0..nodes).map(|i| cluster.member_of(i)).collect();
            let members = cluster.members();
            let runs_after: Vec<Option<u64>> = (0..nodes).map(|i| cluster.member_of(i)).collect();
            if !cluster.has_quorum() {
                found.push(format!("etcd has no quorum: {members:?}"));
            }
            let mut hostnames = BTreeSet::new();
            let mut unrun = BTreeSet::new();
            for member in &members {
                if !CPS.contains(&member.hostname.as_str()) {
                    found.push(format!(
                        "member {:016x} `{}` is no control plane of the blueprint",
                        member.id, member.hostname
                    ));
                }
                if !hostnames.insert(member.hostname.clone()) {
                    found.push(format!(
                        "two members are `{}`: {members:?}",
                        member.hostname
                    ));
                }
                let run = |runs: &[Option<u64>]| runs.contains(&Some(member.id));
                if !run(&runs_before) && !run(&runs_after) {
                    if suspects.contains(&member.id) {
                        found.push(format!(
                            "member {:016x} `{}` is dead: no node runs it: {members:?}",
                            member.id, member.hostname
                        ));
                    }
                    unrun.insert(member.id);
                }
            }
            suspects = unrun;
            if !found.is_empty() {
                let mut violations = self.violations.lock().unwrap();
                for v in found {
                    if !violations.contains(&v) {
                        violations.push(v);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn check_sampler(&self) {
        let violations = self.violations.lock().unwrap().clone();
        assert!(violations.is_empty(), "invariants broken: {violations:#?}");
    }

    /// One event: the edit built, the fault set, the faulted deploy(s),
    /// the fault cleared, then the re-runs until one has nothing to do.
    fn run(&self, event: &Event, after: &Blueprint) {
        let lab = self.lab;
        let seeds_before = self.seeds();
        let configs_before: Vec<Vec<u8>> = (0..lab.nodes.len())
            .map(|i| lab.cluster.config(i))
            .collect();
        let calls_at_start = lab.cluster.calls().len();
        self.rebuild(after);
        let replace: Vec<&str> = event
            .replace
            .map(|i| vec!["--allow-replace", CPS[i]])
            .unwrap_or_default();
        let mut break_lock = false;
        match event.fault {
            Fault::None => {}
            Fault::Unhealthy(j) => {
                lab.cluster.set_member_unhealthy(j, true);
                let requests = lab.sim.requests().len();
                let calls = lab.cluster.calls().len();
                let state = self.node_state();
                let deployed = self.deploy(&replace, Guest::BootsItsFiles, LONG_WAIT);
                self.note(format!("  {} unhealthy: {}", CPS[j], deployed.summary()));
                self.check(&deployed, event);
                if event.takes_a_control_plane_down() {
                    assert_eq!(
                        deployed.status.code(),
                        Some(6),
                        "an unhealthy member must stop the deploy\n{}\n{}",
                        deployed.stdout,
                        deployed.stderr
                    );
                    assert!(
                        deployed.stderr.contains("nothing was changed"),
                        "{}",
                        deployed.stderr
                    );
                    assert_eq!(
                        lab.sim.changes_since(requests),
                        Vec::<String>::new(),
                        "no write to the host"
                    );
                    let mutations: Vec<String> = lab.cluster.calls()[calls..]
                        .iter()
                        .filter(|c| {
                            ["Upgrade", "EtcdLeaveCluster", "EtcdRemoveMemberByID"]
                                .contains(&c.method.as_str())
                        })
                        .map(|c| format!("{} on {:?}", c.method, c.target))
                        .collect();
                    assert_eq!(mutations, Vec::<String>::new(), "no Talos change");
                    assert_eq!(self.node_state(), state, "the nodes as they were");
                }
                lab.cluster.set_member_unhealthy(j, false);
            }
            Fault::NeverReturns(i) => {
                let guest = if event.replace == Some(i) {
                    Guest::NeverReturns
                } else {
                    lab.cluster.set_reboot_time(i, NEVER);
                    Guest::BootsItsFiles
                };
                // Until the fault bites (a deploy fails) or the rollout is
                // done without the node rebooting.
                for _ in 0..=lab.nodes.len() {
                    let deployed = self.deploy(&replace, guest, SHORT_WAIT);
                    self.note(format!("  node {i} never returns: {}", deployed.summary()));
                    self.check(&deployed, event);
                    if !deployed.succeeded() || deployed.converged() {
                        break;
                    }
                }
                // The node boots after all.
                if guest == Guest::NeverReturns {
                    if !lab.cluster.is_up(i) && lab.cluster.member_of(i).is_none() {
                        lab.cluster.replace_without_leave(i, &lab.nodes[i].name);
                        lab.boot_from_its_files(i);
                    }
                } else {
                    lab.cluster.set_reboot_time(i, REBOOT);
                    if !lab.cluster.is_up(i) {
                        lab.cluster.power_on(i);
                    }
                }
            }
            Fault::Killed(delay) => {
                let deployed = self.deploy_killed(&replace, delay);
                self.note(format!("  killed: {}", deployed.summary()));
                self.check(&deployed, event);
                break_lock = true;
            }
        }
        self.converge(after, Some(event), &replace_args(event, break_lock));
        // A node the guest did not boot got its config from the deploy.
        let seeds_after = self.seeds();
        for (i, node) in lab.nodes.iter().enumerate() {
            let proxied = lab.cluster.calls()[calls_at_start..]
                .iter()
                .filter(|c| c.target == Some(i) && c.entry != i)
                .count();
            if seeds_after[i] != seeds_before[i] && event.replace != Some(i) {
                assert_eq!(
                    proxied, 0,
                    "{}: only the deploy changes a node it did not replace",
                    node.name
                );
                assert_ne!(configs_before[i], lab.cluster.config(i));
            }
        }
    }

    /// Deploys (watched, the VMs' guests booting their files) until one
    /// has nothing to do: at most once per Talos node and once more, each
    /// succeeding; then the cluster is as the build says.
    fn converge(&self, blueprint: &Blueprint, event: Option<&Event>, extra: &[String]) {
        let lab = self.lab;
        // The nodes are back (an operator re-runs once they are).
        let start = Instant::now();
        while !(0..lab.nodes.len()).all(|i| lab.cluster.is_up(i)) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "a node stays down"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let limit = lab.nodes.len() + 1;
        let mut extra = extra.to_vec();
        for run in 1..=limit {
            let args: Vec<&str> = extra.iter().map(String::as_str).collect();
            let deployed = self.deploy(&args, Guest::BootsItsFiles, LONG_WAIT);
            self.note(format!("  re-run {run}: {}", deployed.summary()));
            if let Some(event) = event {
                self.check(&deployed, event);
            } else {
                self.check_sampler();
            }
            assert!(
                deployed.succeeded(),
                "a re-run after the faults cleared failed\n{}\n{}",
                deployed.stdout,
                deployed.stderr
            );
            extra.retain(|a| a != "--break-lock");
            if deployed.converged() {
                self.assert_as_built(blueprint);
                return;
            }
        }
        panic!("no convergence in {limit} deploys");
    }

    /// Every node up on the blueprint's version, running exactly its
    /// seed's bytes, which pass the Talos schema; etcd healthy with the
    /// blueprint's control planes.
    fn assert_as_built(&self, blueprint: &Blueprint) {
        let lab = self.lab;
        let validator = talos_schema();
        for (i, node) in lab.nodes.iter().enumerate() {
            let path = format!("dist/vms/{}/seed/user-data", node.name);
            let built = fs::read(lab.lab.path(&path)).unwrap();
            assert!(lab.cluster.is_up(i), "{} is up", node.name);
            assert_eq!(lab.cluster.version(i), blueprint.talos(), "{}", node.name);
            assert!(
                lab.cluster.config(i) == built,
                "{} runs the build's config",
                node.name
            );
            assert_eq!(lab.cluster.staged_config(i), None, "{}", node.name);
            assert_valid(&validator, &path, &String::from_utf8(built).unwrap());
        }
        let members = lab.cluster.members();
        assert_eq!(lab.member_names(), CPS, "{members:?}");
        assert!(
            members.iter().all(|m| m.healthy && !m.is_learner),
            "{members:?}"
        );
        assert!(lab.cluster.has_quorum());
        self.check_sampler();
    }

    /// After a deploy of `event`: the sampler's invariants, and no member
    /// listed when its VM was destroyed; a VM is destroyed only by the
    /// replace the event allows.
    fn check(&self, deployed: &Deployed, event: &Event) {
        self.check_sampler();
        for seen in &deployed.seen {
            if let Some(rest) = seen.strip_prefix("destroy: members ") {
                let replaced = event
                    .replace
                    .unwrap_or_else(|| panic!("a VM destroyed without a replace: {seen}"));
                let members = rest.split(' ').next().unwrap_or_default();
                assert!(
                    !members.split(',').any(|m| m == CPS[replaced]),
                    "{}'s VM destroyed while its member was listed: {seen}",
                    CPS[replaced]
                );
            }
        }
    }

    fn deploy(&self, extra: &[&str], guest: Guest, wait: &str) -> Deployed {
        let mut args = extra.to_vec();
        args.extend(["--talos-wait", wait]);
        let (output, seen) = self.lab.watched(guest, || self.lab.deploy(&args));
        Deployed {
            status: output.status,
            stdout: text(&output.stdout),
            stderr: text(&output.stderr),
            seen,
        }
    }

    /// The deploy in its own process group, killed (SIGKILL, with its ssh
    /// tunnel) `delay` after it began changing things.
    fn deploy_killed(&self, extra: &[&str], delay: Duration) -> Deployed {
        let lab = self.lab;
        let mut args = extra.to_vec();
        args.extend(["--talos-wait", LONG_WAIT]);
        let dir = tempfile::tempdir().unwrap();
        let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
        let requests = lab.sim.requests().len();
        let calls = lab.cluster.calls().len();
        let state = self.node_state();
        let (status, seen) = lab.watched(Guest::BootsItsFiles, || {
            let mut child = lab
                .deploy_command(&args)
                .stdin(Stdio::null())
                .stdout(fs::File::create(&out).unwrap())
                .stderr(fs::File::create(&err).unwrap())
                .process_group(0)
                .spawn()
                .unwrap();
            let mut began: Option<Instant> = None;
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    return status;
                }
                if began.is_none() && self.changing(requests, calls, &state) {
                    began = Some(Instant::now());
                }
                if began.is_some_and(|t| t.elapsed() >= delay) {
                    let group = format!("-{}", child.id());
                    let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
                    return child.wait().unwrap();
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Deployed {
            status,
            stdout: fs::read_to_string(&out).unwrap_or_default(),
            stderr: fs::read_to_string(&err).unwrap_or_default(),
            seen,
        }
    }

    /// Whether the deploy has begun changing things since `requests` and
    /// `calls`: a write to the host other than its lock, an `Upgrade` or
    /// etcd removal, or a node's config.
    fn changing(&self, requests: usize, calls: usize, state: &[NodeState]) -> bool {
        let lab = self.lab;
        let wrote = lab.sim.requests()[requests..].iter().any(|r| {
            r["method"] != "GET" && !r["path"].as_str().unwrap_or_default().contains("/pools")
        });
        wrote
            || lab.cluster.calls()[calls..].iter().any(|c| {
                ["Upgrade", "EtcdLeaveCluster", "EtcdRemoveMemberByID"].contains(&c.method.as_str())
            })
            || self
                .node_state()
                .iter()
                .zip(state)
                .any(|(a, b)| a.config != b.config)
    }

    /// The lab's blueprint with `blueprint`'s values, built.
    fn rebuild(&self, blueprint: &Blueprint) {
        let path = &self.lab.lab.blueprint;
        let mut document: toml::Table = fs::read_to_string(path).unwrap().parse().unwrap();
        blueprint.edit(&mut document);
        fs::write(path, toml::to_string(&document).unwrap()).unwrap();
        self.lab.build();
    }

    /// Each node's seed (the build's machine config).
    fn seeds(&self) -> Vec<Vec<u8>> {
        self.lab
            .nodes
            .iter()
            .map(|n| {
                fs::read(
                    self.lab
                        .lab
                        .path(&format!("dist/vms/{}/seed/user-data", n.name)),
                )
                .unwrap()
            })
            .collect()
    }

    fn node_state(&self) -> Vec<NodeState> {
        let cluster = &self.lab.cluster;
        (0..self.lab.nodes.len())
            .map(|i| NodeState {
                config: cluster.config(i),
                staged: cluster.staged_config(i),
                version: cluster.version(i),
            })
            .collect()
    }
}

/// What a deploy must not change when it refuses.
#[derive(Debug, PartialEq, Eq)]
struct NodeState {
    config: Vec<u8>,
    staged: Option<Vec<u8>>,
    version: String,
}

/// The arguments the operator re-runs `event`'s deploy with.
fn replace_args(event: &Event, break_lock: bool) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(i) = event.replace {
        args.extend(["--allow-replace".to_string(), CPS[i].to_string()]);
    }
    if break_lock {
        args.push("--break-lock".into());
    }
    args
}
