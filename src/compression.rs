//! zstd frames read back with a bound. A frame's header may claim any size, and a small frame may expand a
//! thousandfold: the store's held values and the inbox's records are read through here, so that damaged or hostile
//! bytes cost at most [`MAX_OUTPUT`] of memory, never what a length field says.

use std::io::Read;

/// The most one frame is allowed to expand to: 64 MiB, `poll.max_response`'s default. Contents larger than this
/// are refused when they arrive (the index's preparation says so), and inbox records this large are stored
/// uncompressed, so nothing written is refused on reading.
pub const MAX_OUTPUT: usize = 64 * 1024 * 1024;

/// The most a zstd frame of `frame_len` bytes can hold: an RLE block is a 3-byte header and 1 byte for up to
/// 128 KiB, so a frame cannot expand more than 32,768-fold. A header claiming more is damage.
pub fn plausible(claimed: u64, frame_len: usize) -> bool {
    claimed <= MAX_OUTPUT as u64 && claimed <= (frame_len as u64).saturating_mul(32 * 1024)
}

/// Everything `reader` (a zstd decoder) gives, up to [`MAX_OUTPUT`]; past it, an error. Grown as the data comes,
/// never ahead of it.
pub fn read_bounded(mut reader: impl Read) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if out.len() + n > MAX_OUTPUT {
            return Err(std::io::Error::other(format!(
                "expands to more than {} MiB, the most a frame may hold",
                MAX_OUTPUT / (1024 * 1024)
            )));
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

/// A zstd frame (any, without a dictionary), decompressed with the bound.
pub fn decompress(frame: &[u8]) -> std::io::Result<Vec<u8>> {
    read_bounded(zstd::stream::Decoder::new(frame)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame of a few KB that expands past the bound: refused without holding more than the bound.
    fn bomb(bytes: usize) -> Vec<u8> {
        let mut encoder = zstd::stream::Encoder::new(Vec::new(), 19).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..bytes / zeros.len() {
            std::io::Write::write_all(&mut encoder, &zeros).unwrap();
        }
        encoder.finish().unwrap()
    }

    #[test]
    fn a_frame_expanding_past_the_bound_is_refused() {
        let frame = bomb(MAX_OUTPUT + (1 << 20));
        assert!(frame.len() < 64 * 1024, "{}", frame.len());
        assert!(decompress(&frame).is_err());
        assert_eq!(decompress(&bomb(1 << 20)).unwrap().len(), 1 << 20);
    }

    #[test]
    fn a_claimed_size_must_fit_the_frame() {
        assert!(plausible(1000, 10));
        assert!(!plausible(MAX_OUTPUT as u64 + 1, usize::MAX));
        assert!(!plausible(1 << 20, 20), "20 bytes cannot hold 1 MiB");
    }
}
