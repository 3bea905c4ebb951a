//! Field-level readers and writers shared by the packet modules: integers, UTF-8 strings,
//! binary data and variable byte integers. Reading slices the input [`Bytes`] (no copies).

use bytes::{Buf, BufMut, Bytes};
use bytestring::ByteString;

use crate::error::{DecodeError, EncodeError};
use crate::types::PacketId;
use crate::varint;

/// A cursor over the body of one packet. Every read checks the length first, so a short body is
/// an [`DecodeError::UnexpectedEnd`], never a panic.
#[derive(Debug)]
pub(crate) struct Reader {
    buf: Bytes,
}

impl Reader {
    pub(crate) const fn new(buf: Bytes) -> Self {
        Self { buf }
    }

    #[inline]
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Everything not yet read (the PUBLISH payload).
    #[inline]
    pub(crate) fn rest(self) -> Bytes {
        self.buf
    }

    #[inline]
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        if self.buf.is_empty() {
            return Err(DecodeError::UnexpectedEnd);
        }
        Ok(self.buf.get_u8())
    }

    #[inline]
    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        if self.buf.len() < 2 {
            return Err(DecodeError::UnexpectedEnd);
        }
        Ok(self.buf.get_u16())
    }

    #[inline]
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        if self.buf.len() < 4 {
            return Err(DecodeError::UnexpectedEnd);
        }
        Ok(self.buf.get_u32())
    }

    #[inline]
    pub(crate) fn pid(&mut self) -> Result<PacketId, DecodeError> {
        PacketId::new(self.u16()?).ok_or(DecodeError::ZeroPacketId)
    }

    #[inline]
    pub(crate) fn varint(&mut self) -> Result<u32, DecodeError> {
        match varint::read(&self.buf) {
            varint::VarInt::Value(v, n) => {
                self.buf.advance(n);
                Ok(v)
            }
            varint::VarInt::Incomplete => Err(DecodeError::UnexpectedEnd),
            varint::VarInt::Malformed => Err(DecodeError::MalformedVarInt),
        }
    }

    /// Splits off the next `n` bytes (zero-copy).
    #[inline]
    pub(crate) fn take(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::UnexpectedEnd);
        }
        Ok(self.buf.split_to(n))
    }

    /// Binary data: a two-byte length then the bytes.
    #[inline]
    pub(crate) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }

    /// A UTF-8 encoded string ([MQTT-1.5.4-1], [MQTT-1.5.4-2]).
    #[inline]
    pub(crate) fn string(&mut self) -> Result<ByteString, DecodeError> {
        let bytes = self.binary()?;
        if bytes.contains(&0) {
            return Err(DecodeError::NullCharacter);
        }
        ByteString::try_from(bytes).map_err(|_| DecodeError::InvalidUtf8)
    }
}

/// Encoded size of a string or binary field.
#[inline]
pub(crate) const fn field_len(len: usize) -> usize {
    2 + len
}

/// Writes a UTF-8 string with its two-byte length.
#[inline]
pub(crate) fn put_string(out: &mut impl BufMut, s: &str) -> Result<(), EncodeError> {
    let len = u16::try_from(s.len()).map_err(|_| EncodeError::StringTooLong(s.len()))?;
    out.put_u16(len);
    out.put_slice(s.as_bytes());
    Ok(())
}

/// Writes binary data with its two-byte length.
#[inline]
pub(crate) fn put_binary(out: &mut impl BufMut, b: &[u8]) -> Result<(), EncodeError> {
    let len = u16::try_from(b.len()).map_err(|_| EncodeError::BinaryTooLong(b.len()))?;
    out.put_u16(len);
    out.put_slice(b);
    Ok(())
}

/// Writes a variable byte integer, refusing values above [`varint::MAX`].
#[inline]
pub(crate) fn put_varint(out: &mut impl BufMut, v: usize) -> Result<(), EncodeError> {
    let v32 = u32::try_from(v).unwrap_or(u32::MAX);
    if v32 > varint::MAX {
        return Err(EncodeError::VarIntTooLarge(v32));
    }
    varint::write(out, v32);
    Ok(())
}
