//! Crafting and checking packets for `BPF_PROG_TEST_RUN` tests: Ethernet + IPv4 + TCP/UDP with
//! correct checksums, and accessors that read the fields a test asserts on.

use std::net::{Ipv4Addr, Ipv6Addr};

pub const ETH_HLEN: usize = 14;
const IPV4_HLEN: usize = 20;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// An IPv4 TCP or UDP packet with an Ethernet header, built byte by byte.
#[derive(Clone, Copy, Debug)]
pub struct Ipv4Packet {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
}

impl Ipv4Packet {
    /// A TCP SYN from `src:sport` to `dst:dport`.
    pub fn tcp(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16)) -> Self {
        Self {
            src: src.0,
            dst: dst.0,
            proto: PROTO_TCP,
            sport: src.1,
            dport: dst.1,
        }
    }

    /// A UDP datagram from `src:sport` to `dst:dport`.
    pub fn udp(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16)) -> Self {
        Self {
            proto: PROTO_UDP,
            ..Self::tcp(src, dst)
        }
    }

    /// The bytes, with `payload` after the L4 header and every checksum correct.
    pub fn build(&self, payload: &[u8]) -> Vec<u8> {
        self.build_with_options(payload, &[])
    }

    /// As [`Self::build`], with IPv4 `options` (a multiple of 4 bytes) after the fixed header.
    pub fn build_with_options(&self, payload: &[u8], options: &[u8]) -> Vec<u8> {
        assert!(
            options.len().is_multiple_of(4) && options.len() <= 40,
            "IPv4 options pad to 4 bytes, at most 40"
        );
        let ip_hlen = IPV4_HLEN + options.len();
        let l4_len = match self.proto {
            PROTO_TCP => 20,
            _ => 8,
        } + payload.len();
        let mut p = Vec::with_capacity(ETH_HLEN + ip_hlen + l4_len);
        // Ethernet: destination, source, EtherType IPv4.
        p.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00]);
        let total = u16::try_from(ip_hlen + l4_len).expect("small packet");
        let ihl = u8::try_from(ip_hlen / 4).expect("IHL fits");
        p.extend_from_slice(&[0x40 | ihl, 0]);
        p.extend_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&[0x12, 0x34, 0x40, 0x00, 64, self.proto, 0, 0]);
        p.extend_from_slice(&self.src.octets());
        p.extend_from_slice(&self.dst.octets());
        p.extend_from_slice(options);
        let ip_csum = checksum(&p[ETH_HLEN..ETH_HLEN + ip_hlen], 0);
        p[ETH_HLEN + 10..ETH_HLEN + 12].copy_from_slice(&ip_csum.to_be_bytes());

        let l4 = p.len();
        p.extend_from_slice(&self.sport.to_be_bytes());
        p.extend_from_slice(&self.dport.to_be_bytes());
        if self.proto == PROTO_TCP {
            // seq, ack, data offset 5, SYN, window, checksum, urgent pointer.
            p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
        } else {
            let len = u16::try_from(l4_len).expect("small datagram");
            p.extend_from_slice(&len.to_be_bytes());
            p.extend_from_slice(&[0, 0]);
        }
        p.extend_from_slice(payload);
        let csum = l4_checksum(&p);
        let off = l4 + l4_csum_offset(self.proto);
        p[off..off + 2].copy_from_slice(&csum.to_be_bytes());
        p
    }
}

/// An ICMPv4 error (`icmp_type`, `code`) from `src` to `dst` quoting `packet` (an Ethernet
/// frame as [`Ipv4Packet::build`] makes): its IP header and the first 8 bytes after it, as
/// RFC 792 requires. Both checksums are correct.
pub fn icmp_error(src: Ipv4Addr, dst: Ipv4Addr, icmp_type: u8, code: u8, packet: &[u8]) -> Vec<u8> {
    let ihl = usize::from(packet[ETH_HLEN] & 0x0f) * 4;
    let quoted = &packet[ETH_HLEN..ETH_HLEN + ihl + 8];
    let total = u16::try_from(IPV4_HLEN + 8 + quoted.len()).expect("small packet");
    let mut p = Vec::with_capacity(ETH_HLEN + usize::from(total));
    p.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00]);
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0x43, 0x21, 0, 0, 64, PROTO_ICMP, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let ip_csum = checksum(&p[ETH_HLEN..ETH_HLEN + IPV4_HLEN], 0);
    p[ETH_HLEN + 10..ETH_HLEN + 12].copy_from_slice(&ip_csum.to_be_bytes());
    let icmp = p.len();
    p.extend_from_slice(&[icmp_type, code, 0, 0, 0, 0, 0, 0]);
    p.extend_from_slice(quoted);
    let icmp_csum = checksum(&p[icmp..], 0);
    p[icmp + 2..icmp + 4].copy_from_slice(&icmp_csum.to_be_bytes());
    p
}

/// An IPv6 TCP or UDP packet with an Ethernet header.
#[derive(Clone, Copy, Debug)]
pub struct Ipv6Packet {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
}

const IPV6_HLEN: usize = 40;

impl Ipv6Packet {
    /// A TCP SYN from `src:sport` to `dst:dport`.
    pub fn tcp(src: (Ipv6Addr, u16), dst: (Ipv6Addr, u16)) -> Self {
        Self {
            src: src.0,
            dst: dst.0,
            proto: PROTO_TCP,
            sport: src.1,
            dport: dst.1,
        }
    }

    /// A UDP datagram from `src:sport` to `dst:dport`.
    pub fn udp(src: (Ipv6Addr, u16), dst: (Ipv6Addr, u16)) -> Self {
        Self {
            proto: PROTO_UDP,
            ..Self::tcp(src, dst)
        }
    }

    /// The bytes, with `payload` after the L4 header and the L4 checksum correct.
    pub fn build(&self, payload: &[u8]) -> Vec<u8> {
        let l4_len = if self.proto == PROTO_TCP { 20 } else { 8 } + payload.len();
        let mut p = Vec::with_capacity(ETH_HLEN + IPV6_HLEN + l4_len);
        p.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x86, 0xdd]);
        p.extend_from_slice(&[0x60, 0, 0, 0]);
        p.extend_from_slice(&u16::try_from(l4_len).expect("small packet").to_be_bytes());
        p.extend_from_slice(&[self.proto, 64]);
        p.extend_from_slice(&self.src.octets());
        p.extend_from_slice(&self.dst.octets());
        let l4 = p.len();
        p.extend_from_slice(&self.sport.to_be_bytes());
        p.extend_from_slice(&self.dport.to_be_bytes());
        if self.proto == PROTO_TCP {
            p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
        } else {
            p.extend_from_slice(&u16::try_from(l4_len).expect("small").to_be_bytes());
            p.extend_from_slice(&[0, 0]);
        }
        p.extend_from_slice(payload);
        let csum = l4_checksum6(&p);
        let off = l4 + l4_csum_offset(self.proto);
        p[off..off + 2].copy_from_slice(&csum.to_be_bytes());
        p
    }
}

/// The L4 checksum an IPv6 packet should carry (pseudo header of RFC 8200 section 8.1).
pub fn l4_checksum6(packet: &[u8]) -> u16 {
    let proto = packet[ETH_HLEN + 6];
    let l4 = ETH_HLEN + IPV6_HLEN;
    let mut segment = packet[l4..].to_vec();
    let off = l4_csum_offset(proto);
    segment[off..off + 2].copy_from_slice(&[0, 0]);
    let mut pseudo = packet[ETH_HLEN + 8..ETH_HLEN + 40].to_vec();
    pseudo.extend_from_slice(&u32::try_from(segment.len()).expect("small").to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, proto]);
    let partial = word_sum(&pseudo);
    checksum(&segment, partial)
}

/// An ICMPv6 error (`icmp_type`, `code`, and the 4-byte field after the checksum, e.g. the
/// MTU of "packet too big") from `src` to `dst` quoting `packet` (an IPv6 Ethernet frame as
/// [`Ipv6Packet::build`] makes): its IPv6 header and the L4 header. The checksum is correct.
pub fn icmp6_error(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    icmp_type: u8,
    code: u8,
    field: u32,
    packet: &[u8],
) -> Vec<u8> {
    let quoted = &packet[ETH_HLEN..(ETH_HLEN + IPV6_HLEN + 8).min(packet.len())];
    let payload_len = 8 + quoted.len();
    let mut p = Vec::with_capacity(ETH_HLEN + IPV6_HLEN + payload_len);
    p.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x86, 0xdd]);
    p.extend_from_slice(&[0x60, 0, 0, 0]);
    p.extend_from_slice(&u16::try_from(payload_len).expect("small").to_be_bytes());
    p.extend_from_slice(&[PROTO_ICMPV6, 64]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&[icmp_type, code, 0, 0]);
    p.extend_from_slice(&field.to_be_bytes());
    p.extend_from_slice(quoted);
    let csum = icmp6_checksum(&p);
    let off = ETH_HLEN + IPV6_HLEN + 2;
    p[off..off + 2].copy_from_slice(&csum.to_be_bytes());
    p
}

/// The ICMPv6 checksum an ICMPv6 packet should carry (with the IPv6 pseudo header).
pub fn icmp6_checksum(packet: &[u8]) -> u16 {
    let icmp = ETH_HLEN + IPV6_HLEN;
    let mut message = packet[icmp..].to_vec();
    message[2..4].copy_from_slice(&[0, 0]);
    let mut pseudo = packet[ETH_HLEN + 8..ETH_HLEN + 40].to_vec();
    pseudo.extend_from_slice(&u32::try_from(message.len()).expect("small").to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, PROTO_ICMPV6]);
    let partial = word_sum(&pseudo);
    checksum(&message, partial)
}

/// The IPv6 packet an ICMPv6 error quotes, as an Ethernet frame again (for [`read6::tuple`]).
pub fn icmp6_quoted(packet: &[u8]) -> Vec<u8> {
    let mut frame = packet[..ETH_HLEN].to_vec();
    frame.extend_from_slice(&packet[ETH_HLEN + IPV6_HLEN + 8..]);
    frame
}

const PROTO_ICMPV6: u8 = 58;

/// Field accessors for IPv6 packets.
pub mod read6 {
    use std::net::Ipv6Addr;

    use super::{ETH_HLEN, IPV6_HLEN};

    fn addr(packet: &[u8], offset: usize) -> Ipv6Addr {
        let octets: [u8; 16] = packet[offset..offset + 16].try_into().expect("16 bytes");
        Ipv6Addr::from(octets)
    }

    /// Source and destination as (address, port) pairs.
    pub fn tuple(packet: &[u8]) -> ((Ipv6Addr, u16), (Ipv6Addr, u16)) {
        let l4 = ETH_HLEN + IPV6_HLEN;
        let port = |o: usize| u16::from_be_bytes([packet[o], packet[o + 1]]);
        (
            (addr(packet, ETH_HLEN + 8), port(l4)),
            (addr(packet, ETH_HLEN + 24), port(l4 + 2)),
        )
    }

    /// The L4 checksum as carried.
    pub fn l4_checksum(packet: &[u8]) -> u16 {
        let o = ETH_HLEN + IPV6_HLEN + super::l4_csum_offset(packet[ETH_HLEN + 6]);
        u16::from_be_bytes([packet[o], packet[o + 1]])
    }

    /// The ICMPv6 checksum as carried.
    pub fn icmp6_checksum(packet: &[u8]) -> u16 {
        let o = ETH_HLEN + IPV6_HLEN + 2;
        u16::from_be_bytes([packet[o], packet[o + 1]])
    }
}

/// Whether the ICMP checksum of an ICMPv4 packet is correct.
pub fn icmp_checksum_ok(packet: &[u8]) -> bool {
    let ihl = usize::from(packet[ETH_HLEN] & 0x0f) * 4;
    checksum(&packet[ETH_HLEN + ihl..], 0) == 0
}

/// The packet an ICMPv4 error quotes, as an Ethernet frame again (for the `read` accessors and
/// [`ip_checksum_ok`]); only its first 8 L4 bytes are there.
pub fn icmp_quoted(packet: &[u8]) -> Vec<u8> {
    let ihl = usize::from(packet[ETH_HLEN] & 0x0f) * 4;
    let mut frame = packet[..ETH_HLEN].to_vec();
    frame.extend_from_slice(&packet[ETH_HLEN + ihl + 8..]);
    frame
}

const PROTO_ICMP: u8 = 1;

fn l4_csum_offset(proto: u8) -> usize {
    if proto == PROTO_TCP { 16 } else { 6 }
}

/// The unfolded sum of `bytes` (an even number of them) as 16-bit big-endian words: the
/// partial sum a pseudo header contributes to a checksum.
fn word_sum(bytes: &[u8]) -> u32 {
    bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum()
}

/// The Internet checksum (RFC 1071) of `data`, starting from the partial sum `initial`.
pub fn checksum(data: &[u8], initial: u32) -> u16 {
    let mut sum = initial;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The L4 checksum a packet should carry, computed over the pseudo header and the L4 bytes
/// with the checksum field taken as zero.
pub fn l4_checksum(packet: &[u8]) -> u16 {
    let ihl = usize::from(packet[ETH_HLEN] & 0x0f) * 4;
    let proto = packet[ETH_HLEN + 9];
    let l4 = ETH_HLEN + ihl;
    let mut segment = packet[l4..].to_vec();
    let off = l4_csum_offset(proto);
    segment[off..off + 2].copy_from_slice(&[0, 0]);
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&packet[ETH_HLEN + 12..ETH_HLEN + 20]);
    pseudo.extend_from_slice(&[0, proto]);
    pseudo.extend_from_slice(&u16::try_from(segment.len()).expect("small").to_be_bytes());
    let partial = word_sum(&pseudo);
    checksum(&segment, partial)
}

/// Field accessors for assertions.
pub mod read {
    use std::net::Ipv4Addr;

    use super::ETH_HLEN;

    fn l4(packet: &[u8]) -> usize {
        ETH_HLEN + usize::from(packet[ETH_HLEN] & 0x0f) * 4
    }

    pub fn src(packet: &[u8]) -> Ipv4Addr {
        Ipv4Addr::new(packet[26], packet[27], packet[28], packet[29])
    }

    pub fn dst(packet: &[u8]) -> Ipv4Addr {
        Ipv4Addr::new(packet[30], packet[31], packet[32], packet[33])
    }

    /// Source and destination as (address, port) pairs.
    pub fn tuple(packet: &[u8]) -> ((Ipv4Addr, u16), (Ipv4Addr, u16)) {
        ((src(packet), sport(packet)), (dst(packet), dport(packet)))
    }

    pub fn sport(packet: &[u8]) -> u16 {
        let o = l4(packet);
        u16::from_be_bytes([packet[o], packet[o + 1]])
    }

    pub fn dport(packet: &[u8]) -> u16 {
        let o = l4(packet);
        u16::from_be_bytes([packet[o + 2], packet[o + 3]])
    }

    /// The IPv4 header checksum as carried.
    pub fn ip_checksum(packet: &[u8]) -> u16 {
        u16::from_be_bytes([packet[ETH_HLEN + 10], packet[ETH_HLEN + 11]])
    }

    /// The L4 checksum as carried.
    pub fn l4_checksum(packet: &[u8]) -> u16 {
        let o = l4(packet) + super::l4_csum_offset(packet[ETH_HLEN + 9]);
        u16::from_be_bytes([packet[o], packet[o + 1]])
    }
}

/// Whether the IPv4 header checksum of `packet` is correct.
pub fn ip_checksum_ok(packet: &[u8]) -> bool {
    let ihl = usize::from(packet[ETH_HLEN] & 0x0f) * 4;
    checksum(&packet[ETH_HLEN..ETH_HLEN + ihl], 0) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_packets_carry_correct_checksums() {
        for packet in [
            Ipv4Packet::tcp(
                (Ipv4Addr::new(10, 0, 0, 1), 40000),
                (Ipv4Addr::new(10, 96, 0, 10), 80),
            ),
            Ipv4Packet::udp(
                (Ipv4Addr::new(10, 0, 0, 1), 40000),
                (Ipv4Addr::new(10, 96, 0, 10), 53),
            ),
        ] {
            let bytes = packet.build(b"hello");
            assert!(ip_checksum_ok(&bytes));
            assert_eq!(read::l4_checksum(&bytes), l4_checksum(&bytes));
            assert_eq!(read::dst(&bytes), Ipv4Addr::new(10, 96, 0, 10));
            assert_eq!(read::sport(&bytes), 40000);
        }
    }

    #[test]
    fn options_lengthen_the_header_and_keep_checksums_right() {
        let packet = Ipv4Packet::tcp(
            (Ipv4Addr::new(10, 0, 0, 1), 1),
            (Ipv4Addr::new(10, 0, 0, 2), 2),
        )
        .build_with_options(b"x", &[1, 1, 1, 0]);
        assert_eq!(packet[ETH_HLEN] & 0x0f, 6);
        assert!(ip_checksum_ok(&packet));
        assert_eq!(read::dport(&packet), 2);
        assert_eq!(read::l4_checksum(&packet), l4_checksum(&packet));
    }

    #[test]
    fn ipv6_packets_carry_correct_checksums() {
        for packet in [
            Ipv6Packet::tcp(
                ("fd00::1".parse().unwrap(), 40000),
                ("fd00:96::10".parse().unwrap(), 80),
            ),
            Ipv6Packet::udp(
                ("fd00::1".parse().unwrap(), 40000),
                ("fd00:96::10".parse().unwrap(), 53),
            ),
        ] {
            let bytes = packet.build(b"hello");
            assert_eq!(read6::l4_checksum(&bytes), l4_checksum6(&bytes));
            assert_eq!(read6::tuple(&bytes).1.1, packet.dport);
        }
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the sum of these words is 0xddf2, so the checksum is !0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&data, 0), !0xddf2);
    }
}
