//! Opening someone else's segment: another user's object, one that others may write, a
//! symbolic link planted in a shared directory. Writers refuse unless they opt in;
//! read-only inspection stays possible and says whose the object is.
//!
//! Giving an object away (chown to nobody, uid 65534) needs root; the tests run as root
//! and fail, saying so, when they cannot.
#![cfg(not(loom))]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use atbus::{Channel, Config, Error, Inspector, OpenOptions};
use common::Named;

const NOBODY: u32 = 65534;

fn shm_path(name: &str) -> PathBuf {
    PathBuf::from(format!("/dev/shm{name}"))
}

fn chown_to_nobody(path: &std::path::Path) {
    std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY)).unwrap_or_else(|e| {
        panic!(
            "chown {} to uid {NOBODY} failed ({e}): these tests give objects away and \
             need root (CAP_CHOWN)",
            path.display()
        )
    });
}

fn chmod(path: &std::path::Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn another_users_segment_is_refused_for_writing_unless_opted_in() {
    let ch = Named::new("foreign");
    drop(Channel::create(&ch.0, 1 << 20, &Config::default()).unwrap());
    chown_to_nobody(&shm_path(&ch.0));

    let err = Channel::open(&ch.0).unwrap_err();
    match &err {
        Error::ForeignSegment {
            name,
            owner_uid,
            mode,
            euid,
            ..
        } => {
            assert_eq!(name, &ch.0);
            assert_eq!(*owner_uid, NOBODY);
            assert_eq!(*mode, 0o600);
            assert_eq!(*euid, nix::unistd::geteuid().as_raw());
        }
        other => panic!("{other:?}"),
    }
    let text = err.to_string();
    for part in [
        "refusing to write to channel",
        "owned by uid 65534",
        "mode 0600",
        "allow_foreign_owner(true)",
        "--allow-foreign",
    ] {
        assert!(text.contains(part), "{part:?} missing from: {text}");
    }
    // The explicit default is the same refusal.
    assert!(matches!(
        OpenOptions::new().allow_foreign_owner(false).open(&ch.0),
        Err(Error::ForeignSegment { .. })
    ));

    // Opted in: it works as any channel.
    let channel = OpenOptions::new()
        .allow_foreign_owner(true)
        .open(&ch.0)
        .unwrap();
    channel.writer().send(b"to nobody").unwrap();
    assert_eq!(
        channel.reader().unwrap().try_recv_vec().unwrap(),
        b"to nobody"
    );

    // Read-only inspection needs no opt-in and says whose it is.
    let info = Inspector::open(&ch.0).unwrap().info();
    assert_eq!((info.owner_uid, info.mode), (NOBODY, 0o600));
    assert_eq!(info.owner_name.as_deref(), Some("nobody"));
    assert_eq!(info.file_size, info.declared_size);
}

#[test]
fn a_segment_others_may_write_is_refused_for_writing_unless_opted_in() {
    let ch = Named::new("shared-mode");
    drop(Channel::create(&ch.0, 1 << 20, &Config::default()).unwrap());
    let path = shm_path(&ch.0);
    for mode in [0o620, 0o602, 0o666] {
        chmod(&path, mode);
        match Channel::open(&ch.0) {
            Err(Error::ForeignSegment {
                mode: m, owner_uid, ..
            }) => {
                assert_eq!(m, mode);
                assert_eq!(owner_uid, nix::unistd::geteuid().as_raw());
            }
            other => panic!("mode {mode:o}: {other:?}"),
        }
        let text = Channel::open(&ch.0).unwrap_err().to_string();
        assert!(
            text.contains("writable by users other than its owner")
                && text.contains(&format!("mode {mode:04o}")),
            "{text}"
        );
        OpenOptions::new()
            .allow_foreign_owner(true)
            .open(&ch.0)
            .unwrap();
        assert_eq!(Inspector::open(&ch.0).unwrap().info().mode, mode);
    }
    // Readable by the group, writable only by the owner: nothing to refuse.
    chmod(&path, 0o640);
    Channel::open(&ch.0).unwrap();
}

#[test]
fn a_mode_wider_than_0600_needs_allow_shared_mode() {
    let ch = Named::new("create-mode");
    // Set the field directly: the builder would refuse the mode before create does.
    let mut wide = Config::default();
    wide.mode = 0o660;
    match Channel::create(&ch.0, 1 << 20, &wide) {
        Err(e @ Error::InvalidConfig { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("mode 660") && text.contains("allow_shared_mode"),
                "{text}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(Channel::open(&ch.0), Err(Error::NotFound { .. })));
    let mut opted = wide.clone();
    opted.allow_shared_mode = true;
    drop(Channel::create(&ch.0, 1 << 20, &opted).unwrap());
    let mode = std::fs::metadata(shm_path(&ch.0))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o660);
}

/// A scratch directory removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("atbus-sec-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        Dir(dir)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_symbolic_link_is_not_followed() {
    let dir = Dir::new("symlink");
    let real = dir.0.join("real");
    let link = dir.0.join("link");
    let real_name = real.to_str().unwrap();
    let link_name = link.to_str().unwrap();
    drop(Channel::create(real_name, 1 << 20, &Config::default()).unwrap());
    std::os::unix::fs::symlink(&real, &link).unwrap();

    let err = Channel::open(link_name).unwrap_err();
    assert!(
        matches!(&err, Error::Symlink { name } if name == link_name),
        "{err:?}"
    );
    assert!(err.to_string().contains("is a symbolic link"), "{err}");
    assert!(matches!(
        Inspector::open(link_name),
        Err(Error::Symlink { .. })
    ));
    // Creating through a link does not follow it either (the name exists).
    assert!(Channel::create(link_name, 1 << 20, &Config::default()).is_err());
    // The real path works.
    Channel::open(real_name)
        .unwrap()
        .writer()
        .send(b"x")
        .unwrap();
}

#[test]
fn a_fifo_in_place_of_a_channel_is_refused_without_hanging() {
    let dir = Dir::new("fifo");
    let fifo = dir.0.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let name = fifo.to_str().unwrap();
    assert!(matches!(Inspector::open(name), Err(Error::NotAtbus { .. })));
    assert!(matches!(Channel::open(name), Err(Error::NotAtbus { .. })));
}

#[test]
fn the_inspector_sees_the_object_shrink_under_it_without_touching_the_lost_pages() {
    let ch = Named::new("shrink");
    drop(Channel::create(&ch.0, 1 << 20, &Config::default()).unwrap());
    let view = Inspector::open(&ch.0).unwrap();
    assert_eq!(view.file_size().unwrap(), 1 << 20);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(shm_path(&ch.0))
        .unwrap();
    file.set_len(8192).unwrap();
    assert_eq!(view.file_size().unwrap(), 8192);
    let info = view.info();
    assert_eq!((info.file_size, info.declared_size), (8192, 1 << 20));
    // A fresh open refuses it.
    assert!(matches!(
        Inspector::open(&ch.0),
        Err(Error::Truncated {
            actual: 8192,
            expected: 1048576,
            ..
        })
    ));
}
