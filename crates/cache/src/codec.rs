//! How values are turned into bytes and back.
//!
//! A value is stored as its JSON, compressed with LZ4 when the JSON is larger
//! than the configured threshold (and compression actually shrinks it). The
//! first byte says which, so readers never guess; the next eight hold the
//! xxh3-64 digest of the JSON, taken once when the value is encoded, so that
//! a reader wanting a validator of the value (an HTTP `ETag`) never hashes it
//! again on a hit:
//!
//! ```text
//! 'J' <digest: 8 bytes, big-endian> <JSON>
//! 'Z' <digest: 8 bytes, big-endian> <JSON, LZ4 with its size prepended>
//! ```
//!
//! Values written before the digest existed (`'j' <JSON>`, `'z' <LZ4>`) are
//! still read; their digest is computed when asked for.
//!
//! In Redis an entry is an *envelope*: a short header naming the versions of
//! the entry's tags at the time it was written, then the value. The header is
//! written by the `set` script from the versions it reads inside Redis, and
//! checked by the `get` script before the value is returned (see
//! `store/redis/scripts/`). Its layout, chosen so that Lua can parse it with
//! `string.find` and `string.sub`:
//!
//! ```text
//! '1'                      envelope format version
//! <n> '\n'                 number of tags, decimal
//! n × ( <len> '\n' <tag> <version: 16 hex digits> )
//! <value>                  flag byte + JSON or LZ4 bytes
//! ```

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::CodecError;

const PLAIN: u8 = b'J';
const LZ4: u8 = b'Z';
const LEGACY_PLAIN: u8 = b'j';
const LEGACY_LZ4: u8 = b'z';
/// Flag byte and digest.
const HEADER: usize = 9;

/// A value ready to be stored: a flag byte, the digest, then the JSON,
/// possibly compressed.
#[derive(Debug, Clone)]
pub(crate) struct Encoded {
    pub bytes: Bytes,
    /// Bytes that compression saved (0 when stored plain).
    pub saved: u64,
}

pub(crate) fn encode<T: Serialize + ?Sized>(
    value: &T,
    compression_threshold: usize,
) -> Result<Encoded, CodecError> {
    let json = serde_json::to_vec(value).map_err(CodecError::Serialize)?;
    Ok(encode_json(&json, compression_threshold))
}

pub(crate) fn encode_json(json: &[u8], compression_threshold: usize) -> Encoded {
    let digest = digest(json);
    if json.len() > compression_threshold {
        let compressed = lz4_flex::compress_prepend_size(json);
        if compressed.len() < json.len() {
            let saved = (json.len() - compressed.len()) as u64;
            return Encoded {
                bytes: with_header(LZ4, digest, &compressed),
                saved,
            };
        }
    }
    Encoded {
        bytes: with_header(PLAIN, digest, json),
        saved: 0,
    }
}

fn with_header(flag: u8, digest: u64, payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.push(flag);
    out.extend_from_slice(&digest.to_be_bytes());
    out.extend_from_slice(payload);
    out.into()
}

/// The digest of some JSON, as stored in its encoding.
pub(crate) fn digest(json: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(json)
}

/// The JSON of a value and its digest, as the cache hands them out.
pub(crate) fn json_and_digest(encoded: &Bytes) -> Result<(Bytes, u64), CodecError> {
    match encoded.first() {
        Some(&PLAIN) if encoded.len() >= HEADER => {
            let digest = u64::from_be_bytes(encoded[1..HEADER].try_into().expect("8 bytes"));
            Ok((encoded.slice(HEADER..), digest))
        }
        Some(&LEGACY_PLAIN) => {
            let json = encoded.slice(1..);
            let digest = digest(&json);
            Ok((json, digest))
        }
        _ => {
            let json = Bytes::from(decode_json(encoded)?.into_owned());
            let digest = stored_digest(encoded).unwrap_or_else(|| digest(&json));
            Ok((json, digest))
        }
    }
}

/// The digest written with a value, if it has one.
fn stored_digest(encoded: &[u8]) -> Option<u64> {
    match encoded.first() {
        Some(&PLAIN | &LZ4) => Some(u64::from_be_bytes(encoded.get(1..HEADER)?.try_into().ok()?)),
        _ => None,
    }
}

/// The JSON of an encoded value, decompressed if it was stored compressed.
pub(crate) fn decode_json(encoded: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, CodecError> {
    let corrupt = |why: String| CodecError::Corrupt(why);
    let lz4 = |compressed: &[u8]| {
        lz4_flex::decompress_size_prepended(compressed)
            .map(std::borrow::Cow::Owned)
            .map_err(|e| corrupt(format!("lz4: {e}")))
    };
    let after_digest = || {
        encoded
            .get(HEADER..)
            .ok_or_else(|| corrupt("truncated value".into()))
    };
    match encoded.first() {
        Some(&PLAIN) => after_digest().map(std::borrow::Cow::Borrowed),
        Some(&LZ4) => lz4(after_digest()?),
        Some(&LEGACY_PLAIN) => Ok(std::borrow::Cow::Borrowed(&encoded[1..])),
        Some(&LEGACY_LZ4) => lz4(&encoded[1..]),
        Some(flag) => Err(corrupt(format!("unknown value flag {flag}"))),
        None => Err(corrupt("empty value".into())),
    }
}

/// The same value stored plain (decompressed, with its digest), for the
/// in-process tiers: a hit then hands out a slice of it. In a buffer of its
/// own: a value read from Redis is a slice of its envelope, whose header
/// would otherwise stay allocated, unseen by the tier's byte bound.
pub(crate) fn plain(encoded: Bytes) -> Bytes {
    if encoded.first() == Some(&PLAIN) {
        return Bytes::copy_from_slice(&encoded);
    }
    match json_and_digest(&encoded) {
        Ok((json, digest)) => with_header(PLAIN, digest, &json),
        Err(_) => encoded,
    }
}

pub(crate) fn decode<T: DeserializeOwned>(encoded: &[u8]) -> Result<T, CodecError> {
    let json = decode_json(encoded)?;
    serde_json::from_slice(&json).map_err(CodecError::Deserialize)
}

/// A new random tag version, as the 16 hex digits stored in Redis.
///
/// Versions are random rather than counters or clocks: a marker that was
/// deleted (invalidated) or evicted and then created again can never come
/// back with a version an old entry recorded, and no clock skew matters.
pub(crate) fn new_version() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Splits an envelope read from Redis into its value, skipping the header.
pub(crate) fn envelope_value(envelope: Bytes) -> Result<Bytes, CodecError> {
    Ok(Envelope::parse(envelope)?.into_value())
}

/// The envelope of a value stored under `tags` at `versions` (in the same
/// order): what `set.lua` writes on a standalone Redis, built here for a
/// cluster, where the tags' markers live in other slots than the entry.
pub(crate) fn envelope<T: AsRef<[u8]>, V: AsRef<[u8]>>(
    tags: &[T],
    versions: &[V],
    value: &[u8],
) -> Vec<u8> {
    let header: usize = tags.iter().map(|t| t.as_ref().len() + 24).sum();
    let mut out = Vec::with_capacity(8 + header + value.len());
    out.push(b'1');
    out.extend_from_slice(tags.len().to_string().as_bytes());
    out.push(b'\n');
    for (tag, version) in tags.iter().zip(versions) {
        let tag = tag.as_ref();
        out.extend_from_slice(tag.len().to_string().as_bytes());
        out.push(b'\n');
        out.extend_from_slice(tag);
        out.extend_from_slice(version.as_ref());
    }
    out.extend_from_slice(value);
    out
}

/// An envelope read from Redis, its header parsed: the tags the entry was
/// written under, with the version each had then, and the value.
pub(crate) struct Envelope {
    data: Bytes,
    /// Start of each tag's name in `data`, and its length; the version (16
    /// bytes) follows the name.
    tags: Vec<(usize, usize)>,
    value_start: usize,
}

impl Envelope {
    pub fn parse(data: Bytes) -> Result<Envelope, CodecError> {
        let corrupt = |why: &str| CodecError::Corrupt(format!("envelope: {why}"));
        let bytes = &data[..];
        if bytes.first() != Some(&b'1') {
            return Err(corrupt("unknown format"));
        }
        let (count, mut pos) = read_decimal(bytes, 1).ok_or_else(|| corrupt("tag count"))?;
        let mut tags = Vec::with_capacity(count.min(64));
        for _ in 0..count {
            let (len, next) = read_decimal(bytes, pos).ok_or_else(|| corrupt("tag length"))?;
            pos = next
                .checked_add(len)
                .and_then(|p| p.checked_add(16))
                .filter(|&p| p <= bytes.len())
                .ok_or_else(|| corrupt("truncated"))?;
            tags.push((next, len));
        }
        if pos >= bytes.len() {
            return Err(corrupt("truncated"));
        }
        Ok(Envelope {
            data,
            tags,
            value_start: pos,
        })
    }

    pub fn tag_count(&self) -> usize {
        self.tags.len()
    }

    pub fn tag(&self, i: usize) -> &[u8] {
        let (start, len) = self.tags[i];
        &self.data[start..start + len]
    }

    pub fn version(&self, i: usize) -> &[u8] {
        let (start, len) = self.tags[i];
        &self.data[start + len..start + len + 16]
    }

    /// Is the entry current, given its tags' markers as read from Redis (in
    /// the order of its tags)? A missing marker (invalidated or evicted) or
    /// another version means it is not.
    pub fn is_current<M: AsRef<[u8]>>(&self, markers: &[Option<M>]) -> bool {
        markers.len() == self.tags.len()
            && markers
                .iter()
                .enumerate()
                .all(|(i, m)| m.as_ref().is_some_and(|m| m.as_ref() == self.version(i)))
    }

    /// Was the entry written under exactly these tags, in this order?
    pub fn tags_are(&self, tags: &[String]) -> bool {
        self.tag_count() == tags.len()
            && tags
                .iter()
                .enumerate()
                .all(|(i, tag)| self.tag(i) == tag.as_bytes())
    }

    /// The header (tags and versions), without the value: what an entry
    /// must still begin with to be the one that was read.
    pub fn header(&self) -> &[u8] {
        &self.data[..self.value_start]
    }

    /// The value (flag byte and data), without copying.
    pub fn into_value(self) -> Bytes {
        let mut data = self.data;
        bytes::Buf::advance(&mut data, self.value_start);
        data
    }
}

/// Parses `<digits>\n` at `pos`; returns the number and the position after the newline.
fn read_decimal(data: &[u8], pos: usize) -> Option<(usize, usize)> {
    let rest = data.get(pos..)?;
    let end = rest.iter().position(|&b| b == b'\n')?;
    let n = std::str::from_utf8(&rest[..end]).ok()?.parse().ok()?;
    Some((n, pos + end + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values_stay_plain_and_large_ones_shrink() {
        let small = encode(&"hi", 1024).unwrap();
        assert_eq!(small.bytes[0], PLAIN);
        assert_eq!(small.saved, 0);

        let big = "a".repeat(10_000);
        let encoded = encode(&big, 1024).unwrap();
        assert_eq!(encoded.bytes[0], LZ4);
        assert!(encoded.saved > 9_000);
        assert_eq!(decode::<String>(&encoded.bytes).unwrap(), big);
    }

    #[test]
    fn plain_undoes_compression() {
        let big = "a".repeat(10_000);
        let encoded = encode(&big, 1024).unwrap().bytes;
        let plain = plain(encoded);
        assert_eq!(plain[0], PLAIN);
        assert_eq!(decode::<String>(&plain).unwrap(), big);
    }

    #[test]
    fn the_digest_is_the_json_hash_in_every_form() {
        let big = "a".repeat(10_000);
        let json = serde_json::to_vec(&big).unwrap();
        let expected = (Bytes::from(json.clone()), digest(&json));
        let compressed = encode(&big, 1024).unwrap().bytes;
        let stored_plain = encode(&big, usize::MAX).unwrap().bytes;
        let mut legacy_plain = vec![LEGACY_PLAIN];
        legacy_plain.extend_from_slice(&json);
        let mut legacy_lz4 = vec![LEGACY_LZ4];
        legacy_lz4.extend_from_slice(&lz4_flex::compress_prepend_size(&json));
        for encoded in [
            compressed.clone(),
            stored_plain,
            plain(compressed),
            Bytes::from(legacy_plain),
            Bytes::from(legacy_lz4.clone()),
            plain(Bytes::from(legacy_lz4)),
        ] {
            assert_eq!(
                json_and_digest(&encoded).unwrap(),
                expected,
                "{:?}",
                encoded[0]
            );
            assert_eq!(decode::<String>(&encoded).unwrap(), big);
        }
        assert!(json_and_digest(&Bytes::from_static(b"J1234")).is_err());
    }

    #[test]
    fn incompressible_values_are_stored_plain() {
        let noise: Vec<u64> = (0..500).map(|_| rand::random()).collect();
        let encoded = encode(&noise, 16).unwrap();
        assert_eq!(decode::<Vec<u64>>(&encoded.bytes).unwrap(), noise);
    }

    #[test]
    fn envelope_header_is_skipped() {
        let value = encode(&vec![1, 2, 3], 1024).unwrap().bytes;
        let mut env = b"12\n5\nguild0123456789abcdef3\nabcfedcba9876543210".to_vec();
        env.extend_from_slice(&value);
        let got = envelope_value(Bytes::from(env)).unwrap();
        assert_eq!(decode::<Vec<i32>>(&got).unwrap(), vec![1, 2, 3]);
    }

    #[test]
    fn envelope_tags_and_versions_are_read() {
        let mut env = b"12\n5\nguild0123456789abcdef3\nabcfedcba9876543210".to_vec();
        env.extend_from_slice(b"j[]"); // a value without a digest: still read
        let env = Envelope::parse(Bytes::from(env)).unwrap();
        assert_eq!(env.tag_count(), 2);
        assert_eq!(
            (env.tag(0), env.version(0)),
            (&b"guild"[..], &b"0123456789abcdef"[..])
        );
        assert_eq!(
            (env.tag(1), env.version(1)),
            (&b"abc"[..], &b"fedcba9876543210"[..])
        );
        let current = [
            Some(&b"0123456789abcdef"[..]),
            Some(&b"fedcba9876543210"[..]),
        ];
        assert!(env.is_current(&current));
        assert!(!env.is_current(&[current[0], None]));
        assert!(!env.is_current(&[current[0], Some(&b"fedcba9876543211"[..])]));
        assert!(!env.is_current(&current[..1]));
        assert_eq!(&env.into_value()[..], b"j[]");
    }

    #[test]
    fn a_built_envelope_is_the_one_set_lua_writes() {
        let built = envelope(
            &["guild", "abc"],
            &["0123456789abcdef", "fedcba9876543210"],
            b"j[]",
        );
        assert_eq!(
            built,
            b"12\n5\nguild0123456789abcdef3\nabcfedcba9876543210j[]".to_vec()
        );
        let parsed = Envelope::parse(Bytes::from(built)).unwrap();
        assert_eq!(parsed.header().len(), 47);
        assert!(parsed.header().ends_with(b"fedcba9876543210"));
        assert_eq!(&parsed.into_value()[..], b"j[]");
    }

    #[test]
    fn corrupt_envelopes_are_errors_not_panics() {
        for bad in [&b""[..], b"2", b"1x\n", b"1\n", b"13\n", b"11\n99\nab"] {
            assert!(
                envelope_value(Bytes::copy_from_slice(bad)).is_err(),
                "{bad:?}"
            );
        }
        assert!(decode::<i32>(b"").is_err());
        assert!(decode::<i32>(b"q12").is_err());
        assert!(decode::<i32>(b"z\x01").is_err());
        assert!(decode::<i32>(b"J1234").is_err());
        assert!(decode::<i32>(b"Z12345678\x01").is_err());
    }
}
