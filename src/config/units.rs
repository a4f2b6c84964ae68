//! The units a config value may be written in: sizes (`"64 MiB"`) and durations (`"5s"`, humantime).

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A size: a number of bytes, or text such as `"64 MiB"` / `"1GB"`.
pub(super) fn de_size<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Size::deserialize(deserializer)? {
        Size::Bytes(n) => Ok(n),
        Size::Text(text) => text
            .trim()
            .parse::<bytesize::ByteSize>()
            .map(|b| b.as_u64())
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "`{text}` is not a size ({e}); write e.g. \"64 MiB\", \"512 KiB\" or a number of bytes"
                ))
            }),
    }
}

pub(super) fn de_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Text(String),
        Number(f64),
    }
    match Written::deserialize(deserializer)? {
        // A bare number is the commonest mistake: say what to write instead of "invalid type".
        Written::Number(n) => Err(serde::de::Error::custom(format!(
            "`{n}` has no unit: write a duration as text, e.g. \"{n}s\" (or \"{n}ms\", \"{n}m\")"
        ))),
        Written::Text(text) => humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "`{text}` is not a duration ({e}); write e.g. \"5s\", \"2m\", \"90d\""
            ))
        }),
    }
}

/// A socket address: `IP:PORT`, or `localhost:PORT` (taken as 127.0.0.1, the loopback address the API listens on
/// by default). Any other host name is refused with the form to write: a name could resolve to an address that is
/// not loopback.
pub(super) fn de_socket_addr<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(deserializer)?;
    if let Ok(addr) = text.trim().parse::<SocketAddr>() {
        return Ok(addr);
    }
    let port = text
        .trim()
        .strip_prefix("localhost:")
        .and_then(|port| port.parse::<u16>().ok());
    match port {
        Some(port) => Ok(SocketAddr::from(([127, 0, 0, 1], port))),
        None => Err(serde::de::Error::custom(format!(
            "`{text}` is not an address and port; write e.g. \"127.0.0.1:8004\" (or \"localhost:8004\")"
        ))),
    }
}

pub(super) fn de_opt_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    de_duration(deserializer).map(Some)
}
