//! The bus handle: create, open and unlink a bus, join it, and look at its members.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use atbus::{Channel, Config};

use crate::directory::{self, state, Directory, LockGuard, Snapshot};
use crate::endpoint::Endpoint;
use crate::error::{Error, Result};
use crate::fault::{self, CrashPoint};
use crate::name::{self, Name};
use crate::watch::Verdicts;

/// Inbox size unless [`Bus::join_with`] says otherwise: 1 MiB.
pub const DEFAULT_INBOX_BYTES: usize = 1 << 20;
/// How often processes that wait on a bus sweep it (together: one of them per period):
/// a dead endpoint's record and inbox are reclaimed this long after its death at most,
/// while anyone waits on the bus.
pub const SWEEP_PERIOD: Duration = Duration::from_secs(1);

/// A bus: a directory of named endpoints in one shared-memory object. Cheap to clone.
///
/// ```
/// # let bus_name = format!("/atbus-doc-bus-{}", std::process::id());
/// use std::time::Duration;
/// use atbus_bus::{Bus, Error};
///
/// let bus = Bus::create(&bus_name)?;
/// let mut orders = bus.join("orders")?;
/// let mut client = Bus::open(&bus_name)?.join("client")?;
/// assert!(matches!(bus.join("orders"), Err(Error::NameTaken { .. })));
///
/// client.send_to("orders", b"buy 10")?;
/// let msg = orders.recv_timeout(Duration::from_secs(5))?;
/// assert_eq!((msg.envelope.from(), &msg.payload[..]), ("client", &b"buy 10"[..]));
///
/// let names: Vec<String> = bus.members()?.iter().map(|m| m.name.to_string()).collect();
/// assert_eq!(names, ["orders", "client"]);
/// drop((orders, client)); // leave: inboxes unlinked, records freed
/// assert!(bus.members()?.is_empty());
/// Bus::unlink(&bus_name)?;
/// # Ok::<(), atbus_bus::Error>(())
/// ```
#[derive(Clone)]
pub struct Bus {
    dir: Arc<Directory>,
}

/// One endpoint on the bus, as [`Bus::members`] saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Endpoint name (held inline: a snapshot of many members allocates only their
    /// inbox names). Reads as a `&str` and compares with one.
    pub name: Name,
    /// Generation: unique per bus, new at every join.
    pub generation: u64,
    /// The owning process.
    pub pid: u32,
    /// Whether the owner is alive (pid plus start time; "cannot tell" counts as alive).
    /// A dead member's record is reclaimed by the next join of its name or by
    /// [`Bus::sweep`].
    pub alive: bool,
    /// When it joined.
    pub joined_at: SystemTime,
    /// Whether it takes messages (`false`: still creating its inbox, or leaving).
    pub ready: bool,
    /// The bus name, which its inbox channel's name starts with.
    bus: Arc<str>,
}

impl Member {
    /// Its inbox channel's name: [`inbox_name`](crate::inbox_name) of the bus, its name
    /// and its generation (the directory record holds the same; reads check it).
    pub fn inbox(&self) -> String {
        name::inbox_name(&self.bus, self.name.as_str(), self.generation)
    }
}

/// How to open an existing bus. [`Bus::open`] is `OpenOptions::new().open(name)`.
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    allow_foreign_owner: bool,
}

impl OpenOptions {
    /// The defaults: refuse a directory owned by another user or writable by others.
    pub fn new() -> OpenOptions {
        OpenOptions::default()
    }

    /// Open the bus even if its directory belongs to another user or is writable by group
    /// or others. Whoever may write it decides where this process's messages go.
    pub fn allow_foreign_owner(&mut self, allow: bool) -> &mut OpenOptions {
        self.allow_foreign_owner = allow;
        self
    }

    /// Opens bus `name` with these options.
    pub fn open(&self, name: &str) -> Result<Bus> {
        Ok(Bus {
            dir: Arc::new(Directory::open(name, self.allow_foreign_owner)?),
        })
    }
}

impl Bus {
    /// Creates bus `name` (`"/prod"`: a shared-memory name) with room for
    /// [`DEFAULT_CAPACITY`](crate::DEFAULT_CAPACITY) endpoints. `AlreadyExists` if there
    /// is one.
    pub fn create(name: &str) -> Result<Bus> {
        Bus::create_with_capacity(name, directory::DEFAULT_CAPACITY)
    }

    /// Creates bus `name` with room for `capacity` endpoints (1 to 65536).
    pub fn create_with_capacity(name: &str, capacity: usize) -> Result<Bus> {
        Ok(Bus {
            dir: Arc::new(Directory::create(name, capacity)?),
        })
    }

    /// Opens an existing bus. Refuses a directory owned by another user or writable by
    /// group or others ([`OpenOptions`] opts in).
    pub fn open(name: &str) -> Result<Bus> {
        OpenOptions::new().open(name)
    }

    /// Opens bus `name` read-only (`PROT_READ`), whoever owns it: for tools that only
    /// look (`members`, `lookup`). `join` and `sweep` fail with `ReadOnly`.
    pub fn open_read_only(name: &str) -> Result<Bus> {
        Ok(Bus {
            dir: Arc::new(Directory::open_read_only(name)?),
        })
    }

    /// The directory object's owner uid and permission bits (from `fstat` at open).
    pub fn owner(&self) -> (u32, u32) {
        self.dir.owner()
    }

    /// Opens bus `name`, creating it if there is none.
    pub fn open_or_create(name: &str) -> Result<Bus> {
        loop {
            match Bus::open(name) {
                Err(Error::NotFound { .. }) => {}
                other => return other,
            }
            match Bus::create(name) {
                Err(Error::AlreadyExists { .. }) => {}
                other => return other,
            }
        }
    }

    /// Removes bus `name`: the inbox of every endpoint its directory lists, then the
    /// directory. Processes still using it keep their mappings; the name can be created
    /// anew at once. A directory too damaged to read is removed all the same.
    pub fn unlink(name: &str) -> Result<()> {
        name::check_bus(name)?;
        if let Ok(dir) = Directory::open(name, false) {
            for i in 0..dir.capacity() {
                if let Ok(Some(s)) = dir.read(i) {
                    let _ = Channel::unlink(&s.inbox());
                }
            }
        }
        nix::sys::mman::shm_unlink(name).map_err(|e| Error::io("unlink", name, e.into()))
    }

    /// Joins the bus as `name` with a 1 MiB inbox. See [`join_with`](Bus::join_with).
    pub fn join(&self, name: &str) -> Result<Endpoint> {
        self.join_with(name, DEFAULT_INBOX_BYTES)
    }

    /// Joins the bus as `name`, creating an inbox channel of `inbox_bytes` bytes named
    /// `BUS.NAME.gGENERATION`. The returned [`Endpoint`] owns the inbox's reader; dropping
    /// it leaves the bus.
    ///
    /// * `NameTaken { pid }`: a live process holds the name (this one included);
    /// * a name held by a dead process is reclaimed (its inbox unlinked) and taken;
    /// * `DirectoryFull`: every record is held by a live endpoint.
    ///
    /// Of many processes joining one name at once exactly one wins: claims serialise on
    /// the directory lock. Steps (each one leaves a state the next process finishes;
    /// see docs/bus.md): under the lock, reclaim the name's dead record (unlink its
    /// inbox, free it) and claim a record (seqlock write, state claimed); without the
    /// lock, create the inbox (its size costs time: the lock is not held meanwhile);
    /// under the lock again, mark the record live.
    pub fn join_with(&self, name: &str, inbox_bytes: usize) -> Result<Endpoint> {
        name::check_endpoint(name)?;
        let (index, seq, generation, inbox) = {
            let guard = self.dir.lock()?;
            fault::point(CrashPoint::JoinLocked);
            let index = self.pick_record(&guard, name)?;
            let generation = guard.next_generation()?;
            let inbox = name::inbox_name(self.dir.bus(), name, generation);
            let seq = guard.claim(index, name, generation, &inbox);
            guard.bump_epoch();
            fault::point(CrashPoint::JoinClaimed);
            (index, seq, generation, inbox)
        };
        let made = create_inbox(&inbox, inbox_bytes).and_then(|channel| {
            let reader = channel.reader();
            if reader.is_err() {
                let _ = Channel::unlink(&inbox);
            }
            Ok((channel, reader?))
        });
        fault::point(CrashPoint::JoinInboxCreated);
        // Under the lock again, and only if the record still holds our claim: it does
        // unless someone judged this process dead (or scribbled on the directory).
        let finish = |to: u32| -> Result<()> {
            let guard = self.dir.lock()?;
            match guard.read(index)? {
                Some(s)
                    if s.seq == seq && s.generation == generation && s.state == state::CLAIMED =>
                {
                    guard.set_state(index, to);
                    guard.bump_epoch();
                    if to == state::LIVE {
                        fault::point(CrashPoint::JoinLive);
                    }
                    Ok(())
                }
                _ => Err(Error::Corrupt {
                    bus: self.name().into(),
                    reason: format!(
                        "record {index}, claimed by this process for {name:?}, was taken \
                         while its inbox was created"
                    ),
                }),
            }
        };
        let (channel, reader) = match made {
            Ok(made) => made,
            Err(e) => {
                let _ = finish(state::FREE);
                return Err(e);
            }
        };
        if let Err(e) = finish(state::LIVE) {
            drop(reader);
            let _ = Channel::unlink(&inbox);
            return Err(e);
        }
        Ok(Endpoint::new(
            self.clone(),
            Name::new(name.as_bytes()).expect("checked above"),
            index,
            seq,
            generation,
            inbox,
            channel,
            reader,
        ))
    }

    /// Under the lock: the record to claim for `name`. Refuses a name a live process
    /// holds, reclaims one a dead process holds, else takes a free record (sweeping dead
    /// records if there is none).
    fn pick_record(&self, guard: &LockGuard<'_>, name: &str) -> Result<usize> {
        let mut free = None;
        for i in 0..self.dir.capacity() {
            match guard.read(i)? {
                None => {
                    free = free.or(Some(i));
                }
                Some(s) if s.name.as_str() == name => {
                    if s.owner_alive() {
                        return Err(Error::NameTaken {
                            name: name.into(),
                            pid: s.owner_pid,
                        });
                    }
                    reclaim(guard, &s);
                    return Ok(i);
                }
                Some(_) => {}
            }
        }
        if let Some(i) = free {
            return Ok(i);
        }
        let mut swept = None;
        for i in 0..self.dir.capacity() {
            if let Some(s) = guard.read(i)? {
                if !s.owner_alive() {
                    reclaim(guard, &s);
                    swept = swept.or(Some(i));
                }
            }
        }
        swept.ok_or(Error::DirectoryFull {
            capacity: self.dir.capacity(),
        })
    }

    /// Reclaims every record whose owner is dead: unlinks its inbox and frees it.
    /// Returns how many. Joins reclaim the record of the name they join by themselves.
    /// Looks without the lock first: a bus with no dead endpoint is not locked.
    pub fn sweep(&self) -> Result<usize> {
        if self.dir.snapshot()?.iter().all(|s| s.owner_alive()) {
            return Ok(0);
        }
        let guard = self.dir.lock()?;
        let mut n = 0;
        for i in 0..self.dir.capacity() {
            if let Some(s) = guard.read(i)? {
                if !s.owner_alive() {
                    reclaim(&guard, &s);
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// Sweeps (see [`sweep`](Bus::sweep)) if no process on this bus has for
    /// [`SWEEP_PERIOD`]; otherwise returns `Ok(0)` at the cost of one load. Waiting
    /// endpoints and [`Watch`](crate::Watch)es call it; an event loop that waits on an
    /// endpoint's fd can call it from its own timer.
    pub fn sweep_if_due(&self) -> Result<usize> {
        if !self.dir.claim_sweep(SWEEP_PERIOD) {
            return Ok(0);
        }
        self.sweep()
    }

    /// A watch of this bus's membership: joined / left / restarted events. See
    /// [`Watch`](crate::Watch).
    pub fn watch(&self) -> Result<crate::Watch> {
        crate::Watch::new(self.clone())
    }

    /// A snapshot of the endpoints on the bus, in record order, read without the lock.
    /// Includes endpoints of dead processes not reclaimed yet (`alive: false`).
    pub fn members(&self) -> Result<Vec<Member>> {
        let mut verdicts = Verdicts::default();
        let mut members = Vec::new();
        self.dir.for_each_record(|s| {
            let alive = verdicts.alive(s.owner_pid, s.owner_start);
            members.push(member(s, alive));
        })?;
        Ok(members)
    }

    /// The endpoint named `name`, if one is on the bus and ready.
    pub fn lookup(&self, name: &str) -> Result<Option<Member>> {
        name::check_endpoint(name)?;
        Ok(self.dir.resolve(name)?.map(|s| {
            let alive = s.owner_alive();
            member(s, alive)
        }))
    }

    /// The bus name.
    pub fn name(&self) -> &str {
        self.dir.bus()
    }

    /// Endpoint records in the directory.
    pub fn capacity(&self) -> usize {
        self.dir.capacity()
    }

    /// The directory's change counter: bumped by every join, leave and reclaim.
    pub fn epoch(&self) -> u64 {
        self.dir.epoch()
    }

    /// The pid of the process holding the directory lock now, if any.
    pub fn lock_holder(&self) -> Option<u32> {
        match self.dir.lock_word() {
            0 => None,
            word => Some(directory::split_owner(word).0),
        }
    }

    /// How many times the directory lock was taken over from a dead holder.
    pub fn lock_takeovers(&self) -> u64 {
        self.dir.lock_takeovers()
    }

    pub(crate) fn dir(&self) -> &Directory {
        &self.dir
    }
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("name", &self.name())
            .field("capacity", &self.capacity())
            .finish()
    }
}

/// Under the lock: unlinks the inbox of a dead owner's record, then frees the record.
/// Unlink first: a crash between the two leaves the record naming an inbox that is
/// gone, which the next reclaim unlinks again (no-op) and frees.
pub(crate) fn reclaim(guard: &LockGuard<'_>, s: &Snapshot) {
    guard.set_state(s.index, state::LEAVING);
    guard.bump_epoch();
    fault::point(CrashPoint::ReclaimMarked);
    let _ = Channel::unlink(&s.inbox());
    fault::point(CrashPoint::ReclaimUnlinked);
    guard.set_state(s.index, state::FREE);
    guard.bump_epoch();
}

/// Creates an inbox channel. A leftover of that name (from an earlier directory of the
/// same bus name, whose generations restarted) is unlinked and created anew once.
fn create_inbox(inbox: &str, bytes: usize) -> Result<Channel> {
    let config = Config::default();
    match Channel::create(inbox, bytes, &config) {
        Err(atbus::Error::AlreadyExists { .. }) => {
            let _ = Channel::unlink(inbox);
            Ok(Channel::create(inbox, bytes, &config)?)
        }
        other => Ok(other?),
    }
}

pub(crate) fn member(s: Snapshot, alive: bool) -> Member {
    Member {
        alive,
        name: s.name,
        generation: s.generation,
        pid: s.owner_pid,
        joined_at: UNIX_EPOCH + Duration::from_nanos(s.joined_unix_ns),
        ready: s.state == state::LIVE,
        bus: s.bus,
    }
}
