//! zstd frames read back safely. The zstd C library writes every frame (it is fast, and sled links it anyway), but
//! no frame is read back through it: the zstd 1.5.1 that sled 0.34 pins aborts, or without its assertions writes
//! out of bounds, on a crafted frame (docs/fuzzing.md, finding 6). Frames are decoded by `ruzstd`, a decoder in
//! safe Rust, so damaged or hostile bytes give an error and nothing else.
//!
//! A frame's header may claim any size, and a small frame may expand a thousandfold: the store's held values and
//! the inbox's records are read through here, so that they cost at most [`MAX_OUTPUT`] of memory, never what a
//! length field says.

use std::cell::RefCell;
use std::io;

use ruzstd::decoding::{BlockDecodingStrategy, Dictionary, FrameDecoder};

/// The most one frame is allowed to expand to: 64 MiB, `poll.max_response`'s default. Contents larger than this
/// are refused when they arrive (the index's preparation says so), and inbox records this large are stored
/// uncompressed, so nothing written is refused on reading.
pub const MAX_OUTPUT: usize = 64 * 1024 * 1024;

/// How much is decoded between two checks of the bound: zstd blocks hold at most 128 KiB each.
const STEP: usize = 1024 * 1024;

/// The most a zstd frame of `frame_len` bytes can hold: an RLE block is a 3-byte header and 1 byte for up to
/// 128 KiB, so a frame cannot expand more than 32,768-fold. A header claiming more is damage.
pub fn plausible(claimed: u64, frame_len: usize) -> bool {
    claimed <= MAX_OUTPUT as u64 && claimed <= (frame_len as u64).saturating_mul(32 * 1024)
}

/// A zstd *raw-content* dictionary (bytes that act as a past before the data, no entropy tables): what the C
/// library's `ZSTD_createCDict` makes of any bytes that do not start with the dictionary magic number. Frames
/// written with one do not name it, so the reader says which it is.
pub struct RawDictionary {
    /// Our own number for it, unique per dictionary in this program (never written anywhere).
    pub id: u32,
    pub content: &'static [u8],
}

impl RawDictionary {
    /// The dictionary as `ruzstd` takes it: the content, zstd's starting repeat offsets (1, 4, 8: what the C
    /// library uses with a raw-content dictionary), and empty entropy tables, which a frame written with a
    /// raw-content dictionary never refers to (a frame that does is refused as damaged).
    fn for_decoder(&self) -> Dictionary {
        Dictionary {
            id: self.id,
            fse: Default::default(),
            huf: Default::default(),
            dict_content: self.content.to_vec(),
            offset_hist: [1, 4, 8],
        }
    }
}

thread_local! {
    /// One decoder per thread, with the dictionaries it has been given: creating one, and adding a dictionary to
    /// it, cost about as much as decoding a small bundle.
    static DECODER: RefCell<(FrameDecoder, Vec<u32>)> = RefCell::new((decoder(), Vec::new()));
}

fn decoder() -> FrameDecoder {
    let mut decoder = FrameDecoder::new();
    // No window larger than a frame may expand to: the decoder's buffer is sized by it.
    decoder.set_max_window_size(MAX_OUTPUT as u64);
    decoder
}

fn damaged(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// One zstd frame (without a dictionary), decompressed; at most [`MAX_OUTPUT`] bytes.
pub fn decompress(frame: &[u8]) -> io::Result<Vec<u8>> {
    decode(frame, None)
}

/// One zstd frame written with `dictionary`, decompressed; at most [`MAX_OUTPUT`] bytes.
pub fn decompress_with(frame: &[u8], dictionary: &RawDictionary) -> io::Result<Vec<u8>> {
    decode(frame, Some(dictionary))
}

/// Exactly one frame, nothing after it; the size it claims (when it does), and its checksum (when it has one),
/// checked. The output grows as blocks are decoded, never ahead of them.
fn decode(frame: &[u8], dictionary: Option<&RawDictionary>) -> io::Result<Vec<u8>> {
    DECODER.with(|cell| {
        let (decoder, added) = &mut *cell.borrow_mut();
        let mut input = frame;
        decoder.reset(&mut input).map_err(damaged)?;
        if let Some(dictionary) = dictionary {
            if !added.contains(&dictionary.id) {
                decoder
                    .add_dict(dictionary.for_decoder())
                    .map_err(damaged)?;
                added.push(dictionary.id);
            }
            decoder.force_dict(dictionary.id).map_err(damaged)?;
        }
        let claimed = decoder.content_size();
        if !plausible(claimed, frame.len()) {
            return Err(damaged(format_args!(
                "the frame claims {claimed} bytes, more than it can hold or than a value may"
            )));
        }
        let mut out = Vec::with_capacity(claimed as usize);
        loop {
            let finished = decoder
                .decode_blocks(&mut input, BlockDecodingStrategy::UptoBytes(STEP))
                .map_err(damaged)?;
            decoder.collect_to_writer(&mut out)?;
            if out.len() > MAX_OUTPUT {
                return Err(damaged(format_args!(
                    "expands to more than {} MiB, the most a frame may hold",
                    MAX_OUTPUT / (1024 * 1024)
                )));
            }
            if finished {
                break;
            }
        }
        decoder.collect_to_writer(&mut out)?;
        if !input.is_empty() {
            return Err(damaged(format_args!(
                "{} bytes after the frame",
                input.len()
            )));
        }
        if claimed != 0 && out.len() as u64 != claimed {
            return Err(damaged(format_args!(
                "the frame claims {claimed} bytes and holds {}",
                out.len()
            )));
        }
        if let (Some(stored), Some(computed)) = (
            decoder.get_checksum_from_data(),
            decoder.get_calculated_checksum(),
        ) {
            if stored != computed {
                return Err(damaged("the frame's checksum does not match its contents"));
            }
        }
        Ok(out)
    })
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

    fn frame(data: &[u8], checksum: bool) -> Vec<u8> {
        let mut encoder = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
        encoder.include_checksum(checksum).unwrap();
        std::io::Write::write_all(&mut encoder, data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn frames_of_the_c_library_read_back_and_damage_is_refused() {
        let data = br#"{"type":"PushEvent","repo":{"name":"a/b"}}"#.repeat(100);
        for checksum in [false, true] {
            let good = frame(&data, checksum);
            assert_eq!(decompress(&good).unwrap(), data);
            let mut trailing = good.clone();
            trailing.push(0);
            assert!(decompress(&trailing).is_err(), "bytes after the frame");
            assert!(decompress(&good[..good.len() - 2]).is_err(), "cut short");
            if checksum {
                let mut flipped = good.clone();
                *flipped.last_mut().unwrap() ^= 1;
                let e = decompress(&flipped).unwrap_err();
                assert!(e.to_string().contains("checksum"), "{e}");
            }
        }
        assert!(decompress(b"not a frame").is_err());
        assert!(decompress(b"").is_err());
    }
}
