//! Where the Go-built server binaries live.

use std::path::{Path, PathBuf};

use crate::Error;

/// The folder `testenv/build.sh` writes to, found in this order: `$SPARTAKUS_TESTENV_BIN`,
/// `$CARGO_TARGET_DIR/testenv-bin`, a `testenv-bin` folder in an ancestor of the running
/// executable (test binaries live in `target/debug/deps`), else `<workspace>/target/testenv-bin`.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SPARTAKUS_TESTENV_BIN").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(target).join("testenv-bin");
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe
            .ancestors()
            .skip(1)
            .map(|a| a.join("testenv-bin"))
            .find(|d| d.is_dir())
    {
        return dir;
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("testenv-bin")
}

/// The path of one server binary, or an error telling how to build it.
pub(crate) fn binary(name: &'static str) -> Result<PathBuf, Error> {
    let dir = bin_dir();
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::MissingBinary { name, dir })
    }
}

/// A binary of this workspace (`gateway`, `ingester`, `volunteer`) from the target folder of the
/// running test: test executables live in `target/<profile>/deps`, binaries one level up.
/// `testenv/test.sh` builds them (`cargo build --workspace --bins`) before any test runs; a test
/// of the binary's own crate should prefer `env!("CARGO_BIN_EXE_<name>")`.
pub fn workspace_bin(name: &str) -> Result<PathBuf, Error> {
    let exe = std::env::current_exe().map_err(|e| Error::io("locating the test executable", e))?;
    let path = exe
        .ancestors()
        .skip(1)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name));
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::MissingWorkspaceBinary {
            name: name.to_owned(),
        })
    }
}
