//! Secrets the daemon is given at start-up: the key password, the actions' HMAC secrets and the API token.
//!
//! Each comes from an environment variable whose *name* the config holds (never the value). When the variable is
//! not set, the file `$CREDENTIALS_DIRECTORY/<variable name>` is read instead, which is where systemd puts what
//! `LoadCredential=` names: the secret then never enters the environment at all.
//!
//! A secret read from the environment is removed from it by [`scrub`] before any thread starts. Removing the
//! variable (`unsetenv`) is not enough: `/proc/PID/environ` shows the process's *initial* environment block, which
//! `unsetenv` leaves in place, so the value's bytes are overwritten first. What stays readable in that file is the
//! variable's name followed by NUL bytes.

use std::ffi::CString;
use std::path::PathBuf;

/// The variable systemd sets to the directory holding the unit's `LoadCredential=` files.
pub const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

/// Where a secret was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// The environment variable.
    Environment,
    /// `$CREDENTIALS_DIRECTORY/<name>`.
    Credential(PathBuf),
}

/// Why a secret could not be read (a missing one is `Ok(None)`, not an error).
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The credential file exists but could not be read.
    #[error("cannot read the credential file {path} (from systemd's LoadCredential=): {source}")]
    Credential {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The variable holds bytes that are not UTF-8.
    #[error("the environment variable `{0}` is not valid UTF-8")]
    NotUtf8(String),
}

/// Reads the secret named `name`: the environment variable, else the credential file of the same name. Empty
/// values count as missing. Leaves the environment as it is (see [`scrub`]).
pub fn read(name: &str) -> Result<Option<(String, SecretSource)>, SecretError> {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => return Ok(Some((value, SecretSource::Environment))),
        Ok(_) | Err(std::env::VarError::NotPresent) => {}
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(SecretError::NotUtf8(name.to_owned()))
        }
    }
    let Some(dir) = std::env::var_os(CREDENTIALS_DIRECTORY) else {
        return Ok(None);
    };
    // A name with a path separator would read outside the directory: such a name is never a credential.
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Ok(None);
    }
    let path = PathBuf::from(dir).join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            // Files written with `echo` end with a newline that is not part of the secret.
            let value = text.trim_end_matches(['\n', '\r']).to_owned();
            Ok((!value.is_empty()).then_some((value, SecretSource::Credential(path))))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SecretError::Credential { path, source }),
    }
}

/// Removes the variable `name` from the environment, overwriting its value first where the C library keeps it
/// (for an inherited variable, the process's initial environment block), so that `/proc/PID/environ` no longer
/// shows it. A variable that is not set is left alone.
///
/// Call it only while the process has one thread: before the async runtime or any other thread starts (the
/// environment is not safe to change while another thread may read it).
pub fn scrub(name: &str) {
    let Ok(c_name) = CString::new(name) else {
        return;
    };
    if name.is_empty() || name.contains('=') {
        return;
    }
    // SAFETY: `getenv` returns either NULL or a pointer to the NUL-terminated value of the variable inside the
    // environment (for inherited variables, the initial block on the stack that /proc/PID/environ shows; for ones
    // set later, memory the C library allocated). Both are writable, and we write only the `strlen` bytes before the
    // terminating NUL, so the string stays terminated. The caller guarantees no other thread runs, so nothing reads
    // or changes the environment meanwhile.
    unsafe {
        let value = libc::getenv(c_name.as_ptr());
        if !value.is_null() {
            let len = libc::strlen(value);
            std::ptr::write_bytes(value, 0, len);
        }
    }
    std::env::remove_var(name);
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test touches the process environment: tests in this binary run on threads, so every case runs in order
    // inside it, with names no other test uses.
    #[test]
    fn secrets_come_from_the_variable_then_the_credential_file_and_leave_no_trace() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("KOI_TEST_SECRET_FILE"), "from-file\n").unwrap();
        std::fs::write(dir.path().join("KOI_TEST_SECRET_EMPTY"), "\n").unwrap();
        std::env::set_var(CREDENTIALS_DIRECTORY, dir.path());

        std::env::set_var("KOI_TEST_SECRET_ENV", "from-env");
        assert_eq!(
            read("KOI_TEST_SECRET_ENV").unwrap(),
            Some(("from-env".into(), SecretSource::Environment))
        );
        scrub("KOI_TEST_SECRET_ENV");
        assert!(
            std::env::var_os("KOI_TEST_SECRET_ENV").is_none(),
            "taken from the environment"
        );

        let (value, source) = read("KOI_TEST_SECRET_FILE").unwrap().unwrap();
        assert_eq!(value, "from-file", "the trailing newline is not part of it");
        assert_eq!(
            source,
            SecretSource::Credential(dir.path().join("KOI_TEST_SECRET_FILE"))
        );
        assert_eq!(read("KOI_TEST_SECRET_EMPTY").unwrap(), None);
        assert_eq!(read("KOI_TEST_SECRET_MISSING").unwrap(), None);
        assert_eq!(
            read("../etc/passwd").unwrap(),
            None,
            "never outside the directory"
        );

        std::env::remove_var(CREDENTIALS_DIRECTORY);
        assert_eq!(read("KOI_TEST_SECRET_FILE").unwrap(), None);
    }
}
