//! systemd readiness notifications for `Type=notify` (see `systemd/koi-github-indexer.service`).
//!
//! `READY=1` tells systemd the service is up, so `systemctl start` returns and units ordered after it start only
//! then: send it once the query API is listening. `STOPPING=1` says shutdown has begun, so `systemctl status` shows
//! "deactivating" while the inbox drains. Outside systemd (`NOTIFY_SOCKET` unset) every call is a no-op, and a
//! failure to notify is logged at debug and otherwise ignored: it must never stop the daemon.

use sd_notify::NotifyState;

fn send(state: &[NotifyState<'_>], what: &str) {
    if let Err(e) = sd_notify::notify(false, state) {
        tracing::debug!(target: "koi_github_indexer::node", error = %e, "could not notify systemd of {what}");
    }
}

/// Tells systemd the service is ready (`READY=1`). Call once, after the query API is listening.
pub fn notify_ready() {
    send(&[NotifyState::Ready], "readiness");
}

/// Tells systemd the service is shutting down (`STOPPING=1`). Call when the shutdown signal arrives.
pub fn notify_stopping() {
    send(&[NotifyState::Stopping], "shutdown");
}

/// Sets the one-line status `systemctl status` shows (`STATUS=…`), e.g. `polling 3 neighbours, inbox 0`.
pub fn notify_status(status: &str) {
    send(&[NotifyState::Status(status)], "status");
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixDatagram;
    use std::time::Duration;

    use super::*;

    /// The only test in the crate that touches `NOTIFY_SOCKET`, so setting it cannot race another test.
    #[test]
    fn sends_ready_status_and_stopping_to_notify_socket_and_is_a_no_op_without_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind notify socket");
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");

        std::env::set_var("NOTIFY_SOCKET", &path);
        notify_ready();
        notify_status("polling 2 neighbours");
        notify_stopping();
        std::env::remove_var("NOTIFY_SOCKET");
        notify_ready(); // no socket: nothing sent, nothing fails

        let mut buf = [0u8; 256];
        let mut got = Vec::new();
        for _ in 0..3 {
            let n = socket.recv(&mut buf).expect("a notification");
            got.push(String::from_utf8_lossy(&buf[..n]).trim().to_owned());
        }
        assert_eq!(
            got,
            ["READY=1", "STATUS=polling 2 neighbours", "STOPPING=1"]
        );
        socket.set_nonblocking(true).expect("nonblocking");
        assert!(
            socket.recv(&mut buf).is_err(),
            "nothing sent without NOTIFY_SOCKET"
        );
    }
}
