//! `Limits`: the bounds a received message must respect, so that no input can
//! make memory grow without bound (sizes are checked while bytes arrive).

/// Size bounds applied by the datagram parser and the stream framer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest whole message (start line, headers and body), in octets.
    pub max_message: usize,
    /// Most header lines (not counting continuation lines).
    pub max_headers: usize,
    /// Longest single line (start line or header line, without CRLF).
    pub max_line: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message: 64 * 1024,
            max_headers: 128,
            max_line: 8 * 1024,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let l = Limits::default();
        assert_eq!(l.max_message, 65536);
        assert!(l.max_headers >= 32 && l.max_line >= 1024);
    }
}
