//! Opening the sled database: one way for the daemon, the CLI and the tests.
//!
//! sled allows one process per database, and says so only in the text of an I/O error. So before sled is asked,
//! this module takes an exclusive lock of its own on `<db>/koi-github-indexer.lock` with the standard library's
//! file locks, and a store held by another process is [`StorageError::Locked`], a type, not a string to match.
//! Holding that lock, a failure of sled's own lock can only be this process's previous handle still closing
//! (sled's flusher thread lets go a moment after the last handle is dropped), so that one is waited out briefly.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Name of our lock file inside the database directory.
const LOCK_FILE: &str = "koi-github-indexer.lock";
/// The inbox's directory inside the store ([`Store::inbox_dir`]).
const INBOX_DIR: &str = "inbox";
/// How long a closing handle of this same process is waited for.
const SAME_PROCESS_WAIT: Duration = Duration::from_secs(1);
/// sled's page cache when nothing is configured (sled's own default is 1 GiB).
pub const DEFAULT_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// Makes every file and directory this process creates from now on private to its user (mode 0600 / 0700),
/// whatever umask it was started with. sled and the inbox create their files themselves, so the umask is the one
/// place that covers them all; `main` calls this first thing, as the systemd unit's `UMask=0077` does.
pub fn private_umask() {
    // SAFETY: umask only sets the process's file-creation mask; it cannot fail and touches no memory.
    unsafe {
        libc::umask(0o077);
    }
}

/// `create_dir_all` with mode 0700 for every directory it creates, whatever the umask. An existing directory is
/// left as it is.
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// Another process holds the store.
    #[error(
        "the store at {} is in use by another process (a running koi-github-indexer?): stop it, or use another \
         data_dir",
        path.display()
    )]
    Locked {
        /// The database directory.
        path: PathBuf,
    },
    /// The directory or the lock file could not be created or locked.
    #[error("cannot use the store directory {}: {source}", path.display())]
    Io {
        /// The database directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// sled refused to open it.
    #[error("cannot open the store at {}: {source}", path.display())]
    Open {
        /// The database directory.
        path: PathBuf,
        /// sled's error.
        source: sled::Error,
    },
}

/// An open store: the database and the lock that keeps other processes out while it is held.
pub struct Store {
    /// The database. Clone it freely; the lock lives as long as this `Store`.
    pub db: sled::Db,
    /// The store's directory.
    pub path: PathBuf,
    /// Whether sled compresses its pages in this store: fixed when the store is created (see
    /// [`StoreOptions::compression`]).
    pub compressed: bool,
    _lock: File,
}

impl Store {
    /// Where the node's inbox keeps its segment files: inside the store's directory, so the store's lock covers
    /// it and a backup or move of the directory takes the events in flight along.
    pub fn inbox_dir(&self) -> PathBuf {
        self.path.join(INBOX_DIR)
    }
}

/// How to open the store.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// sled's page cache (`cache_capacity`), in bytes: what the store's memory use is bounded by.
    pub cache_bytes: u64,
    /// sled's own zstd compression of every page it writes (`use_compression`), for a store created now: about
    /// 55 % of the disk, for about 1.5 times the writer's CPU and a far slower first open after a run
    /// ([`DEFAULT_COMPRESSION`]). sled fixes it when it creates a store, so an existing store is opened with the
    /// value it was created with, whatever this says.
    pub compression: bool,
}

/// New stores are not compressed by default. Compression would meet the disk target (about 2 KB/event instead of
/// 3.5–6), but sled decompresses its whole log on the first open after a run, about 20 times slower than plain
/// pages (661 ms against 20 ms after 10,000 events), and sled 0.34 writes its snapshot only when it opens a store,
/// so a restart after a long run would take that long. docs/benchmarks.md has the numbers.
pub const DEFAULT_COMPRESSION: bool = false;

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_bytes: DEFAULT_CACHE_BYTES,
            compression: DEFAULT_COMPRESSION,
        }
    }
}

/// Opens (creating if needed) the database at `path`. Blocking: call it off the async runtime.
pub fn open(path: &Path, options: StoreOptions) -> Result<Store, StorageError> {
    let io = |source| StorageError::Io {
        path: path.to_owned(),
        source,
    };
    create_private_dir(path).map_err(io)?;
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path.join(LOCK_FILE))
        .map_err(io)?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(StorageError::Locked {
                path: path.to_owned(),
            })
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    let started = Instant::now();
    let mut compression = options.compression;
    let mut asked_otherwise = false;
    loop {
        match sled::Config::new()
            .path(path)
            .cache_capacity(options.cache_bytes)
            .use_compression(compression)
            // zstd's fastest level: within 2 % of sled's default (5) on disk, and cheaper (docs/benchmarks.md).
            .compression_factor(1)
            .open()
        {
            Ok(db) => {
                if asked_otherwise {
                    tracing::info!(
                        store = %path.display(),
                        compression,
                        "this store was created with storage.compression = {compression}, which it keeps: the \
                         setting applies to new stores (to change it, export the index and import it into a new \
                         data dir)"
                    );
                }
                return Ok(Store {
                    db,
                    path: path.to_owned(),
                    compressed: compression,
                    _lock: lock,
                });
            }
            // sled refuses to open a store with another compression than it was created with.
            Err(sled::Error::Unsupported(why))
                if !asked_otherwise && why.contains("use_compression") =>
            {
                compression = !compression;
                asked_otherwise = true;
            }
            Err(sled::Error::Io(_)) if started.elapsed() < SAME_PROCESS_WAIT => {
                std::thread::sleep(Duration::from_millis(20));
            }
            // Still refused after the wait: sled's own lock is held by a process that does not take ours (an
            // older release). sled reports that as an `Other` I/O error; permissions and the like have kinds.
            Err(sled::Error::Io(e)) if e.kind() == std::io::ErrorKind::Other => {
                return Err(StorageError::Locked {
                    path: path.to_owned(),
                })
            }
            Err(source) => {
                return Err(StorageError::Open {
                    path: path.to_owned(),
                    source,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_store_is_locked_and_free_again_once_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = open(dir.path(), StoreOptions::default()).unwrap();
        assert!(matches!(
            open(dir.path(), StoreOptions::default()),
            Err(StorageError::Locked { .. })
        ));
        first.db.insert(b"k", b"v").unwrap();
        drop(first);
        let again = open(dir.path(), StoreOptions::default()).unwrap();
        assert_eq!(again.db.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
    }

    #[test]
    fn a_store_keeps_the_compression_it_was_created_with_whatever_the_setting_says() {
        for created_with in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let options = |compression| StoreOptions {
                compression,
                ..StoreOptions::default()
            };
            let store = open(dir.path(), options(created_with)).unwrap();
            assert_eq!(store.compressed, created_with);
            store.db.insert(b"k", b"v").unwrap();
            store.db.flush().unwrap();
            drop(store);
            // The setting changed since: the store still opens, as it was created, with its data.
            let store = open(dir.path(), options(!created_with)).unwrap();
            assert_eq!(store.compressed, created_with);
            assert_eq!(store.db.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
        }
    }
}
