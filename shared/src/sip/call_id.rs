//! Call-ID: the dialog identifier, `word ["@" word]`.
//!
//! ```text
//! RFC 3261 §25.1 callid = word [ "@" word ]
//!                word   = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`"
//!                         / "'" / "~" / "(" / ")" / "<" / ">" / ":" / "\" / DQUOTE
//!                         / "/" / "[" / "]" / "?" / "{" / "}" )
//! ```

use super::error::ParseError;
use super::scan;

/// Check and return a trimmed Call-ID value.
pub fn parse_call_id(s: &str) -> Result<&str, ParseError> {
    let s = scan::trim(s);
    let ok = !s.is_empty() && is_call_id_text(s.as_bytes());
    if ok {
        Ok(s)
    } else {
        Err(ParseError::BadHeader("Call-ID"))
    }
}

/// Every byte visible (`!`..=`~`) and at most one `@`, eight bytes a step:
/// SWAR range tests and an exact zero-byte mask of `word ^ "@@@…"` (a byte
/// loop cost ~6 instructions a byte on every request's Call-ID).
fn is_call_id_text(b: &[u8]) -> bool {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    const LOW7: u64 = u64::from_le_bytes([0x7f; 8]);
    const BANG: u64 = u64::from_le_bytes([b'!'; 8]);
    const ATS: u64 = u64::from_le_bytes([b'@'; 8]);
    let mut chunks = b.chunks_exact(8);
    let mut bad = 0u64;
    let mut ats = 0u32;
    for chunk in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let x = u64::from_le_bytes(w);
        // Some byte below '!' (a borrow only follows a byte already flagged),
        // or at or above DEL (its own high bit, or the +1 carried into it).
        bad |= x.wrapping_sub(BANG) & !x & HIGHS;
        bad |= (x.wrapping_add(ONES) | x) & HIGHS;
        let y = x ^ ATS;
        let at = !(((y & LOW7).wrapping_add(LOW7)) | y | LOW7);
        ats += u32::from(at != 0) + u32::from(at & at.wrapping_sub(1) != 0);
    }
    for &c in chunks.remainder() {
        bad |= u64::from(!c.is_ascii_graphic());
        ats += u32::from(c == b'@');
    }
    bad == 0 && ats <= 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_check_agrees_with_bytes() {
        let reference = |b: &[u8]| {
            b.iter().all(u8::is_ascii_graphic) && b.iter().filter(|&&c| c == b'@').count() <= 1
        };
        let base = b"3848276298220188511@atlanta.example.com";
        let mut inputs: Vec<Vec<u8>> = vec![base.to_vec(), Vec::new()];
        for i in 0..base.len() {
            for c in [
                b' ', b'!', b'~', 0x7f, 0x80, 0xff, 0x00, b'@', 0x20, 0x21, b'\t',
            ] {
                let mut v = base.to_vec();
                v[i] = c;
                inputs.push(v.clone());
                v.truncate(i + 1);
                inputs.push(v);
            }
        }
        for n in 0..20 {
            inputs.push(vec![b'@'; n]);
            inputs.push(vec![0x7e; n]);
            inputs.push(vec![0x21; n]);
        }
        for b in &inputs {
            assert_eq!(is_call_id_text(b), reference(b), "{b:?}");
        }
    }

    #[test]
    fn parse_table() {
        let table: &[(&str, bool)] = &[
            ("a84b4c76e66710@pc33.example.com", true),
            ("wsinv.ndaksdj@192.0.2.1", true),
            ("abc", true),
            ("", false),
            ("a b", false),
            ("a@b@c", false),
        ];
        for (i, ok) in table {
            assert_eq!(parse_call_id(i).is_ok(), *ok, "{i}");
        }
    }
}
