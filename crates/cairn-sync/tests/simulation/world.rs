//! Everything one seed simulates: the server, each device's disk and persisted engine
//! state, the network's condition, the fault levels, and the one random number
//! generator every decision draws from (so a seed replays exactly). Also the users: the
//! random edits made on a device's disk, and those another client (the web interface,
//! the CLI) makes on the server directly.

use std::cell::RefCell;
use std::collections::HashSet;

use cairn_core::ServerPath;
use cairn_sync::{Ignore, Kind, State};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::disk::{Disk, DiskNode};
use crate::server::{Content, Server};
use crate::stream::Prefetch;

/// How often things go wrong; all zero in the quiescent phase.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// A request is lost before the server sees it.
    pub drop_request: f64,
    /// The server applied the request, but its response is lost.
    pub drop_response: f64,
    /// Before an environment call, the user edits this device's disk.
    pub user_race: f64,
    /// Before an environment call, another client changes the server.
    pub server_race: f64,
    /// Before an environment call, another device's prefetcher is told of uploads in
    /// progress (streaming sync).
    pub prefetch_race: f64,
    /// Before an environment call, the device crashes: nothing after it happens, and
    /// nothing after its last save is remembered.
    pub crash: f64,
    /// Up to this many polls before a call lands, so calls running side by side reach
    /// the disk and the server in a shuffled order.
    pub max_delay: u32,
    /// A new file or folder gets a freed inode number, as real file systems do.
    pub inode_reuse: f64,
    /// The server forgets a cursor (as after journal compaction), so the engine must
    /// list everything again.
    pub cursor_reset: f64,
    /// A write gets the same modification time as the one before it, as writes within
    /// one timestamp granule do (a clock tick; 2 seconds on FAT).
    pub coarse_clock: f64,
}

impl Faults {
    pub fn random(rng: &mut StdRng) -> Faults {
        let mut level = |high: f64| match rng.gen_range(0..4) {
            0 => 0.0,
            1 => high / 4.0,
            2 => high / 2.0,
            _ => high,
        };
        Faults {
            drop_request: level(0.2),
            drop_response: level(0.2),
            user_race: level(0.2),
            server_race: level(0.06),
            prefetch_race: level(0.6),
            crash: level(0.02),
            max_delay: 3,
            inode_reuse: level(0.3),
            cursor_reset: level(0.05),
            coarse_clock: level(0.5),
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct DeviceNet {
    pub offline: bool,
    pub crashed: bool,
}

pub struct World {
    pub rng: StdRng,
    pub verbose: bool,
    /// Every line of the trace, when a test compares two runs of a seed.
    pub recorded: Option<RefCell<Vec<String>>>,
    pub step: u64,
    /// A logical clock for modification times; it ticks on every disk write.
    pub clock: i64,
    pub server: Server,
    pub disks: Vec<Disk>,
    pub devices: Vec<DeviceNet>,
    /// What each device's engine saved: the state a restart begins from.
    pub persisted: Vec<State>,
    pub faults: Faults,
    /// Changes per delta page.
    pub page: usize,
    pub ignore: Ignore,
    next_content: Content,
    /// Per device: how many times the user deleted or moved something away; the count
    /// when the engine's last scan began; and that count as of the engine's last save.
    /// Only a removal after the scan the engine last saved justifies it stopping at an
    /// emptied folder.
    pub removals: Vec<u64>,
    pub removals_at_scan: Vec<u64>,
    pub removals_saved: Vec<u64>,
    /// Per device, the contents its user wrote.
    pub user_written: Vec<HashSet<Content>>,
    /// Invariant failures seen inside environment calls, checked after every step.
    pub violations: Vec<String>,
    /// Per device: its prefetcher (streaming sync).
    pub prefetch: Vec<Prefetch>,
    /// Blocks a download took from what was fetched ahead; blocks sent as deltas, and
    /// changed blocks sent whole.
    pub streamed: u64,
    pub delta_blocks: u64,
    pub whole_blocks: u64,
}

/// Names for everything, few enough that paths collide across devices.
const NAMES: &[&str] = &["a", "b", "c.txt", "D", "E", "d"];
/// Names the engine must never touch (built-in ignore rules).
const IGNORED: &[&str] = &[".DS_Store", "x.swp", ".cairn-part-7"];

impl World {
    pub fn new(seed: u64, verbose: bool, record: bool) -> World {
        let mut rng = StdRng::seed_from_u64(seed);
        let devices = rng.gen_range(2..=3);
        let faults = Faults::random(&mut rng);
        let page = rng.gen_range(1..=6);
        World {
            rng,
            verbose,
            recorded: record.then(|| RefCell::new(Vec::new())),
            step: 0,
            clock: 0,
            server: Server::default(),
            disks: (0..devices).map(|_| Disk::default()).collect(),
            devices: vec![DeviceNet::default(); devices],
            persisted: vec![State::default(); devices],
            faults,
            page,
            ignore: Ignore::default(),
            next_content: 0,
            violations: Vec::new(),
            user_written: vec![HashSet::new(); devices],
            removals: vec![0; devices],
            removals_at_scan: vec![0; devices],
            removals_saved: vec![0; devices],
            prefetch: vec![Prefetch::default(); devices],
            streamed: 0,
            delta_blocks: 0,
            whole_blocks: 0,
        }
    }

    pub fn log(&self, what: impl FnOnce() -> String) {
        if self.verbose || self.recorded.is_some() {
            let line = format!("[{:>4}] {}", self.step, what());
            if self.verbose {
                eprintln!("{line}");
            }
            if let Some(recorded) = &self.recorded {
                recorded.borrow_mut().push(line);
            }
        }
    }

    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.gen_bool(p.min(1.0))
    }

    pub fn violation(&mut self, message: String) {
        self.log(|| format!("VIOLATION: {message}"));
        self.violations.push(message);
    }

    pub fn tick(&mut self) -> i64 {
        if self.clock == 0 || !self.chance(self.faults.coarse_clock) {
            self.clock += 1;
        }
        self.clock * 1_000
    }

    fn new_content(&mut self) -> Content {
        self.next_content += 1;
        self.next_content
    }

    /// A new content the user of `dev` writes.
    fn user_content(&mut self, dev: usize) -> Content {
        let content = self.new_content();
        self.user_written[dev].insert(content);
        content
    }

    /// An inode for a new node on `dev`'s disk, perhaps a recycled one.
    pub fn new_inode(&mut self, dev: usize) -> u64 {
        let reuse = if self.chance(self.faults.inode_reuse) {
            Some(self.rng.gen_range(0..1000))
        } else {
            None
        };
        self.disks[dev].new_inode(reuse)
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> Option<T> {
        if items.is_empty() {
            None
        } else {
            Some(items[self.rng.gen_range(0..items.len())].clone())
        }
    }

    /// A path in a random folder of `folders` (the root included), not too deep.
    fn random_path(&mut self, folders: &[ServerPath], names: &[&str]) -> Option<ServerPath> {
        let parent = self.pick(folders)?;
        let parent = if parent.segments().count() >= 3 {
            ServerPath::root()
        } else {
            parent
        };
        let name = self.pick(names)?;
        Some(parent.join(name).expect("valid names"))
    }

    /// One random edit by the user on `dev`'s disk; says what it did.
    pub fn user_action(&mut self, dev: usize) -> String {
        let ignore = self.ignore.clone();
        let disk = &self.disks[dev];
        let mut folders = vec![ServerPath::root()];
        let mut files = Vec::new();
        let mut all = Vec::new();
        for (path, node) in &disk.nodes {
            if ignore.is_ignored(path) {
                continue;
            }
            all.push(path.clone());
            match node.kind {
                Kind::Folder => folders.push(path.clone()),
                Kind::File => files.push(path.clone()),
            }
        }
        let what = self.rng.gen_range(0..100);
        let done = match what {
            // Create a file.
            0..=19 => {
                let path = self
                    .random_path(&folders, NAMES)
                    .filter(|p| !self.disks[dev].nodes.contains_key(p));
                path.map(|path| {
                    let content = self.user_content(dev);
                    let node = DiskNode {
                        kind: Kind::File,
                        inode: self.new_inode(dev),
                        mtime: self.tick(),
                        content: Some(content),
                    };
                    self.disks[dev].nodes.insert(path.clone(), node);
                    format!("create {path} = #{content}")
                })
            }
            // Edit a file in place.
            20..=39 => self.pick(&files).map(|path| {
                let content = self.user_content(dev);
                let mtime = self.tick();
                let node = self.disks[dev].nodes.get_mut(&path).expect("listed");
                node.content = Some(content);
                node.mtime = mtime;
                format!("edit {path} = #{content}")
            }),
            // Save it the way editors do: a new file renamed over the old one.
            40..=46 => self.pick(&files).map(|path| {
                let content = self.user_content(dev);
                let node = DiskNode {
                    kind: Kind::File,
                    inode: self.new_inode(dev),
                    mtime: self.tick(),
                    content: Some(content),
                };
                let old = self.disks[dev].nodes.insert(path.clone(), node);
                self.disks[dev].free_inodes.extend(old.map(|n| n.inode));
                format!("atomic save {path} = #{content}")
            }),
            // Make a folder.
            47..=58 => {
                let path = self
                    .random_path(&folders, NAMES)
                    .filter(|p| !self.disks[dev].nodes.contains_key(p));
                path.map(|path| {
                    let node = DiskNode {
                        kind: Kind::Folder,
                        inode: self.new_inode(dev),
                        mtime: self.tick(),
                        content: None,
                    };
                    self.disks[dev].nodes.insert(path.clone(), node);
                    format!("mkdir {path}")
                })
            }
            // Delete a file or a folder with what it holds, but never the last item
            // (an emptied folder stops the engine, by design).
            59..=68 => self.pick(&all).and_then(|path| {
                let left = all.iter().filter(|p| !p.starts_with(&path)).count();
                (left > 0).then(|| {
                    self.disks[dev].remove_subtree(&path);
                    self.removals[dev] += 1;
                    format!("delete {path}")
                })
            }),
            // Move or rename something, a folder into another folder included.
            69..=93 => {
                let from = self.pick(&all);
                let targets: Vec<ServerPath> = match &from {
                    Some(from) => folders
                        .iter()
                        .filter(|f| !f.starts_with(from))
                        .cloned()
                        .collect(),
                    None => Vec::new(),
                };
                let keep_name = self.chance(0.5);
                let to = self.random_path(&targets, NAMES);
                from.zip(to).and_then(|(from, to)| {
                    let to = if keep_name {
                        to.parent()
                            .expect("not the root")
                            .join(from.name().expect("not the root"))
                            .expect("valid")
                    } else {
                        to
                    };
                    self.disks[dev].rename(&from, &to).ok().map(|()| {
                        self.removals[dev] += 1;
                        format!("move {from} -> {to}")
                    })
                })
            }
            // Junk the engine must leave alone: created, or written again.
            _ => {
                let path = self.random_path(&folders, IGNORED);
                path.map(|path| {
                    let content = self.new_content();
                    let node = DiskNode {
                        kind: Kind::File,
                        inode: self.new_inode(dev),
                        mtime: self.tick(),
                        content: Some(content),
                    };
                    if self.disks[dev]
                        .nodes
                        .get(&path)
                        .is_some_and(|n| n.kind == Kind::Folder)
                    {
                        return "nothing".to_owned();
                    }
                    self.disks[dev].nodes.insert(path.clone(), node);
                    format!("junk {path} = #{content}")
                })
            }
        };
        done.unwrap_or_else(|| "nothing".to_owned())
    }

    /// Moves folders into each other on two devices (A into B on one, B into A on the
    /// other), the cycle a planner must break; says what it did.
    pub fn cross_move(&mut self, one: usize, other: usize) -> String {
        let folders: Vec<ServerPath> = self.disks[one]
            .nodes
            .iter()
            .filter(|(p, n)| {
                n.kind == Kind::Folder
                    && self.disks[other]
                        .nodes
                        .get(*p)
                        .is_some_and(|m| m.kind == Kind::Folder)
            })
            .map(|(p, _)| p.clone())
            .collect();
        let (Some(a), Some(b)) = (self.pick(&folders), self.pick(&folders)) else {
            return "nothing".to_owned();
        };
        if a.starts_with(&b) || b.starts_with(&a) {
            return "nothing".to_owned();
        }
        let a_in_b = b.join(a.name().expect("not the root")).expect("valid");
        let b_in_a = a.join(b.name().expect("not the root")).expect("valid");
        let here = self.disks[one].rename(&a, &a_in_b);
        let there = self.disks[other].rename(&b, &b_in_a);
        self.removals[one] += u64::from(here.is_ok());
        self.removals[other] += u64::from(there.is_ok());
        format!("dev{one}: {a} -> {a_in_b} {here:?}; dev{other}: {b} -> {b_in_a} {there:?}")
    }

    /// One random change by another client straight on the server; says what it did.
    pub fn server_action(&mut self) -> String {
        let mut folders = vec![ServerPath::root()];
        let mut all = Vec::new();
        for (path, entry) in &self.server.live {
            all.push(path.clone());
            if entry.kind == Kind::Folder {
                folders.push(path.clone());
            }
        }
        // Now and then a name the engine ignores, so that an ignored item renamed to a
        // synced name (and back) is seen too.
        let names = if self.chance(0.15) { IGNORED } else { NAMES };
        let what = self.rng.gen_range(0..100);
        let done = match what {
            0..=29 => {
                let path = self.random_path(&folders, names);
                path.map(|path| {
                    let content = self.new_content();
                    let base = self.server.live.get(&path).and_then(|e| e.node().rev);
                    let result = self.server.commit(&path, content, base.as_deref());
                    format!("web put {path} = #{content}: {:?}", result.map(|_| ()))
                })
            }
            30..=49 => {
                let path = self.random_path(&folders, names);
                path.map(|path| {
                    let result = self.server.mkdir(&path);
                    format!("web mkdir {path}: {:?}", result.map(|_| ()))
                })
            }
            50..=69 => self.pick(&all).map(|path| {
                let result = self.server.delete(&path, None);
                format!("web delete {path}: {result:?}")
            }),
            _ => {
                let from = self.pick(&all);
                let to = self.random_path(&folders, names);
                from.zip(to).map(|(from, to)| {
                    let result = self.server.rename(&from, &to, None);
                    format!("web move {from} -> {to}: {:?}", result.map(|_| ()))
                })
            }
        };
        done.unwrap_or_else(|| "nothing".to_owned())
    }
}
