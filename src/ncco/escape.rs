//! Escaping request values into the body of a JSON string.
//!
//! Static NCCO text is escaped exactly as serde_json does (quotes, backslash,
//! control characters), so a template without placeholders renders the same
//! bytes as `serde_json::to_vec`. Request values additionally get `<`, `>`,
//! `&`, U+2028 and U+2029 as `\uXXXX`: equal JSON, but safe if an NCCO is
//! ever shown inside HTML or a JavaScript literal (`</script>`).

use bytes::BytesMut;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Which characters to escape beyond what JSON requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Escape {
    /// Only what JSON requires (serde_json's choice).
    Json,
    /// Also `<`, `>`, `&`, U+2028, U+2029 (request values).
    HtmlSafe,
}

/// [`CLASS`] bit: escaped in every mode (`"`, `\\`, control characters).
const SPECIAL: u8 = 1;
/// [`CLASS`] bit: escaped in [`Escape::HtmlSafe`] only (`<`, `>`, `&`, and 0xE2, the
/// first byte of U+2028 / U+2029).
const HTML: u8 = 2;
/// Per byte, which [`Escape`] modes may escape it.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = SPECIAL;
        b += 1;
    }
    t[b'"' as usize] = SPECIAL;
    t[b'\\' as usize] = SPECIAL;
    t[b'<' as usize] = HTML;
    t[b'>' as usize] = HTML;
    t[b'&' as usize] = HTML;
    t[0xe2] = HTML;
    t
};

/// Appends `s`, escaped for the inside of a JSON string (no quotes added).
pub(crate) fn json_into(out: &mut BytesMut, s: &str, mode: Escape) {
    let bytes = s.as_bytes();
    let strict = mode == Escape::HtmlSafe;
    // Bytes that may need escaping in this mode; a table lookup per byte skips the rest
    // (request values are mostly digits, ids and names) without the match below.
    let special = if strict { SPECIAL | HTML } else { SPECIAL };
    let mut run = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if CLASS[usize::from(b)] & special == 0 {
            i += 1;
            continue;
        }
        let mut width = 1;
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            b'<' | b'>' | b'&' if strict => b"",
            // U+2028 / U+2029 are E2 80 A8 / E2 80 A9 in UTF-8.
            0xe2 if strict && matches!(bytes.get(i + 1..i + 3), Some([0x80, 0xa8 | 0xa9])) => {
                width = 3;
                b""
            }
            _ => {
                i += 1;
                continue;
            }
        };
        out.extend_from_slice(&bytes[run..i]);
        if short.is_empty() {
            let code = if width == 3 {
                0x2000 | u16::from(bytes[i + 2] & 0x3f)
            } else {
                u16::from(b)
            };
            out.extend_from_slice(&[
                b'\\',
                b'u',
                HEX[usize::from(code >> 12)],
                HEX[usize::from((code >> 8) & 0xf)],
                HEX[usize::from((code >> 4) & 0xf)],
                HEX[usize::from(code & 0xf)],
            ]);
        } else {
            out.extend_from_slice(short);
        }
        i += width;
        run = i;
    }
    out.extend_from_slice(&bytes[run..]);
}

/// Appends `s` XML-escaped and then JSON-escaped, for values placed inside
/// SSML, so a caller-supplied name like `AT&T` or `<break/>` stays text.
pub(crate) fn ssml_json_into(out: &mut BytesMut, s: &str) {
    let mut run = 0;
    for (i, c) in s.char_indices() {
        let entity: &[u8] = match c {
            '&' => b"&amp;",
            '<' => b"&lt;",
            '>' => b"&gt;",
            '"' => b"&quot;",
            '\'' => b"&apos;",
            _ => continue,
        };
        json_into(out, &s[run..i], Escape::HtmlSafe);
        out.extend_from_slice(entity);
        run = i + 1;
    }
    json_into(out, &s[run..], Escape::HtmlSafe);
}

/// Characters `s` occupies once `ssml_json_into` has replaced XML specials by entities.
pub(crate) fn ssml_escaped_chars(s: &str) -> usize {
    s.chars()
        .map(|c| match c {
            '&' => 5,
            '<' | '>' => 4,
            '"' | '\'' => 6,
            _ => 1,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn quoted(s: &str, mode: Escape) -> String {
        let mut out = BytesMut::new();
        out.extend_from_slice(b"\"");
        json_into(&mut out, s, mode);
        out.extend_from_slice(b"\"");
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn json_mode_matches_serde_json() {
        for s in [
            "plain",
            "q\"b\\",
            "nl\n\r\t\u{8}\u{c}\u{1}\u{1f}",
            "é😀",
            "</script>",
            "\u{2028}",
        ] {
            assert_eq!(
                quoted(s, Escape::Json),
                serde_json::to_string(s).unwrap(),
                "{s:?}"
            );
        }
    }

    #[test]
    fn html_safe_mode_hides_markup() {
        let out = quoted("</script>&\u{2028}\u{2029}", Escape::HtmlSafe);
        assert_eq!(out, r#""\u003c/script\u003e\u0026\u2028\u2029""#);
        assert_eq!(
            serde_json::from_str::<String>(&out).unwrap(),
            "</script>&\u{2028}\u{2029}"
        );
    }

    #[test]
    fn ssml_values_become_text() {
        let mut out = BytesMut::new();
        ssml_json_into(&mut out, "AT&T <break/> \"x\" 'y'");
        let s: String =
            serde_json::from_str(&format!("\"{}\"", std::str::from_utf8(&out).unwrap())).unwrap();
        assert_eq!(s, "AT&amp;T &lt;break/&gt; &quot;x&quot; &apos;y&apos;");
    }

    proptest! {
        #[test]
        fn any_string_round_trips(s in any::<String>()) {
            for mode in [Escape::Json, Escape::HtmlSafe] {
                let out = quoted(&s, mode);
                let back: String = serde_json::from_str(&out).unwrap();
                prop_assert_eq!(&back, &s);
                if mode == Escape::HtmlSafe {
                    prop_assert!(!out.contains('<') && !out.contains('>') && !out.contains('&'));
                }
            }
        }
    }
}
