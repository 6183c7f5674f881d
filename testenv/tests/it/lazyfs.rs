//! LazyFs: reads see every write; a crash keeps what was synced (fsync, fdatasync, O_SYNC,
//! O_DSYNC) and nothing else; names are durable at once.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use testenv::LazyFs;

/// `O_SYNC` and `O_DSYNC` on Linux (`<fcntl.h>`).
const O_SYNC: i32 = 0o4010000;
const O_DSYNC: i32 = 0o10000;

fn read(path: &Path) -> Vec<u8> {
    let mut data = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    data
}

#[test]
fn a_synced_write_survives_a_crash_and_an_unsynced_one_does_not() {
    let mut fs = LazyFs::mount().expect("mounts (needs /dev/fuse and root)");
    let synced = fs.path().join("synced");
    let unsynced = fs.path().join("unsynced");
    let datasynced = fs.path().join("datasynced");

    let mut file = File::create(&synced).expect("creates");
    file.write_all(b"acknowledged").expect("writes");
    file.sync_all().expect("fsync");
    file.write_all(b" and then some").expect("writes");
    drop(file);
    let mut file = File::create(&datasynced).expect("creates");
    file.write_all(b"fdatasync too").expect("writes");
    file.sync_data().expect("fdatasync");
    drop(file);
    std::fs::write(&unsynced, b"only in the page cache").expect("writes");
    std::fs::create_dir(fs.path().join("folder")).expect("mkdir");

    // Before the crash, reads see every write.
    assert_eq!(read(&synced), b"acknowledged and then some");
    assert_eq!(read(&unsynced), b"only in the page cache");

    fs.crash().expect("crashes and mounts again");

    assert_eq!(read(&synced), b"acknowledged", "the synced prefix, no more");
    assert_eq!(read(&datasynced), b"fdatasync too");
    assert_eq!(
        read(&unsynced),
        b"",
        "a name survives (names are durable at once), its unsynced contents do not"
    );
    assert!(fs.path().join("folder").is_dir());
}

#[test]
fn writes_through_o_sync_or_o_dsync_descriptors_survive_a_crash() {
    let mut fs = LazyFs::mount().expect("mounts");
    for (name, flag) in [("o_sync", O_SYNC), ("o_dsync", O_DSYNC)] {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(flag)
            .open(fs.path().join(name))
            .expect("opens");
        file.write_all(name.as_bytes()).expect("writes");
    }
    fs.crash().expect("crashes");
    assert_eq!(read(&fs.path().join("o_sync")), b"o_sync");
    assert_eq!(read(&fs.path().join("o_dsync")), b"o_dsync");
}

#[test]
fn a_truncate_is_lazy_like_a_write() {
    let mut fs = LazyFs::mount().expect("mounts");
    let path = fs.path().join("log");
    let long: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
    let file = File::create(&path).expect("creates");
    file.write_all_at(&long, 0).expect("writes");
    file.sync_all().expect("fsync");

    // Cut to 100 bytes, then grow again past the old end: the cut bytes must read as zeros.
    file.set_len(100).expect("truncates");
    file.write_all_at(b"tail", 12_000)
        .expect("writes past the end");
    let mut expected = long[..100].to_vec();
    expected.resize(12_000, 0);
    expected.extend_from_slice(b"tail");
    assert_eq!(read(&path), expected);
    drop(file);

    fs.crash().expect("crashes");
    assert_eq!(read(&path), long, "the unsynced truncate is gone");

    let file = OpenOptions::new().write(true).open(&path).expect("opens");
    file.set_len(100).expect("truncates");
    file.sync_all().expect("fsync");
    drop(file);
    fs.crash().expect("crashes");
    assert_eq!(read(&path), &long[..100], "the synced truncate stays");
}

#[test]
fn reads_see_writes_at_any_offset_across_pages() {
    let fs = LazyFs::mount().expect("mounts");
    let path = fs.path().join("blocks");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .expect("opens");
    let mut model = Vec::new();
    // Writes of awkward lengths at awkward offsets, some synced, some overlapping.
    let mut seed = 7u64;
    for round in 0..200u64 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let offset = (seed >> 33) % 40_000;
        let len = 1 + (seed >> 17) % 9_000;
        let data: Vec<u8> = (0..len).map(|i| (i + round) as u8).collect();
        file.write_all_at(&data, offset).expect("writes");
        let end = (offset + len) as usize;
        if model.len() < end {
            model.resize(end, 0);
        }
        model[offset as usize..end].copy_from_slice(&data);
        if round % 7 == 0 {
            file.sync_data().expect("fdatasync");
        }
    }
    assert_eq!(read(&path), model);
    let mut middle = vec![0; 5_000];
    file.read_exact_at(&mut middle, 3_333).expect("reads");
    assert_eq!(middle, model[3_333..8_333]);
}

#[test]
fn a_rename_carries_the_unsynced_contents_with_the_file() {
    let mut fs = LazyFs::mount().expect("mounts");
    let tmp = fs.path().join("meta.tmp");
    let meta = fs.path().join("meta");
    std::fs::write(&tmp, b"written, renamed, never synced").expect("writes");
    std::fs::rename(&tmp, &meta).expect("renames");
    assert_eq!(read(&meta), b"written, renamed, never synced");
    assert!(!tmp.exists());
    fs.crash().expect("crashes");
    // The classic file that is there after a crash, but empty.
    assert_eq!(read(&meta), b"");
    assert!(!tmp.exists());
}

#[test]
fn a_checkpoint_syncs_every_file() {
    let mut fs = LazyFs::mount().expect("mounts");
    std::fs::create_dir(fs.path().join("stream")).expect("mkdir");
    let meta = fs.path().join("stream/meta.inf");
    std::fs::write(&meta, b"written before the checkpoint").expect("writes");
    fs.checkpoint().expect("checkpoints");
    let mut file = OpenOptions::new().append(true).open(&meta).expect("opens");
    file.write_all(b", and after").expect("writes");
    drop(file);
    fs.crash().expect("crashes");
    assert_eq!(read(&meta), b"written before the checkpoint");
}
