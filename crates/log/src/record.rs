//! TFRecord framing used by event files:
//! `u64 LE length | masked crc32c(length bytes) | data | masked crc32c(data)`.

/// Added after the rotation; the constant TensorFlow uses so that a CRC of
/// data that itself embeds CRCs does not degenerate.
const MASK_DELTA: u32 = 0xa282_ead8;

/// Bytes of framing around each record's payload.
pub const FRAME_OVERHEAD: usize = 8 + 4 + 4;

/// TensorFlow's masked CRC32C (Castagnoli) of `bytes`.
pub fn masked_crc32c(bytes: &[u8]) -> u32 {
    mask(crc32c::crc32c(bytes))
}

/// Rotate right by 15 bits (`(crc >> 15) | (crc << 17)`), add `0xa282ead8`.
pub fn mask(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(MASK_DELTA)
}

/// One complete frame for `data`, built in memory so it can be handed to the
/// OS in a single `write_all` (a crash then truncates at most this record).
pub fn frame(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + FRAME_OVERHEAD);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Bitwise reflected CRC32C (polynomial 0x82F63B78), written
    /// independently of the `crc32c` crate to cross-check it.
    pub(crate) fn crc32c_slow(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0x82F6_3B78
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    /// Error from [`parse_frames`], naming the offending offset.
    #[derive(Debug, PartialEq)]
    pub(crate) enum FrameError {
        Truncated(usize),
        LengthCrc(usize),
        DataCrc(usize),
    }

    /// Test-side reader: split `bytes` into payloads, verifying both CRCs.
    /// Uses the slow CRC so it does not share code with the writer.
    pub(crate) fn parse_frames(bytes: &[u8]) -> Result<Vec<Vec<u8>>, FrameError> {
        // Spelled as TensorFlow's C++ writes it, independent of `mask`.
        #[allow(clippy::manual_rotate)]
        let slow_mask = |b: &[u8]| {
            let c = crc32c_slow(b);
            ((c >> 15) | (c << 17)).wrapping_add(0xa282_ead8)
        };
        let u32_at = |p: usize| -> Option<u32> {
            let s = bytes.get(p..p + 4)?;
            Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        };
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < bytes.len() {
            let len_bytes = bytes.get(pos..pos + 8).ok_or(FrameError::Truncated(pos))?;
            let len_crc = u32_at(pos + 8).ok_or(FrameError::Truncated(pos))?;
            if slow_mask(len_bytes) != len_crc {
                return Err(FrameError::LengthCrc(pos));
            }
            let mut le = [0u8; 8];
            le.copy_from_slice(len_bytes);
            let len =
                usize::try_from(u64::from_le_bytes(le)).map_err(|_| FrameError::Truncated(pos))?;
            let start = pos + 12;
            let data = bytes
                .get(start..start + len)
                .ok_or(FrameError::Truncated(pos))?;
            let data_crc = u32_at(start + len).ok_or(FrameError::Truncated(pos))?;
            if slow_mask(data) != data_crc {
                return Err(FrameError::DataCrc(pos));
            }
            out.push(data.to_vec());
            pos = start + len + 4;
        }
        Ok(out)
    }

    #[test]
    fn crc32c_check_value() {
        // The standard CRC-32C check value for "123456789".
        assert_eq!(crc32c_slow(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c_slow(b""), 0);
    }

    #[test]
    fn masking_known_values() {
        // crc32c("") == 0, so the masked value is just the delta.
        assert_eq!(masked_crc32c(b""), 0xa282_ead8);
        // 0xE3069283 rotated right by 15 is 0x2507C60D; plus the delta.
        assert_eq!(mask(0xE306_9283), 0x2507_C60Du32.wrapping_add(0xa282_ead8));
        assert_eq!(masked_crc32c(b"123456789"), 0xC78A_B0E5);
        // Length prefix of an 8-byte record, cross-checked with the slow CRC.
        let len = 8u64.to_le_bytes();
        let slow = crc32c_slow(&len);
        assert_eq!(
            masked_crc32c(&len),
            slow.rotate_right(15).wrapping_add(0xa282_ead8)
        );
    }

    #[test]
    fn frame_round_trip() {
        let payloads: [&[u8]; 4] = [b"", b"x", b"hello world", &[0xFF; 1000]];
        let mut file = Vec::new();
        for p in payloads {
            let f = frame(p);
            assert_eq!(f.len(), p.len() + FRAME_OVERHEAD);
            file.extend_from_slice(&f);
        }
        let parsed = parse_frames(&file).expect("valid frames");
        assert_eq!(parsed.len(), payloads.len());
        for (got, want) in parsed.iter().zip(payloads) {
            assert_eq!(got.as_slice(), want);
        }
    }

    #[test]
    fn corruption_is_detected() {
        let mut f = frame(b"payload");
        let last = f.len() - 5;
        f[last] ^= 1;
        assert_eq!(parse_frames(&f), Err(FrameError::DataCrc(0)));
        let mut g = frame(b"payload");
        g[0] ^= 1;
        assert_eq!(parse_frames(&g), Err(FrameError::LengthCrc(0)));
        let h = frame(b"payload");
        assert_eq!(
            parse_frames(&h[..h.len() - 1]),
            Err(FrameError::Truncated(0))
        );
    }
}
