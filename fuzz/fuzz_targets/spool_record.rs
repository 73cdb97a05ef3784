//! Spool record codec: `spool::record::decode` and `NewRecord::encode`.
//!
//! Input: the first byte picks a mode.
//! - `0x00..=0x7f` raw: the rest is decoded as it is.
//! - `0x80..=0xff` structured: an `Unstructured` builds a record, encodes it, then damages
//!   the bytes (up to three bit flips, a truncation, trailing garbage).
//!
//! Invariants: never panics; on `Ok((rec, n))`, `n` is at most the input length and equals
//! `rec.encoded_len()`, re-encoding the decoded fields gives exactly the `n` bytes consumed
//! (one record has one encoding), and decoding just those `n` bytes gives the same record;
//! any shorter prefix is an error. For damaged records: decode is an error, or the record
//! is identical to the original (CRC32C catches every error of three bits or fewer), and
//! bytes after a record never change it.
#![no_main]

use bytes::Bytes;
use callhook::spool::record::{self, DecodeError, HEADER_LEN, NewRecord, Seq, StoredRecord};
use libfuzzer_sys::arbitrary::{Result as UResult, Unstructured};
use libfuzzer_sys::fuzz_target;

fn to_new(r: &StoredRecord) -> NewRecord {
    NewRecord {
        kind: r.kind,
        is_query: r.is_query,
        received_us: r.received_us,
        key: Bytes::copy_from_slice(r.key()),
        app: Bytes::copy_from_slice(r.app()),
        etype: Bytes::copy_from_slice(r.etype()),
        meta: Bytes::copy_from_slice(r.meta()),
        body: Bytes::copy_from_slice(r.body()),
    }
}

fn raw(data: &[u8]) {
    let buf = Bytes::copy_from_slice(data);
    let Ok((rec, n)) = record::decode(&buf) else {
        return;
    };
    assert!(
        n <= data.len() && n >= HEADER_LEN,
        "consumed {n} of {}",
        data.len()
    );
    assert_eq!(
        rec.encoded_len(),
        n,
        "encoded_len disagrees with consumed length"
    );
    let again = to_new(&rec).encode(rec.seq);
    if !callhook_fuzz::known_open("record-flags") {
        assert_eq!(
            again,
            &data[..n],
            "re-encoding a decoded record gives different bytes (flags byte {:#04x})",
            data[25]
        );
    }
    let (rec2, n2) = record::decode(&Bytes::copy_from_slice(&data[..n])).expect("exact prefix");
    assert_eq!((rec2, n2), (rec, n));
    for cut in [0, 1, 7, 8, HEADER_LEN - 1, HEADER_LEN, n - 1] {
        if cut < n {
            assert!(
                record::decode(&Bytes::copy_from_slice(&data[..cut])).is_err(),
                "a {cut}-byte prefix of a {n}-byte record decoded"
            );
        }
    }
}

fn bytes(u: &mut Unstructured<'_>, max: usize) -> UResult<Bytes> {
    let n = u.int_in_range(0..=max)?;
    Ok(Bytes::copy_from_slice(u.bytes(n.min(u.len()))?))
}

fn structured(u: &mut Unstructured<'_>) -> UResult<()> {
    let rec = NewRecord {
        kind: u.arbitrary()?,
        is_query: u.arbitrary()?,
        received_us: u.arbitrary()?,
        key: bytes(u, 64)?,
        app: bytes(u, 64)?,
        etype: bytes(u, 32)?,
        meta: bytes(u, 256)?,
        body: bytes(u, 2048)?,
    };
    let seq = Seq(u.arbitrary()?);
    rec.check_limits().expect("small record fits");
    let good = rec.encode(seq);
    assert_eq!(good.len(), rec.encoded_len());
    let (back, n) = record::decode(&Bytes::from(good.clone())).expect("fresh record decodes");
    assert_eq!(n, good.len());
    let same = |r: &StoredRecord| {
        r.seq == seq
            && r.kind == rec.kind
            && r.is_query == rec.is_query
            && r.received_us == rec.received_us
            && r.key() == &rec.key[..]
            && r.app() == &rec.app[..]
            && r.etype() == &rec.etype[..]
            && r.meta() == &rec.meta[..]
            && r.body() == &rec.body[..]
    };
    assert!(same(&back), "round trip changed the record");

    let mut bad = good.clone();
    if u.ratio(1u8, 4)? {
        // Trailing bytes (the next record, garbage) never change this record.
        let tail = u.bytes(u.len().min(64))?;
        bad.extend_from_slice(tail);
        let (r, n) = record::decode(&Bytes::from(bad)).expect("record followed by bytes");
        assert!(
            same(&r) && n == good.len(),
            "trailing bytes changed the record"
        );
        return Ok(());
    }
    for _ in 0..u.int_in_range(0u8..=3)? {
        let bit = u.choose_index(bad.len() * 8)?;
        bad[bit / 8] ^= 1 << (bit % 8);
    }
    let truncated = u.ratio(1u8, 4)?;
    if truncated {
        let cut = u.choose_index(bad.len())?;
        bad.truncate(cut);
    }
    match record::decode(&Bytes::from(bad.clone())) {
        Ok((r, n)) => {
            assert!(!truncated, "a truncated record decoded");
            assert!(
                same(&r),
                "damaged record decoded to a different record: {r:?}"
            );
            assert_eq!(n, good.len());
        }
        Err(DecodeError::Incomplete { need, have }) => {
            assert!(need > have, "Incomplete with need {need} <= have {have}");
            assert_eq!(have, bad.len());
        }
        Err(DecodeError::Corrupt(_)) => {}
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode < 0x80 {
        raw(rest);
    } else {
        let _ = structured(&mut Unstructured::new(rest));
    }
});
