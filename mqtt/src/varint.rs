//! Variable byte integers (MQTT section 1.5.5): the remaining length, property lengths and
//! subscription identifiers. One to four bytes, seven bits each, least significant first.

use bytes::BufMut;

/// The largest value a variable byte integer holds: 268,435,455.
pub const MAX: u32 = 268_435_455;

/// Outcome of reading a variable byte integer from the front of a slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarInt {
    /// The value and how many bytes it took.
    Value(u32, usize),
    /// The slice ends before the last byte of the integer.
    Incomplete,
    /// A fifth byte would be needed ([MQTT-1.5.5-1]).
    Malformed,
}

/// Reads a variable byte integer from the front of `bytes` without consuming anything.
#[must_use]
#[inline]
pub fn read(bytes: &[u8]) -> VarInt {
    let mut value: u32 = 0;
    for (i, &b) in bytes.iter().take(4).enumerate() {
        value |= u32::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return VarInt::Value(value, i + 1);
        }
    }
    if bytes.len() >= 4 {
        VarInt::Malformed
    } else {
        VarInt::Incomplete
    }
}

/// How many bytes `value` takes as a variable byte integer (1 to 4; values above [`MAX`] are
/// reported as 4 and refused by [`write()`]).
#[must_use]
#[inline]
pub const fn len(value: usize) -> usize {
    if value < 128 {
        1
    } else if value < 16_384 {
        2
    } else if value < 2_097_152 {
        3
    } else {
        4
    }
}

/// Writes `value` as a variable byte integer. The caller checks `value <= MAX`; larger values
/// are truncated to their low 28 bits.
#[inline]
pub fn write(out: &mut impl BufMut, value: u32) {
    let mut v = value & MAX;
    loop {
        let mut byte = (v & 0x7F) as u8;
        v >>= 7;
        if v > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if v == 0 {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_boundaries() {
        // Table 1.1 of the 5.0 specification.
        let cases: &[(u32, &[u8])] = &[
            (0, &[0x00]),
            (127, &[0x7F]),
            (128, &[0x80, 0x01]),
            (16_383, &[0xFF, 0x7F]),
            (16_384, &[0x80, 0x80, 0x01]),
            (2_097_151, &[0xFF, 0xFF, 0x7F]),
            (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
            (MAX, &[0xFF, 0xFF, 0xFF, 0x7F]),
        ];
        for &(value, bytes) in cases {
            let mut out = Vec::new();
            write(&mut out, value);
            assert_eq!(out, bytes, "{value}");
            assert_eq!(len(value as usize), bytes.len());
            assert_eq!(read(bytes), VarInt::Value(value, bytes.len()));
            assert_eq!(read(&bytes[..bytes.len() - 1]), VarInt::Incomplete);
        }
        assert_eq!(read(&[0xFF, 0xFF, 0xFF, 0xFF, 0x01]), VarInt::Malformed);
        assert_eq!(read(&[]), VarInt::Incomplete);
    }
}
