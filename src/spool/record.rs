//! On-disk record format: a fixed header, four variable fields, CRC32C over all of it.
//!
//! ```text
//! offset size field
//!      0    4 len          bytes after this 8-byte prefix (header rest + fields), LE
//!      4    4 crc          CRC32C (Castagnoli) of those `len` bytes, LE
//!      8    8 seq          spool sequence number, LE
//!     16    8 received_us  receive time, microseconds since the Unix epoch, LE
//!     24    1 kind         opaque tag chosen by the caller (the spool knows no Vonage kinds)
//!     25    1 flags        bit 0: the payload came as a query string (GET webhook)
//!     26    2 key_len      partition key
//!     28    2 app_len      application id (empty when unknown)
//!     30    2 etype_len    event type label (e.g. "completed"), for headers downstream
//!     32    4 meta_len     request metadata: the raw query string of a GET webhook
//!     36    4 body_len     raw body as received
//!     40    …              key, app, etype, meta, body
//! ```
//! A record is valid only if `len` matches the field lengths and the CRC matches, so a torn
//! tail (partial write, zero fill, garbage) is always detected rather than misread.

use bytes::Bytes;

/// Bytes before the variable fields.
pub const HEADER_LEN: usize = 40;
/// Bytes covered by neither `len` nor the CRC.
pub const PREFIX_LEN: usize = 8;
/// Upper bound on one record; anything larger in a `len` field is corruption.
pub const MAX_RECORD_LEN: usize = 64 * 1024 * 1024;

/// Sequence number of a spooled record: dense, starting at 0, never reused once durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seq(pub u64);

impl std::fmt::Display for Seq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// What a caller hands to the spool. The body is referenced, not copied, until the
/// writer's vectored write hands it to the kernel.
#[derive(Debug, Clone)]
pub struct NewRecord {
    pub kind: u8,
    pub is_query: bool,
    pub received_us: i64,
    pub key: Bytes,
    pub app: Bytes,
    pub etype: Bytes,
    pub meta: Bytes,
    pub body: Bytes,
}

impl NewRecord {
    /// Total on-disk size of this record.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.fields_len()
    }

    fn fields_len(&self) -> usize {
        self.key.len() + self.app.len() + self.etype.len() + self.meta.len() + self.body.len()
    }

    /// Field lengths must fit their header slots.
    pub fn check_limits(&self) -> Result<(), &'static str> {
        if self.key.len() > u16::MAX as usize {
            return Err("key too long");
        }
        if self.app.len() > u16::MAX as usize || self.etype.len() > u16::MAX as usize {
            return Err("application id or event type too long");
        }
        if self.encoded_len() > MAX_RECORD_LEN {
            return Err("record too large");
        }
        Ok(())
    }

    /// Writes the 40-byte header (with CRC over header and all fields) into `out`, followed
    /// by key, app, etype and meta. The body is left to the caller so it can be written
    /// from its own buffer.
    pub fn encode_head(&self, seq: Seq, out: &mut Vec<u8>) {
        let start = out.len();
        let len = (HEADER_LEN - PREFIX_LEN + self.fields_len()) as u32;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&[0; 4]); // crc, filled below
        out.extend_from_slice(&seq.0.to_le_bytes());
        out.extend_from_slice(&self.received_us.to_le_bytes());
        out.push(self.kind);
        out.push(u8::from(self.is_query));
        out.extend_from_slice(&(self.key.len() as u16).to_le_bytes());
        out.extend_from_slice(&(self.app.len() as u16).to_le_bytes());
        out.extend_from_slice(&(self.etype.len() as u16).to_le_bytes());
        out.extend_from_slice(&(self.meta.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.body.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.key);
        out.extend_from_slice(&self.app);
        out.extend_from_slice(&self.etype);
        out.extend_from_slice(&self.meta);
        let crc = crc32c::crc32c_append(crc32c::crc32c(&out[start + PREFIX_LEN..]), &self.body);
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    /// The whole record as one buffer (tests, tools; the writer avoids this copy).
    pub fn encode(&self, seq: Seq) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_head(seq, &mut out);
        out.extend_from_slice(&self.body);
        out
    }
}

/// A record read back from disk: the fixed fields, and the variable ones (key, app, etype,
/// meta, body) in one buffer, so reading a record costs one allocation and one copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub seq: Seq,
    pub received_us: i64,
    pub kind: u8,
    pub is_query: bool,
    /// key | app | etype | meta | body.
    fields: Bytes,
    /// Where key, app, etype and meta end in `fields`.
    ends: [u32; 4],
}

impl StoredRecord {
    /// The record `rec` would read back as under `seq` (tests and tools; the spool reader
    /// decodes from disk).
    pub fn new(seq: Seq, rec: &NewRecord) -> Self {
        let mut fields = Vec::with_capacity(rec.fields_len());
        let mut ends = [0u32; 4];
        for (end, f) in ends
            .iter_mut()
            .zip([&rec.key, &rec.app, &rec.etype, &rec.meta])
        {
            fields.extend_from_slice(f);
            *end = fields.len() as u32;
        }
        fields.extend_from_slice(&rec.body);
        Self {
            seq,
            received_us: rec.received_us,
            kind: rec.kind,
            is_query: rec.is_query,
            fields: Bytes::from(fields),
            ends,
        }
    }

    fn field(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        let end = self.ends.get(i).map_or(self.fields.len(), |&e| e as usize);
        &self.fields[start..end]
    }

    /// Partition key.
    pub fn key(&self) -> &[u8] {
        self.field(0)
    }

    /// Application id (empty when unknown).
    pub fn app(&self) -> &[u8] {
        self.field(1)
    }

    /// Event type label (e.g. `completed`).
    pub fn etype(&self) -> &[u8] {
        self.field(2)
    }

    /// Request metadata: the raw query string of a GET webhook.
    pub fn meta(&self) -> &[u8] {
        self.field(3)
    }

    /// The raw body as received.
    pub fn body(&self) -> &[u8] {
        self.field(4)
    }

    /// Size of the record on disk.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.fields.len()
    }
}

/// Why bytes at a position are not a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the record claims: a torn write, or a record still being written.
    #[error("incomplete record: need {need} bytes, have {have}")]
    Incomplete { need: usize, have: usize },
    /// The bytes are present but wrong: bad length fields or checksum.
    #[error("corrupt record: {0}")]
    Corrupt(&'static str),
}

/// The end marker the writer writes (see [`is_end_marker`]).
pub const END_MARKER: [u8; PREFIX_LEN] = [0; PREFIX_LEN];

/// Whether `prefix` is an end marker: a zero length, never a record's. The writer puts one
/// after each batch in a segment with old bytes past its end (a recycled file), so the
/// data visibly ends there; recovery and readers stop at it.
pub fn is_end_marker(prefix: &[u8; PREFIX_LEN]) -> bool {
    prefix[..4] == [0; 4]
}

/// Reads the total record length from an 8-byte prefix, rejecting impossible values.
pub fn total_len(prefix: &[u8; PREFIX_LEN]) -> Result<usize, DecodeError> {
    let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
    if len < HEADER_LEN - PREFIX_LEN {
        return Err(DecodeError::Corrupt("length below header size"));
    }
    if len + PREFIX_LEN > MAX_RECORD_LEN {
        return Err(DecodeError::Corrupt("length above maximum record size"));
    }
    Ok(len + PREFIX_LEN)
}

fn le16(b: &[u8], at: usize) -> usize {
    u16::from_le_bytes([b[at], b[at + 1]]) as usize
}
fn le32(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize
}
fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Decodes one record from the start of `buf` (which may hold more after it).
/// Returns the record and its encoded length. Never panics on any input.
pub fn decode(buf: &[u8]) -> Result<(StoredRecord, usize), DecodeError> {
    if buf.len() < PREFIX_LEN {
        return Err(DecodeError::Incomplete {
            need: PREFIX_LEN,
            have: buf.len(),
        });
    }
    let mut prefix = [0u8; PREFIX_LEN];
    prefix.copy_from_slice(&buf[..PREFIX_LEN]);
    let total = total_len(&prefix)?;
    if buf.len() < total {
        return Err(DecodeError::Incomplete {
            need: total,
            have: buf.len(),
        });
    }
    let b = &buf[..total];
    // The cheap check first: recovery tries this at every offset of a cut tail.
    let (key_len, app_len, etype_len) = (le16(b, 26), le16(b, 28), le16(b, 30));
    let (meta_len, body_len) = (le32(b, 32), le32(b, 36));
    if HEADER_LEN + key_len + app_len + etype_len + meta_len + body_len != total {
        return Err(DecodeError::Corrupt(
            "field lengths disagree with record length",
        ));
    }
    let crc = le32(b, 4) as u32;
    if crc32c::crc32c(&b[PREFIX_LEN..]) != crc {
        return Err(DecodeError::Corrupt("checksum mismatch"));
    }
    if b[25] & !1 != 0 {
        return Err(DecodeError::Corrupt("unknown flag bits"));
    }
    // Lengths fit u32: the record is at most MAX_RECORD_LEN.
    let key_end = key_len as u32;
    let app_end = key_end + app_len as u32;
    let etype_end = app_end + etype_len as u32;
    let meta_end = etype_end + meta_len as u32;
    Ok((
        StoredRecord {
            seq: Seq(le64(b, 8)),
            received_us: le64(b, 16) as i64,
            kind: b[24],
            is_query: b[25] & 1 == 1,
            fields: Bytes::copy_from_slice(&b[HEADER_LEN..]),
            ends: [key_end, app_end, etype_end, meta_end],
        },
        total,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(body: &[u8]) -> NewRecord {
        NewRecord {
            kind: 3,
            is_query: false,
            received_us: 1_700_000_000_000_000,
            key: Bytes::from_static(b"CON-1"),
            app: Bytes::from_static(b"app"),
            etype: Bytes::from_static(b"completed"),
            meta: Bytes::new(),
            body: Bytes::copy_from_slice(body),
        }
    }

    #[test]
    fn round_trip() {
        let rec = sample(br#"{"status":"completed"}"#);
        let buf = Bytes::from(rec.encode(Seq(42)));
        let (back, n) = decode(&buf).unwrap();
        assert_eq!(n, buf.len());
        assert_eq!(back.seq, Seq(42));
        assert_eq!(back.body(), rec.body);
        assert_eq!(back.key(), rec.key);
        assert_eq!(back.etype(), rec.etype);
        assert_eq!(back, StoredRecord::new(Seq(42), &rec));
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let rec = sample(br#"{"a":1}"#);
        let good = rec.encode(Seq(1));
        for i in 0..good.len() * 8 {
            let mut bad = good.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(
                decode(&Bytes::from(bad)).is_err(),
                "bit {i} flip undetected"
            );
        }
    }

    #[test]
    fn unknown_flag_bits_are_corruption() {
        let mut b = sample(b"{}").encode(Seq(1));
        b[25] |= 0x02;
        let crc = crc32c::crc32c(&b[PREFIX_LEN..]);
        b[4..8].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            decode(&Bytes::from(b)),
            Err(DecodeError::Corrupt("unknown flag bits"))
        );
    }

    #[test]
    fn every_truncation_is_incomplete_or_corrupt() {
        let good = sample(b"{}").encode(Seq(1));
        for cut in 0..good.len() {
            assert!(decode(&Bytes::copy_from_slice(&good[..cut])).is_err());
        }
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(
            kind in any::<u8>(), q in any::<bool>(), us in any::<i64>(), seq in any::<u64>(),
            key in proptest::collection::vec(any::<u8>(), 0..64),
            app in proptest::collection::vec(any::<u8>(), 0..64),
            etype in proptest::collection::vec(any::<u8>(), 0..32),
            meta in proptest::collection::vec(any::<u8>(), 0..256),
            body in proptest::collection::vec(any::<u8>(), 0..2048),
        ) {
            let rec = NewRecord { kind, is_query: q, received_us: us, key: key.into(), app: app.into(),
                etype: etype.into(), meta: meta.into(), body: body.into() };
            let buf = Bytes::from(rec.encode(Seq(seq)));
            let (back, n) = decode(&buf).unwrap();
            prop_assert_eq!(n, rec.encoded_len());
            prop_assert_eq!(back.seq, Seq(seq));
            prop_assert_eq!(back.received_us, us);
            prop_assert_eq!(back.kind, kind);
            prop_assert_eq!(back.is_query, q);
            prop_assert_eq!(back.key(), &rec.key[..]);
            prop_assert_eq!(back.app(), &rec.app[..]);
            prop_assert_eq!(back.etype(), &rec.etype[..]);
            prop_assert_eq!(back.meta(), &rec.meta[..]);
            prop_assert_eq!(back.body(), &rec.body[..]);
            prop_assert_eq!(&back, &StoredRecord::new(Seq(seq), &rec));
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&Bytes::from(data));
        }
    }
}
