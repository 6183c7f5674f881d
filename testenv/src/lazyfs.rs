//! A filesystem that forgets what was never synced: a power loss on command, after the idea of
//! Jepsen's LazyFS.
//!
//! [`LazyFs`] mounts a FUSE filesystem over a backing folder. The backing folder holds what
//! would survive a power loss; everything else lives in this process's memory:
//!
//! - **File contents are lazy.** A write lands in an in-memory page cache of its file. Only
//!   `fsync`/`fdatasync` of the file, or a write through a descriptor opened with `O_SYNC` or
//!   `O_DSYNC`, copies the file's cached pages and length to the backing file. A `truncate` is
//!   cached the same way.
//! - **Names are durable at once.** Creating, renaming and removing files and folders reach the
//!   backing folder immediately, as on a filesystem that journals its metadata synchronously.
//!   So a file created or renamed but never synced survives a crash with the contents it last
//!   synced (empty if never): the classic "renamed but empty" file after a crash. (Jepsen's
//!   LazyFS can also lose such names; this one does not, so it can only under-count losses.)
//! - Modes are applied at once; owners and timestamps are not kept (nothing here reads them).
//!
//! [`LazyFs::checkpoint`] syncs every file at once, as the kernel's writeback eventually would
//! (Jepsen's LazyFS has the same command).
//!
//! [`LazyFs::crash`] unmounts (dropping every cached page, so every unsynced write) and mounts
//! again over the same backing folder: what a machine that lost power sees after it boots.
//! The kernel is told not to cache file data (`direct_io`), so after a crash nothing stale is
//! served from its page cache.
//!
//! The mount needs `/dev/fuse` and root (fuser mounts with mount(2) directly: no libfuse and
//! no `fusermount`).

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
    WriteFlags,
};
use tempfile::TempDir;

use crate::Error;

/// The cache's page size.
const PAGE: u64 = 4096;
/// How long the kernel may cache names and attributes: only this filesystem changes them, and
/// a crash remounts, which clears the kernel's caches.
const TTL: Duration = Duration::from_secs(1);
/// `O_DSYNC`; `O_SYNC` includes it. (Linux values, as in `<fcntl.h>`.)
const O_DSYNC: i32 = 0o10000;
const O_EXCL: i32 = 0o200;
const O_TRUNC: i32 = 0o1000;

/// A mounted lazy filesystem (see the module's documentation) with its backing folder, both
/// temporary. Unmounted on drop.
pub struct LazyFs {
    session: Option<BackgroundSession>,
    /// The mounted filesystem's state, shared with it (for [`LazyFs::checkpoint`]).
    state: Arc<Mutex<State>>,
    mountpoint: TempDir,
    backing: TempDir,
}

impl LazyFs {
    /// Mounts a new, empty lazy filesystem on a temporary folder.
    pub fn mount() -> Result<Self, Error> {
        let backing = TempDir::with_prefix("spartakus-lazyfs-backing-")
            .map_err(|e| Error::io("creating a temporary folder", e))?;
        let mountpoint = TempDir::with_prefix("spartakus-lazyfs-")
            .map_err(|e| Error::io("creating a temporary folder", e))?;
        let mut fs = Self {
            session: None,
            state: Arc::default(),
            mountpoint,
            backing,
        };
        fs.session = Some(fs.spawn()?);
        Ok(fs)
    }

    fn spawn(&mut self) -> Result<BackgroundSession, Error> {
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("lazyfs".into()),
            MountOption::Subtype("lazyfs".into()),
        ];
        let lazy = Lazy::new(self.backing.path().to_owned());
        self.state = lazy.state.clone();
        fuser::spawn_mount(lazy, self.mountpoint.path(), &config).map_err(|e| {
            Error::io(
                format!(
                    "mounting a FUSE filesystem on {} (needs /dev/fuse and root)",
                    self.mountpoint.path().display()
                ),
                e,
            )
        })
    }

    /// Where the filesystem is mounted.
    pub fn path(&self) -> &Path {
        self.mountpoint.path()
    }

    /// Syncs every file, as `sync(1)` would: everything written so far survives a crash.
    pub fn checkpoint(&self) -> Result<(), Error> {
        let mut state = lock(&self.state);
        for content in state.contents.values_mut() {
            content
                .sync()
                .map_err(|e| Error::io("syncing the lazy filesystem", e))?;
        }
        Ok(())
    }

    /// Loses power: every write not synced is dropped, and the filesystem is mounted again with
    /// what was synced. Every process using the filesystem must have exited (or been killed)
    /// first: the old mount is detached, and its last open file must be closed before it can
    /// go away.
    pub fn crash(&mut self) -> Result<(), Error> {
        if let Some(session) = self.session.take() {
            session
                .umount_and_join()
                .map_err(|e| Error::io("unmounting the lazy filesystem", e))?;
        }
        self.session = Some(self.spawn()?);
        Ok(())
    }
}

impl std::fmt::Debug for LazyFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyFs")
            .field("mountpoint", &self.mountpoint.path())
            .field("backing", &self.backing.path())
            .finish_non_exhaustive()
    }
}

impl Drop for LazyFs {
    fn drop(&mut self) {
        // Unmounts (lazily, if still busy) before the folders are removed. Not joined: a process
        // still holding a file open would make that wait for ever.
        drop(self.session.take());
    }
}

/// The FUSE side: names straight to the backing folder, contents through [`Content`].
struct Lazy {
    backing: PathBuf,
    state: Arc<Mutex<State>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding the lock leaves the state as consistent as any crash would.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Default)]
struct State {
    /// Inode → path relative to the backing folder (the root is the empty path).
    paths: HashMap<u64, PathBuf>,
    inodes: HashMap<PathBuf, u64>,
    next: u64,
    /// The cached contents of every file opened since the mount.
    contents: HashMap<u64, Content>,
}

impl State {
    fn inode(&mut self, path: PathBuf) -> u64 {
        if let Some(&ino) = self.inodes.get(&path) {
            return ino;
        }
        self.next += 1;
        let ino = self.next;
        self.paths.insert(ino, path.clone());
        self.inodes.insert(path, ino);
        ino
    }

    fn path(&self, ino: INodeNo) -> Result<&PathBuf, Errno> {
        self.paths.get(&ino.0).ok_or(Errno::ENOENT)
    }

    /// Forgets the names `path` and everything under it.
    fn forget(&mut self, path: &Path) {
        let gone: Vec<PathBuf> = self
            .inodes
            .keys()
            .filter(|p| p.starts_with(path))
            .cloned()
            .collect();
        for p in gone {
            if let Some(ino) = self.inodes.remove(&p) {
                self.paths.remove(&ino);
            }
        }
    }

    /// Moves the names `from` and everything under it to `to`.
    fn moved(&mut self, from: &Path, to: &Path) {
        self.forget(to);
        let moving: Vec<(PathBuf, u64)> = self
            .inodes
            .iter()
            .filter(|(p, _)| p.starts_with(from))
            .map(|(p, &ino)| (p.clone(), ino))
            .collect();
        for (old, ino) in moving {
            self.inodes.remove(&old);
            let new = match old.strip_prefix(from) {
                Ok(rest) if !rest.as_os_str().is_empty() => to.join(rest),
                _ => to.to_owned(),
            };
            self.paths.insert(ino, new.clone());
            self.inodes.insert(new, ino);
        }
    }
}

/// One file's contents: the backing file holds what was synced, `dirty` the pages written
/// since, `len` its length now.
struct Content {
    backing: File,
    /// The backing file's length.
    synced_len: u64,
    /// Bytes of the backing file at or past this offset were cut by a truncate since the last
    /// sync: they read as zeros.
    cut: u64,
    len: u64,
    dirty: BTreeMap<u64, Box<[u8]>>,
}

impl Content {
    fn open(path: &Path) -> io::Result<Self> {
        let backing = OpenOptions::new().read(true).write(true).open(path)?;
        let len = backing.metadata()?.len();
        Ok(Self {
            backing,
            synced_len: len,
            cut: len,
            len,
            dirty: BTreeMap::new(),
        })
    }

    /// Page `index` as it was synced (zeros past the synced or cut end).
    fn clean_page(&self, index: u64) -> io::Result<Box<[u8]>> {
        let mut page = vec![0; PAGE as usize].into_boxed_slice();
        let start = index * PAGE;
        let end = self.synced_len.min(self.cut);
        if start < end {
            let n = (end - start).min(PAGE) as usize;
            self.backing.read_exact_at(&mut page[..n], start)?;
        }
        Ok(page)
    }

    fn read(&self, offset: u64, size: u32) -> io::Result<Vec<u8>> {
        let end = (offset + u64::from(size)).min(self.len);
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut at = offset;
        while at < end {
            let index = at / PAGE;
            let from = (at % PAGE) as usize;
            let to = (end - index * PAGE).min(PAGE) as usize;
            match self.dirty.get(&index) {
                Some(page) => out.extend_from_slice(&page[from..to]),
                None => out.extend_from_slice(&self.clean_page(index)?[from..to]),
            }
            at = index * PAGE + to as u64;
        }
        Ok(out)
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut done = 0;
        while done < data.len() {
            let at = offset + done as u64;
            let index = at / PAGE;
            let from = (at % PAGE) as usize;
            let n = (PAGE as usize - from).min(data.len() - done);
            if !self.dirty.contains_key(&index) {
                let page = self.clean_page(index)?;
                self.dirty.insert(index, page);
            }
            if let Some(page) = self.dirty.get_mut(&index) {
                page[from..from + n].copy_from_slice(&data[done..done + n]);
            }
            done += n;
        }
        self.len = self.len.max(offset + data.len() as u64);
        Ok(())
    }

    fn truncate(&mut self, len: u64) {
        if len < self.len {
            let keep = len.div_ceil(PAGE);
            self.dirty.retain(|&index, _| index < keep);
            if let Some(page) = self.dirty.get_mut(&(len / PAGE)) {
                page[(len % PAGE) as usize..].fill(0);
            }
            self.cut = self.cut.min(len);
        }
        self.len = len;
    }

    /// Makes the cached contents the synced ones.
    fn sync(&mut self) -> io::Result<()> {
        // The backing folder stands for the disk: writing to it is enough, no real fsync.
        self.backing.set_len(self.synced_len.min(self.cut))?;
        self.backing.set_len(self.len)?;
        for (&index, page) in &self.dirty {
            let start = index * PAGE;
            let n = (self.len - start).min(PAGE) as usize;
            self.backing.write_all_at(&page[..n], start)?;
        }
        self.dirty.clear();
        self.synced_len = self.len;
        self.cut = self.len;
        Ok(())
    }
}

fn attr(ino: u64, meta: &Metadata, len: Option<u64>) -> FileAttr {
    let time = |secs: i64, nanos: i64| {
        UNIX_EPOCH + Duration::new(secs.max(0) as u64, nanos.clamp(0, 999_999_999) as u32)
    };
    let size = len.unwrap_or(meta.len());
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: time(meta.atime(), meta.atime_nsec()),
        mtime: time(meta.mtime(), meta.mtime_nsec()),
        ctime: time(meta.ctime(), meta.ctime_nsec()),
        crtime: SystemTime::UNIX_EPOCH,
        kind: FileType::from_std(meta.file_type()).unwrap_or(FileType::RegularFile),
        perm: (meta.mode() & 0o7777) as u16,
        nlink: meta.nlink() as u32,
        uid: meta.uid(),
        gid: meta.gid(),
        rdev: meta.rdev() as u32,
        blksize: PAGE as u32,
        flags: 0,
    }
}

impl Lazy {
    fn new(backing: PathBuf) -> Self {
        let mut state = State {
            next: INodeNo::ROOT.0 - 1,
            ..State::default()
        };
        state.inode(PathBuf::new());
        Self {
            backing,
            state: Arc::new(Mutex::new(state)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn attr_of(&self, state: &State, ino: u64, path: &Path) -> Result<FileAttr, Errno> {
        let meta = std::fs::symlink_metadata(self.backing.join(path))?;
        let len = state.contents.get(&ino).map(|c| c.len);
        Ok(attr(ino, &meta, len))
    }

    /// The cached contents of file `ino`, opened on first use.
    fn content<'s>(&self, state: &'s mut State, ino: INodeNo) -> Result<&'s mut Content, Errno> {
        if !state.contents.contains_key(&ino.0) {
            let path = self.backing.join(state.path(ino)?);
            state.contents.insert(ino.0, Content::open(&path)?);
        }
        state.contents.get_mut(&ino.0).ok_or(Errno::ENOENT)
    }

    fn child(&self, state: &State, parent: INodeNo, name: &OsStr) -> Result<PathBuf, Errno> {
        Ok(state.path(parent)?.join(name))
    }

    fn lookup_entry(
        &self,
        state: &mut State,
        parent: INodeNo,
        name: &OsStr,
    ) -> Result<FileAttr, Errno> {
        let path = self.child(state, parent, name)?;
        let meta = std::fs::symlink_metadata(self.backing.join(&path))?;
        let ino = state.inode(path);
        let len = state.contents.get(&ino).map(|c| c.len);
        Ok(attr(ino, &meta, len))
    }
}

impl Filesystem for Lazy {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut state = self.lock();
        match self.lookup_entry(&mut state, parent, name) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let state = self.lock();
        let result = state
            .path(ino)
            .and_then(|path| self.attr_of(&state, ino.0, path));
        match result {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut state = self.lock();
        let result = (|| {
            let path = self.backing.join(state.path(ino)?);
            if let Some(mode) = mode {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o7777))?;
            }
            if let Some(size) = size {
                self.content(&mut state, ino)?.truncate(size);
            }
            let path = state.path(ino)?.clone();
            self.attr_of(&state, ino.0, &path)
        })();
        match result {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let mut state = self.lock();
        let result = (|| {
            let path = self.child(&state, parent, name)?;
            std::fs::DirBuilder::new()
                .mode(mode & !umask & 0o7777)
                .create(self.backing.join(&path))?;
            self.lookup_entry(&mut state, parent, name)
        })();
        match result {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut state = self.lock();
        let result = (|| {
            let path = self.child(&state, parent, name)?;
            let full = self.backing.join(&path);
            OpenOptions::new()
                .write(true)
                .create(true)
                .create_new(flags & O_EXCL != 0)
                .mode(mode & !umask & 0o7777)
                .open(&full)?;
            let ino = state.inode(path);
            let content = self.content(&mut state, INodeNo(ino))?;
            if flags & O_TRUNC != 0 {
                content.truncate(0);
            }
            self.lookup_entry(&mut state, parent, name)
        })();
        match result {
            Ok(attr) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(0),
                FopenFlags::FOPEN_DIRECT_IO,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mut state = self.lock();
        match self.content(&mut state, ino) {
            Ok(content) => {
                if flags.0 & O_TRUNC != 0 {
                    content.truncate(0);
                }
                reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO);
            }
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        let mut state = self.lock();
        let result = self
            .content(&mut state, ino)
            .and_then(|c| c.read(offset, size).map_err(Errno::from));
        match result {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut state = self.lock();
        let result = self.content(&mut state, ino).and_then(|c| {
            c.write(offset, data)?;
            // A descriptor opened with O_SYNC or O_DSYNC syncs every write.
            if flags.0 & O_DSYNC != 0 {
                c.sync()?;
            }
            Ok(())
        });
        match result {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: fuser::LockOwner,
        reply: ReplyEmpty,
    ) {
        // close() syncs nothing.
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut state = self.lock();
        match self
            .content(&mut state, ino)
            .and_then(|c| c.sync().map_err(Errno::from))
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Names are durable at once.
        reply.ok();
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut state = self.lock();
        let result = (|| {
            let path = self.child(&state, parent, name)?;
            std::fs::remove_file(self.backing.join(&path))?;
            // An open file keeps its contents (and its backing descriptor) until it is closed.
            state.forget(&path);
            Ok::<_, Errno>(())
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut state = self.lock();
        let result = (|| {
            let path = self.child(&state, parent, name)?;
            std::fs::remove_dir(self.backing.join(&path))?;
            state.forget(&path);
            Ok::<_, Errno>(())
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mut state = self.lock();
        let result = (|| {
            let from = self.child(&state, parent, name)?;
            let to = self.child(&state, newparent, newname)?;
            if flags.contains(RenameFlags::RENAME_EXCHANGE)
                || flags.contains(RenameFlags::RENAME_WHITEOUT)
            {
                return Err(Errno::EINVAL);
            }
            let target = self.backing.join(&to);
            if flags.contains(RenameFlags::RENAME_NOREPLACE) && target.symlink_metadata().is_ok() {
                return Err(Errno::EEXIST);
            }
            std::fs::rename(self.backing.join(&from), &target)?;
            state.moved(&from, &to);
            Ok(())
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let mut state = self.lock();
        let result = (|| {
            let dir = state.path(ino)?.clone();
            let mut entries = vec![
                (ino.0, FileType::Directory, ".".into()),
                (ino.0, FileType::Directory, "..".into()),
            ];
            let mut children: Vec<_> =
                std::fs::read_dir(self.backing.join(&dir))?.collect::<io::Result<Vec<_>>>()?;
            children.sort_by_key(|e| e.file_name());
            for child in children {
                let kind = FileType::from_std(child.file_type()?).unwrap_or(FileType::RegularFile);
                let child_ino = state.inode(dir.join(child.file_name()));
                entries.push((child_ino, kind, child.file_name()));
            }
            Ok::<_, Errno>(entries)
        })();
        match result {
            Ok(entries) => {
                for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
                    if reply.add(INodeNo(*ino), i as u64 + 1, *kind, name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // A fixed 64 GiB, all free: servers size their stores from this.
        let blocks = (64 << 30) / PAGE;
        reply.statfs(
            blocks,
            blocks,
            blocks,
            1 << 20,
            1 << 20,
            PAGE as u32,
            255,
            PAGE as u32,
        );
    }
}
