//! The 10-byte virtio-net header (`struct virtio_net_hdr`, little-endian as
//! the TUN driver uses it for `IFF_VNET_HDR` with the default header size).

use crate::error::OffloadError;

/// Size of the virtio-net header on the TUN fd (`TUNSETVNETHDRSZ` value).
pub const VNET_HDR_LEN: usize = 10;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the L4 checksum is partial (pseudo-header
/// only) and must be completed over `[csum_start, end)`.
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: checksum already verified.
pub const F_DATA_VALID: u8 = 2;

/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
pub const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_UDP` (legacy UFO, unsupported).
pub const GSO_UDP: u8 = 3;
/// `VIRTIO_NET_HDR_GSO_TCPV6`.
pub const GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_UDP_L4` (USO, both IP versions).
pub const GSO_UDP_L4: u8 = 5;
/// `VIRTIO_NET_HDR_GSO_ECN` bit, or-ed into `gso_type`.
pub const GSO_ECN: u8 = 0x80;

/// A decoded virtio-net header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VirtioNetHdr {
    /// `F_NEEDS_CSUM` / `F_DATA_VALID`.
    pub flags: u8,
    /// `GSO_*`, possibly with `GSO_ECN`.
    pub gso_type: u8,
    /// Length of the headers (L3 + L4) of a GSO packet. Not trusted by the
    /// splitter: the kernel may report `skb_headlen` here.
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// Offset of the L4 header (where checksumming starts).
    pub csum_start: u16,
    /// Offset of the checksum field from `csum_start` (16 TCP, 6 UDP).
    pub csum_offset: u16,
}

impl VirtioNetHdr {
    /// A plain header: no GSO, checksum complete.
    pub const NONE: Self = Self {
        flags: 0,
        gso_type: GSO_NONE,
        hdr_len: 0,
        gso_size: 0,
        csum_start: 0,
        csum_offset: 0,
    };

    /// Decode the first [`VNET_HDR_LEN`] bytes of `buf`.
    pub fn parse(buf: &[u8]) -> Result<Self, OffloadError> {
        let b: &[u8; VNET_HDR_LEN] = buf
            .get(..VNET_HDR_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(OffloadError::Truncated {
                need: VNET_HDR_LEN,
                have: buf.len(),
            })?;
        Ok(Self::from_bytes(b))
    }

    /// Decode a header from exactly [`VNET_HDR_LEN`] bytes.
    pub const fn from_bytes(b: &[u8; VNET_HDR_LEN]) -> Self {
        Self {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16::from_le_bytes([b[2], b[3]]),
            gso_size: u16::from_le_bytes([b[4], b[5]]),
            csum_start: u16::from_le_bytes([b[6], b[7]]),
            csum_offset: u16::from_le_bytes([b[8], b[9]]),
        }
    }

    /// Encode to [`VNET_HDR_LEN`] bytes.
    pub const fn to_bytes(&self) -> [u8; VNET_HDR_LEN] {
        let h = self.hdr_len.to_le_bytes();
        let g = self.gso_size.to_le_bytes();
        let s = self.csum_start.to_le_bytes();
        let o = self.csum_offset.to_le_bytes();
        [
            self.flags,
            self.gso_type,
            h[0],
            h[1],
            g[0],
            g[1],
            s[0],
            s[1],
            o[0],
            o[1],
        ]
    }

    /// Encode into the first [`VNET_HDR_LEN`] bytes of `buf`.
    pub fn write(&self, buf: &mut [u8]) -> Result<(), OffloadError> {
        let have = buf.len();
        let dst = buf.get_mut(..VNET_HDR_LEN).ok_or(OffloadError::Truncated {
            need: VNET_HDR_LEN,
            have,
        })?;
        dst.copy_from_slice(&self.to_bytes());
        Ok(())
    }

    /// `gso_type` without the ECN bit.
    pub const fn gso_kind(&self) -> u8 {
        self.gso_type & !GSO_ECN
    }

    /// Whether the L4 checksum is partial.
    pub const fn needs_csum(&self) -> bool {
        self.flags & F_NEEDS_CSUM != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_little_endian() {
        let h = VirtioNetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: 0x0134,
            gso_size: 1448,
            csum_start: 20,
            csum_offset: 16,
        };
        let b = h.to_bytes();
        assert_eq!(b, [1, 1, 0x34, 0x01, 0xa8, 0x05, 20, 0, 16, 0]);
        assert_eq!(VirtioNetHdr::parse(&b).unwrap(), h);
        assert!(VirtioNetHdr::parse(&b[..9]).is_err());
        let mut out = [0u8; 12];
        h.write(&mut out).unwrap();
        assert_eq!(&out[..10], &b);
        assert!(h.write(&mut out[..5]).is_err());
    }
}
