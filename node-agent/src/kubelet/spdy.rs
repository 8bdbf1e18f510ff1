//! A server-side SPDY/3.1 session: what `kubectl exec` (1.27–1.29, and 1.31+ when the
//! WebSocket upgrade is refused) and every `kubectl port-forward` speak to the kubelet after
//! `Upgrade: SPDY/3.1`.
//!
//! From the wire up:
//! - [`Frame`], [`parse_frame`] and [`Frame::encode`]: the frames of SPDY/3.1
//!   (draft-mbelshe-httpbis-spdy-00 §2 with the 3.1 changes), pure.
//! - [`HeaderCodec`]: name/value header blocks (§2.6.10), zlib-compressed with the spec's
//!   dictionary and one compression context per direction for the whole session.
//! - [`Session`]: a reader and a writer task over one connection; it hands out the streams the
//!   client opens as [`Stream`]s, which are `AsyncRead + AsyncWrite`.
//!
//! The behaviour follows `github.com/moby/spdystream`, which both kubectl and the kubelet use:
//! every SYN_STREAM is answered at once with an empty SYN_REPLY, flow control is not enforced
//! (SETTINGS and WINDOW_UPDATE are read and ignored), a client's PING is echoed, and the server
//! never opens streams of its own.

use std::{
    collections::HashMap,
    future::Future,
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    task::{Context, Poll, ready},
};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf},
    sync::mpsc::{self, OwnedPermit, error::SendError},
    task::{AbortHandle, JoinHandle},
};
use tracing::debug;

/// The protocol version in every control frame.
pub const VERSION: u16 = 3;
/// FLAG_FIN on data frames, SYN_STREAM, SYN_REPLY and HEADERS: the sender's half is closed.
pub const FLAG_FIN: u8 = 0x01;
/// FLAG_UNIDIRECTIONAL on SYN_STREAM: the receiver must not send on the stream.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;

/// RST_STREAM status codes (§2.4.2) the session sends.
pub const RST_PROTOCOL_ERROR: u32 = 1;
pub const RST_REFUSED_STREAM: u32 = 3;
pub const RST_CANCEL: u32 = 5;
pub const RST_INTERNAL_ERROR: u32 = 6;

/// GOAWAY status codes (§2.6.6).
pub const GOAWAY_OK: u32 = 0;
pub const GOAWAY_PROTOCOL_ERROR: u32 = 1;
pub const GOAWAY_INTERNAL_ERROR: u32 = 2;

/// The longest payload a frame's 24-bit length can state. The session accepts all of it: Go
/// clients write a stream's `Write` as one data frame, so a client-go caller with a large
/// in-memory stdin sends frames of megabytes, and the kubelet takes them.
pub const MAX_FRAME_LEN: usize = 0xFF_FFFF;
/// The most a header block may inflate to. Real blocks are a few hundred bytes; the limit
/// stops a small compressed block from inflating without bound.
pub const MAX_HEADER_BLOCK: usize = 1 << 20;

/// A frame's fixed header: a first word, then flags and a 24-bit length.
const FRAME_HEADER_LEN: usize = 8;
const CONTROL_BIT: u32 = 0x8000_0000;
const STREAM_ID_MASK: u32 = 0x7fff_ffff;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

/// The zlib dictionary for header blocks, from the SPDY/3 specification §2.6.10.1
/// (draft-mbelshe-httpbis-spdy-00; the Chromium "SPDY Protocol - Draft 3" page has the same
/// bytes). Both ends preset it, so it must be byte-exact: its Adler-32, which the zlib header
/// of every peer's first block names, is 0xe3c6a7c2.
#[rustfmt::skip]
pub const DICTIONARY: &[u8] = &[
    0x00, 0x00, 0x00, 0x07, 0x6f, 0x70, 0x74, 0x69, 0x6f, 0x6e, 0x73, 0x00, 0x00, 0x00, 0x04, 0x68,
    0x65, 0x61, 0x64, 0x00, 0x00, 0x00, 0x04, 0x70, 0x6f, 0x73, 0x74, 0x00, 0x00, 0x00, 0x03, 0x70,
    0x75, 0x74, 0x00, 0x00, 0x00, 0x06, 0x64, 0x65, 0x6c, 0x65, 0x74, 0x65, 0x00, 0x00, 0x00, 0x05,
    0x74, 0x72, 0x61, 0x63, 0x65, 0x00, 0x00, 0x00, 0x06, 0x61, 0x63, 0x63, 0x65, 0x70, 0x74, 0x00,
    0x00, 0x00, 0x0e, 0x61, 0x63, 0x63, 0x65, 0x70, 0x74, 0x2d, 0x63, 0x68, 0x61, 0x72, 0x73, 0x65,
    0x74, 0x00, 0x00, 0x00, 0x0f, 0x61, 0x63, 0x63, 0x65, 0x70, 0x74, 0x2d, 0x65, 0x6e, 0x63, 0x6f,
    0x64, 0x69, 0x6e, 0x67, 0x00, 0x00, 0x00, 0x0f, 0x61, 0x63, 0x63, 0x65, 0x70, 0x74, 0x2d, 0x6c,
    0x61, 0x6e, 0x67, 0x75, 0x61, 0x67, 0x65, 0x00, 0x00, 0x00, 0x0d, 0x61, 0x63, 0x63, 0x65, 0x70,
    0x74, 0x2d, 0x72, 0x61, 0x6e, 0x67, 0x65, 0x73, 0x00, 0x00, 0x00, 0x03, 0x61, 0x67, 0x65, 0x00,
    0x00, 0x00, 0x05, 0x61, 0x6c, 0x6c, 0x6f, 0x77, 0x00, 0x00, 0x00, 0x0d, 0x61, 0x75, 0x74, 0x68,
    0x6f, 0x72, 0x69, 0x7a, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x00, 0x00, 0x00, 0x0d, 0x63, 0x61, 0x63,
    0x68, 0x65, 0x2d, 0x63, 0x6f, 0x6e, 0x74, 0x72, 0x6f, 0x6c, 0x00, 0x00, 0x00, 0x0a, 0x63, 0x6f,
    0x6e, 0x6e, 0x65, 0x63, 0x74, 0x69, 0x6f, 0x6e, 0x00, 0x00, 0x00, 0x0c, 0x63, 0x6f, 0x6e, 0x74,
    0x65, 0x6e, 0x74, 0x2d, 0x62, 0x61, 0x73, 0x65, 0x00, 0x00, 0x00, 0x10, 0x63, 0x6f, 0x6e, 0x74,
    0x65, 0x6e, 0x74, 0x2d, 0x65, 0x6e, 0x63, 0x6f, 0x64, 0x69, 0x6e, 0x67, 0x00, 0x00, 0x00, 0x10,
    0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74, 0x2d, 0x6c, 0x61, 0x6e, 0x67, 0x75, 0x61, 0x67, 0x65,
    0x00, 0x00, 0x00, 0x0e, 0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74, 0x2d, 0x6c, 0x65, 0x6e, 0x67,
    0x74, 0x68, 0x00, 0x00, 0x00, 0x10, 0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74, 0x2d, 0x6c, 0x6f,
    0x63, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x00, 0x00, 0x00, 0x0b, 0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e,
    0x74, 0x2d, 0x6d, 0x64, 0x35, 0x00, 0x00, 0x00, 0x0d, 0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74,
    0x2d, 0x72, 0x61, 0x6e, 0x67, 0x65, 0x00, 0x00, 0x00, 0x0c, 0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e,
    0x74, 0x2d, 0x74, 0x79, 0x70, 0x65, 0x00, 0x00, 0x00, 0x04, 0x64, 0x61, 0x74, 0x65, 0x00, 0x00,
    0x00, 0x04, 0x65, 0x74, 0x61, 0x67, 0x00, 0x00, 0x00, 0x06, 0x65, 0x78, 0x70, 0x65, 0x63, 0x74,
    0x00, 0x00, 0x00, 0x07, 0x65, 0x78, 0x70, 0x69, 0x72, 0x65, 0x73, 0x00, 0x00, 0x00, 0x04, 0x66,
    0x72, 0x6f, 0x6d, 0x00, 0x00, 0x00, 0x04, 0x68, 0x6f, 0x73, 0x74, 0x00, 0x00, 0x00, 0x08, 0x69,
    0x66, 0x2d, 0x6d, 0x61, 0x74, 0x63, 0x68, 0x00, 0x00, 0x00, 0x11, 0x69, 0x66, 0x2d, 0x6d, 0x6f,
    0x64, 0x69, 0x66, 0x69, 0x65, 0x64, 0x2d, 0x73, 0x69, 0x6e, 0x63, 0x65, 0x00, 0x00, 0x00, 0x0d,
    0x69, 0x66, 0x2d, 0x6e, 0x6f, 0x6e, 0x65, 0x2d, 0x6d, 0x61, 0x74, 0x63, 0x68, 0x00, 0x00, 0x00,
    0x08, 0x69, 0x66, 0x2d, 0x72, 0x61, 0x6e, 0x67, 0x65, 0x00, 0x00, 0x00, 0x13, 0x69, 0x66, 0x2d,
    0x75, 0x6e, 0x6d, 0x6f, 0x64, 0x69, 0x66, 0x69, 0x65, 0x64, 0x2d, 0x73, 0x69, 0x6e, 0x63, 0x65,
    0x00, 0x00, 0x00, 0x0d, 0x6c, 0x61, 0x73, 0x74, 0x2d, 0x6d, 0x6f, 0x64, 0x69, 0x66, 0x69, 0x65,
    0x64, 0x00, 0x00, 0x00, 0x08, 0x6c, 0x6f, 0x63, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x00, 0x00, 0x00,
    0x0c, 0x6d, 0x61, 0x78, 0x2d, 0x66, 0x6f, 0x72, 0x77, 0x61, 0x72, 0x64, 0x73, 0x00, 0x00, 0x00,
    0x06, 0x70, 0x72, 0x61, 0x67, 0x6d, 0x61, 0x00, 0x00, 0x00, 0x12, 0x70, 0x72, 0x6f, 0x78, 0x79,
    0x2d, 0x61, 0x75, 0x74, 0x68, 0x65, 0x6e, 0x74, 0x69, 0x63, 0x61, 0x74, 0x65, 0x00, 0x00, 0x00,
    0x13, 0x70, 0x72, 0x6f, 0x78, 0x79, 0x2d, 0x61, 0x75, 0x74, 0x68, 0x6f, 0x72, 0x69, 0x7a, 0x61,
    0x74, 0x69, 0x6f, 0x6e, 0x00, 0x00, 0x00, 0x05, 0x72, 0x61, 0x6e, 0x67, 0x65, 0x00, 0x00, 0x00,
    0x07, 0x72, 0x65, 0x66, 0x65, 0x72, 0x65, 0x72, 0x00, 0x00, 0x00, 0x0b, 0x72, 0x65, 0x74, 0x72,
    0x79, 0x2d, 0x61, 0x66, 0x74, 0x65, 0x72, 0x00, 0x00, 0x00, 0x06, 0x73, 0x65, 0x72, 0x76, 0x65,
    0x72, 0x00, 0x00, 0x00, 0x02, 0x74, 0x65, 0x00, 0x00, 0x00, 0x07, 0x74, 0x72, 0x61, 0x69, 0x6c,
    0x65, 0x72, 0x00, 0x00, 0x00, 0x11, 0x74, 0x72, 0x61, 0x6e, 0x73, 0x66, 0x65, 0x72, 0x2d, 0x65,
    0x6e, 0x63, 0x6f, 0x64, 0x69, 0x6e, 0x67, 0x00, 0x00, 0x00, 0x07, 0x75, 0x70, 0x67, 0x72, 0x61,
    0x64, 0x65, 0x00, 0x00, 0x00, 0x0a, 0x75, 0x73, 0x65, 0x72, 0x2d, 0x61, 0x67, 0x65, 0x6e, 0x74,
    0x00, 0x00, 0x00, 0x04, 0x76, 0x61, 0x72, 0x79, 0x00, 0x00, 0x00, 0x03, 0x76, 0x69, 0x61, 0x00,
    0x00, 0x00, 0x07, 0x77, 0x61, 0x72, 0x6e, 0x69, 0x6e, 0x67, 0x00, 0x00, 0x00, 0x10, 0x77, 0x77,
    0x77, 0x2d, 0x61, 0x75, 0x74, 0x68, 0x65, 0x6e, 0x74, 0x69, 0x63, 0x61, 0x74, 0x65, 0x00, 0x00,
    0x00, 0x06, 0x6d, 0x65, 0x74, 0x68, 0x6f, 0x64, 0x00, 0x00, 0x00, 0x03, 0x67, 0x65, 0x74, 0x00,
    0x00, 0x00, 0x06, 0x73, 0x74, 0x61, 0x74, 0x75, 0x73, 0x00, 0x00, 0x00, 0x06, 0x32, 0x30, 0x30,
    0x20, 0x4f, 0x4b, 0x00, 0x00, 0x00, 0x07, 0x76, 0x65, 0x72, 0x73, 0x69, 0x6f, 0x6e, 0x00, 0x00,
    0x00, 0x08, 0x48, 0x54, 0x54, 0x50, 0x2f, 0x31, 0x2e, 0x31, 0x00, 0x00, 0x00, 0x03, 0x75, 0x72,
    0x6c, 0x00, 0x00, 0x00, 0x06, 0x70, 0x75, 0x62, 0x6c, 0x69, 0x63, 0x00, 0x00, 0x00, 0x0a, 0x73,
    0x65, 0x74, 0x2d, 0x63, 0x6f, 0x6f, 0x6b, 0x69, 0x65, 0x00, 0x00, 0x00, 0x0a, 0x6b, 0x65, 0x65,
    0x70, 0x2d, 0x61, 0x6c, 0x69, 0x76, 0x65, 0x00, 0x00, 0x00, 0x06, 0x6f, 0x72, 0x69, 0x67, 0x69,
    0x6e, 0x31, 0x30, 0x30, 0x31, 0x30, 0x31, 0x32, 0x30, 0x31, 0x32, 0x30, 0x32, 0x32, 0x30, 0x35,
    0x32, 0x30, 0x36, 0x33, 0x30, 0x30, 0x33, 0x30, 0x32, 0x33, 0x30, 0x33, 0x33, 0x30, 0x34, 0x33,
    0x30, 0x35, 0x33, 0x30, 0x36, 0x33, 0x30, 0x37, 0x34, 0x30, 0x32, 0x34, 0x30, 0x35, 0x34, 0x30,
    0x36, 0x34, 0x30, 0x37, 0x34, 0x30, 0x38, 0x34, 0x30, 0x39, 0x34, 0x31, 0x30, 0x34, 0x31, 0x31,
    0x34, 0x31, 0x32, 0x34, 0x31, 0x33, 0x34, 0x31, 0x34, 0x34, 0x31, 0x35, 0x34, 0x31, 0x36, 0x34,
    0x31, 0x37, 0x35, 0x30, 0x32, 0x35, 0x30, 0x34, 0x35, 0x30, 0x35, 0x32, 0x30, 0x33, 0x20, 0x4e,
    0x6f, 0x6e, 0x2d, 0x41, 0x75, 0x74, 0x68, 0x6f, 0x72, 0x69, 0x74, 0x61, 0x74, 0x69, 0x76, 0x65,
    0x20, 0x49, 0x6e, 0x66, 0x6f, 0x72, 0x6d, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x32, 0x30, 0x34, 0x20,
    0x4e, 0x6f, 0x20, 0x43, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74, 0x33, 0x30, 0x31, 0x20, 0x4d, 0x6f,
    0x76, 0x65, 0x64, 0x20, 0x50, 0x65, 0x72, 0x6d, 0x61, 0x6e, 0x65, 0x6e, 0x74, 0x6c, 0x79, 0x34,
    0x30, 0x30, 0x20, 0x42, 0x61, 0x64, 0x20, 0x52, 0x65, 0x71, 0x75, 0x65, 0x73, 0x74, 0x34, 0x30,
    0x31, 0x20, 0x55, 0x6e, 0x61, 0x75, 0x74, 0x68, 0x6f, 0x72, 0x69, 0x7a, 0x65, 0x64, 0x34, 0x30,
    0x33, 0x20, 0x46, 0x6f, 0x72, 0x62, 0x69, 0x64, 0x64, 0x65, 0x6e, 0x34, 0x30, 0x34, 0x20, 0x4e,
    0x6f, 0x74, 0x20, 0x46, 0x6f, 0x75, 0x6e, 0x64, 0x35, 0x30, 0x30, 0x20, 0x49, 0x6e, 0x74, 0x65,
    0x72, 0x6e, 0x61, 0x6c, 0x20, 0x53, 0x65, 0x72, 0x76, 0x65, 0x72, 0x20, 0x45, 0x72, 0x72, 0x6f,
    0x72, 0x35, 0x30, 0x31, 0x20, 0x4e, 0x6f, 0x74, 0x20, 0x49, 0x6d, 0x70, 0x6c, 0x65, 0x6d, 0x65,
    0x6e, 0x74, 0x65, 0x64, 0x35, 0x30, 0x33, 0x20, 0x53, 0x65, 0x72, 0x76, 0x69, 0x63, 0x65, 0x20,
    0x55, 0x6e, 0x61, 0x76, 0x61, 0x69, 0x6c, 0x61, 0x62, 0x6c, 0x65, 0x4a, 0x61, 0x6e, 0x20, 0x46,
    0x65, 0x62, 0x20, 0x4d, 0x61, 0x72, 0x20, 0x41, 0x70, 0x72, 0x20, 0x4d, 0x61, 0x79, 0x20, 0x4a,
    0x75, 0x6e, 0x20, 0x4a, 0x75, 0x6c, 0x20, 0x41, 0x75, 0x67, 0x20, 0x53, 0x65, 0x70, 0x74, 0x20,
    0x4f, 0x63, 0x74, 0x20, 0x4e, 0x6f, 0x76, 0x20, 0x44, 0x65, 0x63, 0x20, 0x30, 0x30, 0x3a, 0x30,
    0x30, 0x3a, 0x30, 0x30, 0x20, 0x4d, 0x6f, 0x6e, 0x2c, 0x20, 0x54, 0x75, 0x65, 0x2c, 0x20, 0x57,
    0x65, 0x64, 0x2c, 0x20, 0x54, 0x68, 0x75, 0x2c, 0x20, 0x46, 0x72, 0x69, 0x2c, 0x20, 0x53, 0x61,
    0x74, 0x2c, 0x20, 0x53, 0x75, 0x6e, 0x2c, 0x20, 0x47, 0x4d, 0x54, 0x63, 0x68, 0x75, 0x6e, 0x6b,
    0x65, 0x64, 0x2c, 0x74, 0x65, 0x78, 0x74, 0x2f, 0x68, 0x74, 0x6d, 0x6c, 0x2c, 0x69, 0x6d, 0x61,
    0x67, 0x65, 0x2f, 0x70, 0x6e, 0x67, 0x2c, 0x69, 0x6d, 0x61, 0x67, 0x65, 0x2f, 0x6a, 0x70, 0x67,
    0x2c, 0x69, 0x6d, 0x61, 0x67, 0x65, 0x2f, 0x67, 0x69, 0x66, 0x2c, 0x61, 0x70, 0x70, 0x6c, 0x69,
    0x63, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x2f, 0x78, 0x6d, 0x6c, 0x2c, 0x61, 0x70, 0x70, 0x6c, 0x69,
    0x63, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x2f, 0x78, 0x68, 0x74, 0x6d, 0x6c, 0x2b, 0x78, 0x6d, 0x6c,
    0x2c, 0x74, 0x65, 0x78, 0x74, 0x2f, 0x70, 0x6c, 0x61, 0x69, 0x6e, 0x2c, 0x74, 0x65, 0x78, 0x74,
    0x2f, 0x6a, 0x61, 0x76, 0x61, 0x73, 0x63, 0x72, 0x69, 0x70, 0x74, 0x2c, 0x70, 0x75, 0x62, 0x6c,
    0x69, 0x63, 0x70, 0x72, 0x69, 0x76, 0x61, 0x74, 0x65, 0x6d, 0x61, 0x78, 0x2d, 0x61, 0x67, 0x65,
    0x3d, 0x67, 0x7a, 0x69, 0x70, 0x2c, 0x64, 0x65, 0x66, 0x6c, 0x61, 0x74, 0x65, 0x2c, 0x73, 0x64,
    0x63, 0x68, 0x63, 0x68, 0x61, 0x72, 0x73, 0x65, 0x74, 0x3d, 0x75, 0x74, 0x66, 0x2d, 0x38, 0x63,
    0x68, 0x61, 0x72, 0x73, 0x65, 0x74, 0x3d, 0x69, 0x73, 0x6f, 0x2d, 0x38, 0x38, 0x35, 0x39, 0x2d,
    0x31, 0x2c, 0x75, 0x74, 0x66, 0x2d, 0x2c, 0x2a, 0x2c, 0x65, 0x6e, 0x71, 0x3d, 0x30, 0x2e,
];

// ---------------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------------

/// One SPDY/3.1 frame. Header blocks stay compressed here: decompressing them needs the
/// session's zlib context, which [`HeaderCodec`] owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A peer opens a stream (§2.6.1). The credential slot of SPDY/3 is dropped; 3.1 has none.
    SynStream {
        stream_id: u32,
        associated_to: u32,
        /// 0 (highest) to 7.
        priority: u8,
        flags: u8,
        headers: Vec<u8>,
    },
    /// The answer to a SYN_STREAM (§2.6.2).
    SynReply {
        stream_id: u32,
        flags: u8,
        headers: Vec<u8>,
    },
    /// A stream ends abnormally (§2.6.3).
    RstStream { stream_id: u32, status: u32 },
    /// Session parameters (§2.6.4).
    Settings { flags: u8, entries: Vec<Setting> },
    /// A liveness probe, answered with the same id (§2.6.5).
    Ping { id: u32 },
    /// The session ends; streams above `last_good_stream_id` were not processed (§2.6.6).
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    /// More headers for a stream (§2.6.7).
    Headers {
        stream_id: u32,
        flags: u8,
        headers: Vec<u8>,
    },
    /// Flow-control credit (§2.6.8); `stream_id` 0 is the session's window in 3.1.
    WindowUpdate { stream_id: u32, delta: u32 },
    /// Stream data (§2.2.2).
    Data {
        stream_id: u32,
        flags: u8,
        data: Vec<u8>,
    },
    /// A control frame of a type SPDY/3.1 does not define (NOOP, CREDENTIAL, …), which §2.2.1
    /// says to ignore.
    Unknown { kind: u16, flags: u8 },
}

/// One entry of a SETTINGS frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setting {
    pub flags: u8,
    /// 24 bits.
    pub id: u32,
    pub value: u32,
}

/// Why bytes are not a SPDY/3.1 frame, or a frame cannot be written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("SPDY control frame has version {0}, not 3")]
    Version(u16),
    #[error("SPDY frame has a {len}-byte payload, more than the limit of {max}")]
    TooLong { len: usize, max: usize },
    #[error("SPDY {kind} frame has a {len}-byte payload; {expected}")]
    Length {
        kind: &'static str,
        len: usize,
        expected: &'static str,
    },
    #[error("SPDY {0} frame names stream 0")]
    ZeroStream(&'static str),
}

/// Parses the frame at the start of `buf`: `Ok(None)` when `buf` does not hold all of it yet,
/// otherwise the frame and how many bytes it took. A frame whose payload exceeds `max_len` is
/// an error as soon as its header is in, so a peer cannot make the caller buffer it.
pub fn parse_frame(buf: &[u8], max_len: usize) -> Result<Option<(Frame, usize)>, FrameError> {
    let Some(head) = buf.get(..FRAME_HEADER_LEN) else {
        return Ok(None);
    };
    let first = word(head, 0);
    let flags = head[4];
    let len = usize::from(head[5]) << 16 | usize::from(head[6]) << 8 | usize::from(head[7]);
    if len > max_len {
        return Err(FrameError::TooLong { len, max: max_len });
    }
    let Some(payload) = buf.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len) else {
        return Ok(None);
    };
    let frame = if first & CONTROL_BIT != 0 {
        let version = (first >> 16) as u16 & 0x7fff;
        if version != VERSION {
            return Err(FrameError::Version(version));
        }
        parse_control(first as u16, flags, payload)?
    } else {
        let stream_id = first & STREAM_ID_MASK;
        if stream_id == 0 {
            return Err(FrameError::ZeroStream("DATA"));
        }
        Frame::Data {
            stream_id,
            flags,
            data: payload.to_vec(),
        }
    };
    Ok(Some((frame, FRAME_HEADER_LEN + len)))
}

/// A control frame's payload; the caller has checked the version and that `p` is complete.
fn parse_control(kind: u16, flags: u8, p: &[u8]) -> Result<Frame, FrameError> {
    let check = |name: &'static str, ok: bool, expected: &'static str| {
        if ok {
            Ok(())
        } else {
            Err(FrameError::Length {
                kind: name,
                len: p.len(),
                expected,
            })
        }
    };
    let stream = |name: &'static str| match word(p, 0) & STREAM_ID_MASK {
        0 => Err(FrameError::ZeroStream(name)),
        id => Ok(id),
    };
    Ok(match kind {
        TYPE_SYN_STREAM => {
            check("SYN_STREAM", p.len() >= 10, "expected at least 10")?;
            Frame::SynStream {
                stream_id: stream("SYN_STREAM")?,
                associated_to: word(p, 4) & STREAM_ID_MASK,
                priority: p[8] >> 5,
                flags,
                headers: p[10..].to_vec(),
            }
        }
        TYPE_SYN_REPLY => {
            check("SYN_REPLY", p.len() >= 4, "expected at least 4")?;
            Frame::SynReply {
                stream_id: stream("SYN_REPLY")?,
                flags,
                headers: p[4..].to_vec(),
            }
        }
        TYPE_RST_STREAM => {
            check("RST_STREAM", p.len() == 8, "expected 8")?;
            Frame::RstStream {
                stream_id: stream("RST_STREAM")?,
                status: word(p, 4),
            }
        }
        TYPE_SETTINGS => {
            check("SETTINGS", p.len() >= 4, "expected at least 4")?;
            let count = word(p, 0) as usize;
            let fits = count
                .checked_mul(8)
                .and_then(|n| n.checked_add(4))
                .is_some_and(|n| n == p.len());
            check("SETTINGS", fits, "expected 4 + 8 per entry")?;
            let entries = p[4..]
                .chunks_exact(8)
                .map(|e| Setting {
                    flags: e[0],
                    id: word(e, 0) & 0xff_ffff,
                    value: word(e, 4),
                })
                .collect();
            Frame::Settings { flags, entries }
        }
        TYPE_PING => {
            check("PING", p.len() == 4, "expected 4")?;
            Frame::Ping { id: word(p, 0) }
        }
        TYPE_GOAWAY => {
            check("GOAWAY", p.len() == 8, "expected 8")?;
            Frame::GoAway {
                last_good_stream_id: word(p, 0) & STREAM_ID_MASK,
                status: word(p, 4),
            }
        }
        TYPE_HEADERS => {
            check("HEADERS", p.len() >= 4, "expected at least 4")?;
            Frame::Headers {
                stream_id: stream("HEADERS")?,
                flags,
                headers: p[4..].to_vec(),
            }
        }
        TYPE_WINDOW_UPDATE => {
            check("WINDOW_UPDATE", p.len() == 8, "expected 8")?;
            Frame::WindowUpdate {
                stream_id: word(p, 0) & STREAM_ID_MASK,
                delta: word(p, 4) & STREAM_ID_MASK,
            }
        }
        kind => Frame::Unknown { kind, flags },
    })
}

/// The big-endian word at `at`; callers check the length first.
fn word(p: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]])
}

impl Frame {
    /// Appends the frame's wire form to `out`. Fails, leaving `out` as it was, only when the
    /// payload does not fit the 24-bit length.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), FrameError> {
        let start = out.len();
        let flags = match self {
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                out.extend_from_slice(&(stream_id & STREAM_ID_MASK).to_be_bytes());
                out.extend_from_slice(&[*flags, 0, 0, 0]);
                out.extend_from_slice(data);
                *flags
            }
            control => {
                let (kind, flags) = control.kind_and_flags();
                out.extend_from_slice(&(CONTROL_BIT | u32::from(VERSION) << 16).to_be_bytes());
                out[start + 2..start + 4].copy_from_slice(&kind.to_be_bytes());
                out.extend_from_slice(&[flags, 0, 0, 0]);
                control.encode_control_payload(out);
                flags
            }
        };
        let len = out.len() - start - FRAME_HEADER_LEN;
        if len > MAX_FRAME_LEN {
            out.truncate(start);
            return Err(FrameError::TooLong {
                len,
                max: MAX_FRAME_LEN,
            });
        }
        let len = len as u32;
        out[start + 4..start + 8].copy_from_slice(&(u32::from(flags) << 24 | len).to_be_bytes());
        Ok(())
    }

    /// The frame's wire form.
    pub fn to_bytes(&self) -> Result<Vec<u8>, FrameError> {
        let mut out = Vec::new();
        self.encode(&mut out)?;
        Ok(out)
    }

    fn kind_and_flags(&self) -> (u16, u8) {
        match self {
            Frame::SynStream { flags, .. } => (TYPE_SYN_STREAM, *flags),
            Frame::SynReply { flags, .. } => (TYPE_SYN_REPLY, *flags),
            Frame::RstStream { .. } => (TYPE_RST_STREAM, 0),
            Frame::Settings { flags, .. } => (TYPE_SETTINGS, *flags),
            Frame::Ping { .. } => (TYPE_PING, 0),
            Frame::GoAway { .. } => (TYPE_GOAWAY, 0),
            Frame::Headers { flags, .. } => (TYPE_HEADERS, *flags),
            Frame::WindowUpdate { .. } => (TYPE_WINDOW_UPDATE, 0),
            Frame::Unknown { kind, flags } => (*kind, *flags),
            Frame::Data { flags, .. } => (0, *flags),
        }
    }

    fn encode_control_payload(&self, out: &mut Vec<u8>) {
        match self {
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                headers,
                ..
            } => {
                put(out, stream_id & STREAM_ID_MASK);
                put(out, associated_to & STREAM_ID_MASK);
                // Priority in the top three bits, then the unused credential slot.
                out.extend_from_slice(&[(priority & 0x7) << 5, 0]);
                out.extend_from_slice(headers);
            }
            Frame::SynReply {
                stream_id, headers, ..
            }
            | Frame::Headers {
                stream_id, headers, ..
            } => {
                put(out, stream_id & STREAM_ID_MASK);
                out.extend_from_slice(headers);
            }
            Frame::RstStream { stream_id, status } => {
                put(out, stream_id & STREAM_ID_MASK);
                put(out, *status);
            }
            Frame::Settings { entries, .. } => {
                put(out, entries.len() as u32);
                for e in entries {
                    put(out, u32::from(e.flags) << 24 | e.id & 0xff_ffff);
                    put(out, e.value);
                }
            }
            Frame::Ping { id } => put(out, *id),
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                put(out, last_good_stream_id & STREAM_ID_MASK);
                put(out, *status);
            }
            Frame::WindowUpdate { stream_id, delta } => {
                put(out, stream_id & STREAM_ID_MASK);
                put(out, delta & STREAM_ID_MASK);
            }
            Frame::Unknown { .. } | Frame::Data { .. } => {}
        }
    }
}

fn put(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_be_bytes());
}

// ---------------------------------------------------------------------------------------------
// Header blocks
// ---------------------------------------------------------------------------------------------

/// Why a header block could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("failed to inflate a SPDY header block: {0}")]
    Inflate(#[source] flate2::DecompressError),
    #[error("SPDY header block inflates to more than {MAX_HEADER_BLOCK} bytes")]
    TooLarge,
    #[error("SPDY header block is truncated")]
    Truncated,
    #[error("SPDY header block has {0} bytes after its last header")]
    Trailing(usize),
    #[error("SPDY header {0:?} is not UTF-8")]
    NotUtf8(String),
}

/// Compresses the header blocks one side sends. The zlib stream is never reset: each block is
/// a Z_SYNC_FLUSH-terminated piece of it, and the peer's inflater, like this deflater, carries
/// its window from block to block (§2.6.10.1).
pub struct HeaderEncoder {
    deflate: Compress,
}

impl Default for HeaderEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderEncoder {
    pub fn new() -> Self {
        // spdystream uses zlib.BestCompression; any level inflates the same.
        let mut deflate = Compress::new(Compression::best(), true);
        // Only a wrong stream state can make this fail, and the stream is brand new.
        deflate
            .set_dictionary(DICTIONARY)
            .expect("a fresh deflate stream takes a dictionary");
        Self { deflate }
    }

    /// The compressed block for `headers`; names are lower-cased, as §2.6.10 requires.
    pub fn encode<N: AsRef<str>, V: AsRef<str>>(&mut self, headers: &[(N, V)]) -> Vec<u8> {
        let raw = raw_block(headers);
        let mut out = Vec::new();
        let mut taken = 0;
        loop {
            out.reserve(raw.len() - taken + 64);
            let before = self.deflate.total_in();
            // Deflating into memory fails only on a corrupt stream state, which nothing here
            // can produce.
            self.deflate
                .compress_vec(&raw[taken..], &mut out, FlushCompress::Sync)
                .expect("deflating into memory does not fail");
            taken += (self.deflate.total_in() - before) as usize;
            // zlib's contract: a flush is complete once deflate returns with output space left.
            if taken == raw.len() && out.len() < out.capacity() {
                return out;
            }
        }
    }
}

/// Decompresses the header blocks the peer sends; see [`HeaderEncoder`] for why one context
/// spans the session.
pub struct HeaderDecoder {
    inflate: Decompress,
}

impl Default for HeaderDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderDecoder {
    pub fn new() -> Self {
        Self {
            inflate: Decompress::new(true),
        }
    }

    /// The headers of one compressed block. An error leaves the context out of step with the
    /// peer's, so the session cannot go on after one.
    pub fn decode(&mut self, block: &[u8]) -> Result<Vec<(String, String)>, HeaderError> {
        let mut raw = Vec::new();
        let mut taken = 0;
        loop {
            raw.reserve(4096);
            let (before_in, before_out) = (self.inflate.total_in(), self.inflate.total_out());
            let result =
                self.inflate
                    .decompress_vec(&block[taken..], &mut raw, FlushDecompress::Sync);
            taken += (self.inflate.total_in() - before_in) as usize;
            let progress =
                self.inflate.total_in() != before_in || self.inflate.total_out() != before_out;
            match result {
                // The first block's zlib header names the dictionary (FDICT); inflate stops
                // there until it is given.
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(DICTIONARY)
                        .map_err(HeaderError::Inflate)?;
                    continue;
                }
                Err(e) => return Err(HeaderError::Inflate(e)),
                Ok(Status::StreamEnd) => {
                    if taken < block.len() {
                        return Err(HeaderError::Trailing(block.len() - taken));
                    }
                    break;
                }
                Ok(Status::Ok | Status::BufError) => {}
            }
            if raw.len() > MAX_HEADER_BLOCK {
                return Err(HeaderError::TooLarge);
            }
            // Done once the input is gone and inflate stopped with output space to spare.
            if taken == block.len() && raw.len() < raw.capacity() {
                break;
            }
            if !progress {
                return Err(HeaderError::Truncated);
            }
        }
        parse_block(&raw)
    }
}

/// The two zlib contexts of one end of a session: `compress` for the blocks it sends,
/// `decompress` for the blocks it receives.
#[derive(Default)]
pub struct HeaderCodec {
    pub compress: HeaderEncoder,
    pub decompress: HeaderDecoder,
}

impl HeaderCodec {
    pub fn new() -> Self {
        Self::default()
    }

    /// See [`HeaderEncoder::encode`].
    pub fn encode<N: AsRef<str>, V: AsRef<str>>(&mut self, headers: &[(N, V)]) -> Vec<u8> {
        self.compress.encode(headers)
    }

    /// See [`HeaderDecoder::decode`].
    pub fn decode(&mut self, block: &[u8]) -> Result<Vec<(String, String)>, HeaderError> {
        self.decompress.decode(block)
    }
}

/// The uncompressed block: a 32-bit count, then 32-bit length-prefixed names and values
/// (§2.6.10). Several values of one name would be joined with NUL; callers pass one.
fn raw_block<N: AsRef<str>, V: AsRef<str>>(headers: &[(N, V)]) -> Vec<u8> {
    let mut raw = Vec::new();
    put(&mut raw, headers.len() as u32);
    for (name, value) in headers {
        let name = name.as_ref().to_ascii_lowercase();
        put(&mut raw, name.len() as u32);
        raw.extend_from_slice(name.as_bytes());
        put(&mut raw, value.as_ref().len() as u32);
        raw.extend_from_slice(value.as_ref().as_bytes());
    }
    raw
}

/// The inverse of [`raw_block`]. Names are lower-cased whatever the peer sent, as spdystream
/// does; a value holding several NUL-separated values is kept whole.
fn parse_block(raw: &[u8]) -> Result<Vec<(String, String)>, HeaderError> {
    let mut rest = raw;
    let count = word(take(&mut rest, 4)?, 0);
    // Each header takes at least 8 bytes, which bounds the allocation by the block's size.
    let mut headers = Vec::with_capacity((count as usize).min(raw.len() / 8));
    for _ in 0..count {
        let len = word(take(&mut rest, 4)?, 0) as usize;
        let name = take(&mut rest, len)?;
        let name = String::from_utf8(name.to_ascii_lowercase())
            .map_err(|e| HeaderError::NotUtf8(String::from_utf8_lossy(e.as_bytes()).into()))?;
        let len = word(take(&mut rest, 4)?, 0) as usize;
        let value = String::from_utf8(take(&mut rest, len)?.to_vec())
            .map_err(|_| HeaderError::NotUtf8(name.clone()))?;
        headers.push((name, value));
    }
    if !rest.is_empty() {
        return Err(HeaderError::Trailing(rest.len()));
    }
    Ok(headers)
}

/// The next `n` bytes of `rest`.
fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], HeaderError> {
    let (head, tail) = rest.split_at_checked(n).ok_or(HeaderError::Truncated)?;
    *rest = tail;
    Ok(head)
}

// ---------------------------------------------------------------------------------------------
// Session
// ---------------------------------------------------------------------------------------------

/// The most a stream's [`AsyncWrite`] puts in one data frame. Go clients copy with 32 KiB
/// buffers; frames no larger keep one stream from holding the connection for long.
const MAX_WRITE_CHUNK: usize = 32 * 1024;
/// Data frames buffered for a stream before the reader task waits for the stream's reader.
const STREAM_BUFFER: usize = 16;
/// Frames queued for the writer task before writers wait.
const OUTGOING_BUFFER: usize = 64;
/// How much the writer task gathers into one write.
const WRITE_BATCH: usize = 64 * 1024;

/// What the writer task sends, in queue order.
#[derive(Debug)]
enum Outgoing {
    /// A frame without a header block.
    Frame(Frame),
    /// An empty SYN_REPLY. Its block is compressed in the writer task because the zlib
    /// context must see blocks in the order they go on the wire.
    Reply { stream_id: u32 },
    /// GOAWAY naming the last stream accepted, then the end of the connection's write side and
    /// of the session.
    GoAway { status: u32 },
}

/// A server-side SPDY/3.1 session over one upgraded connection.
///
/// A reader task parses the client's frames and a writer task sends the server's, so writes
/// never wait for the client's frames nor reads for the server's writes (but see [`Stream`]
/// on data nobody reads). Dropping the session ends it as [`close`] does, without waiting:
/// keep it until the streams are done.
///
/// [`close`]: Session::close
pub struct Session {
    accepted: mpsc::UnboundedReceiver<Stream>,
    outgoing: mpsc::Sender<Outgoing>,
    writer: Option<JoinHandle<()>>,
    closed: bool,
}

impl Session {
    /// Starts the session's tasks on the current tokio runtime.
    pub fn new<T>(io: T) -> Self
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (read, write) = tokio::io::split(io);
        let HeaderCodec {
            compress,
            decompress,
        } = HeaderCodec::new();
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let (outgoing_tx, outgoing_rx) = mpsc::channel(OUTGOING_BUFFER);
        let (accepted_tx, accepted) = mpsc::unbounded_channel();
        let last_stream = Arc::new(AtomicU32::new(0));
        let reader = tokio::spawn(read_frames(
            read,
            Dispatch {
                headers: decompress,
                control: control_tx,
                outgoing: outgoing_tx.clone(),
                accepted: accepted_tx,
                last_stream: Arc::clone(&last_stream),
                streams: HashMap::new(),
            },
        ));
        let writer = tokio::spawn(write_frames(
            write,
            compress,
            control_rx,
            outgoing_rx,
            last_stream,
            reader.abort_handle(),
        ));
        Self {
            accepted,
            outgoing: outgoing_tx,
            writer: Some(writer),
            closed: false,
        }
    }

    /// The next stream the client opened, already answered with SYN_REPLY. `None` once the
    /// session has ended: the client sent GOAWAY or closed the connection, a frame could not
    /// be read, or the connection failed.
    pub async fn accept(&mut self) -> Option<Stream> {
        self.accepted.recv().await
    }

    /// Sends GOAWAY after everything already queued, closes the connection's write side and
    /// waits for that. Streams still open then end: reads see EOF, writes fail.
    pub async fn close(mut self) {
        self.closed = true;
        let _ = self
            .outgoing
            .send(Outgoing::GoAway { status: GOAWAY_OK })
            .await;
        if let Some(writer) = self.writer.take() {
            let _ = writer.await;
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if !self.closed {
            send_detached(&self.outgoing, Outgoing::GoAway { status: GOAWAY_OK });
        }
    }
}

/// Queues `message` without waiting, for `Drop`: at once if there is room, else from a task.
fn send_detached(outgoing: &mpsc::Sender<Outgoing>, message: Outgoing) {
    if let Err(mpsc::error::TrySendError::Full(message)) = outgoing.try_send(message)
        && let Ok(runtime) = tokio::runtime::Handle::try_current()
    {
        let outgoing = outgoing.clone();
        runtime.spawn(async move {
            let _ = outgoing.send(message).await;
        });
    }
}

/// What the reader task knows of one open stream.
struct Open {
    /// Where the client's data goes; `None` once the client sent FIN or the stream's reader
    /// was dropped.
    data: Option<mpsc::Sender<Vec<u8>>>,
    shared: Arc<Shared>,
}

/// What a stream's halves and the reader task share.
#[derive(Default)]
struct Shared {
    /// The client sent RST_STREAM.
    reset: AtomicBool,
}

/// The reader task's state.
struct Dispatch {
    headers: HeaderDecoder,
    /// Frames the reader task answers with; unbounded so that it never waits on the writer.
    control: mpsc::UnboundedSender<Outgoing>,
    /// Handed to each stream for its writes.
    outgoing: mpsc::Sender<Outgoing>,
    accepted: mpsc::UnboundedSender<Stream>,
    /// The last stream id the client opened, which stream ids must exceed and GOAWAY names.
    last_stream: Arc<AtomicU32>,
    streams: HashMap<u32, Open>,
}

/// Why the reader task stopped.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("failed to read the headers of stream {stream_id}: {source}")]
    Headers {
        stream_id: u32,
        #[source]
        source: HeaderError,
    },
}

/// Reads frames until the client sends GOAWAY, the connection ends or a frame is malformed.
/// Returning drops every stream's data sender and the accept queue, so stream reads see EOF
/// and `accept` yields `None`.
async fn read_frames<R: AsyncRead + Unpin>(mut io: R, mut dispatch: Dispatch) {
    let mut buf = Vec::with_capacity(64 * 1024);
    loop {
        let mut start = 0;
        loop {
            match parse_frame(&buf[start..], MAX_FRAME_LEN) {
                Ok(Some((frame, len))) => {
                    start += len;
                    match dispatch.handle(frame).await {
                        Ok(true) => {}
                        Ok(false) => return,
                        Err(error) => {
                            debug!(%error, "SPDY session ends on a protocol error");
                            let _ = dispatch.control.send(Outgoing::GoAway {
                                status: GOAWAY_PROTOCOL_ERROR,
                            });
                            return;
                        }
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    debug!(%error, "SPDY session ends on a malformed frame");
                    let _ = dispatch.control.send(Outgoing::GoAway {
                        status: GOAWAY_PROTOCOL_ERROR,
                    });
                    return;
                }
            }
        }
        buf.drain(..start);
        buf.reserve(64 * 1024);
        match io.read_buf(&mut buf).await {
            Ok(0) => {
                debug!("SPDY client closed the connection");
                return;
            }
            Ok(_) => {}
            Err(error) => {
                debug!(%error, "failed to read from the SPDY connection");
                return;
            }
        }
    }
}

impl Dispatch {
    /// Acts on one frame; `Ok(false)` ends the session.
    async fn handle(&mut self, frame: Frame) -> Result<bool, ReadError> {
        match frame {
            Frame::SynStream {
                stream_id,
                flags,
                headers,
                ..
            } => {
                // Every block is decoded, even one whose stream is refused, to keep the zlib
                // context in step with the client's.
                let headers = self.decode(stream_id, &headers)?;
                return Ok(self.open(stream_id, flags, headers));
            }
            // The server opens no streams, and exec and port-forward send no trailing headers;
            // the blocks are decoded only to keep the zlib context in step.
            Frame::SynReply {
                stream_id, headers, ..
            } => {
                self.decode(stream_id, &headers)?;
            }
            Frame::Headers {
                stream_id,
                flags,
                headers,
            } => {
                self.decode(stream_id, &headers)?;
                if flags & FLAG_FIN != 0
                    && let Some(open) = self.streams.get_mut(&stream_id)
                {
                    open.data = None;
                }
            }
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                // Data for a stream that is gone (reset, or never opened) is dropped, as
                // spdystream does.
                if let Some(open) = self.streams.get_mut(&stream_id) {
                    if let Some(tx) = &open.data
                        && !data.is_empty()
                        && tx.send(data).await.is_err()
                    {
                        open.data = None;
                    }
                    if flags & FLAG_FIN != 0 {
                        open.data = None;
                    }
                }
            }
            Frame::RstStream { stream_id, .. } => {
                if let Some(open) = self.streams.remove(&stream_id) {
                    // Set before the data sender drops, so a reader that sees EOF finds
                    // writes already failing.
                    open.shared.reset.store(true, Ordering::Release);
                }
            }
            Frame::Ping { id } => {
                // Odd ids are the client's pings; even ones would answer the server's, and it
                // sends none.
                if !id.is_multiple_of(2) {
                    let ping = Outgoing::Frame(Frame::Ping { id });
                    return Ok(self.control.send(ping).is_ok());
                }
            }
            Frame::GoAway { .. } => {
                debug!("SPDY client sent GOAWAY");
                return Ok(false);
            }
            // spdystream enforces no flow control and kubectl relies on none.
            Frame::Settings { .. } | Frame::WindowUpdate { .. } | Frame::Unknown { .. } => {}
        }
        Ok(true)
    }

    fn decode(&mut self, stream_id: u32, block: &[u8]) -> Result<Vec<(String, String)>, ReadError> {
        self.headers
            .decode(block)
            .map_err(|source| ReadError::Headers { stream_id, source })
    }

    /// Opens the stream a SYN_STREAM named and answers it; `false` ends the session.
    fn open(&mut self, stream_id: u32, flags: u8, headers: Vec<(String, String)>) -> bool {
        // Client streams are odd and increase (§2.3.2); spdystream resets the others.
        if stream_id.is_multiple_of(2) || stream_id <= self.last_stream.load(Ordering::Acquire) {
            debug!(stream_id, "SPDY client opened a stream with an invalid id");
            let reset = Frame::RstStream {
                stream_id,
                status: RST_PROTOCOL_ERROR,
            };
            return self.control.send(Outgoing::Frame(reset)).is_ok();
        }
        self.last_stream.store(stream_id, Ordering::Release);
        // Forget streams whose halves are all gone, so a long port-forward session does not
        // accumulate them.
        self.streams
            .retain(|_, open| Arc::strong_count(&open.shared) > 1);
        if self.control.send(Outgoing::Reply { stream_id }).is_err() {
            return false;
        }
        let (data_tx, data_rx) = mpsc::channel(STREAM_BUFFER);
        let shared = Arc::new(Shared::default());
        let stream = Stream {
            headers,
            reader: StreamReader {
                id: stream_id,
                data: data_rx,
                chunk: Vec::new(),
                at: 0,
                _shared: Arc::clone(&shared),
            },
            writer: StreamWriter {
                id: stream_id,
                outgoing: self.outgoing.clone(),
                reserving: None,
                finished: false,
                shared: Arc::clone(&shared),
            },
        };
        let data = (flags & FLAG_FIN == 0).then_some(data_tx);
        self.streams.insert(stream_id, Open { data, shared });
        // A session whose owner stopped accepting drops the stream, which sends FIN.
        let _ = self.accepted.send(stream);
        true
    }
}

/// Writes the server's frames, control answers first, until a GOAWAY is sent, the connection
/// fails, or nothing can queue frames any more; then ends the reader task too.
async fn write_frames<W: AsyncWrite + Unpin>(
    mut io: W,
    mut headers: HeaderEncoder,
    mut control: mpsc::UnboundedReceiver<Outgoing>,
    mut outgoing: mpsc::Receiver<Outgoing>,
    last_stream: Arc<AtomicU32>,
    reader: AbortHandle,
) {
    let mut buf = Vec::with_capacity(WRITE_BATCH);
    loop {
        let mut next = tokio::select! {
            biased;
            Some(message) = control.recv() => (true, message),
            Some(message) = outgoing.recv() => (false, message),
            else => break,
        };
        buf.clear();
        let mut last = false;
        loop {
            let (is_control, message) = next;
            if !is_control {
                // A stream's SYN_REPLY is queued before the stream is handed out, but it can
                // land between a look at `control` and one at `outgoing`. Having received the
                // stream's data, the reply is visible: draining `control` first keeps it ahead.
                while !last && let Ok(reply) = control.try_recv() {
                    last = encode_outgoing(reply, &mut headers, &last_stream, &mut buf);
                }
            }
            if last {
                break;
            }
            last = encode_outgoing(message, &mut headers, &last_stream, &mut buf);
            if last || buf.len() >= WRITE_BATCH {
                break;
            }
            next = match control.try_recv() {
                Ok(message) => (true, message),
                Err(_) => match outgoing.try_recv() {
                    Ok(message) => (false, message),
                    Err(_) => break,
                },
            };
        }
        let written = async {
            io.write_all(&buf).await?;
            io.flush().await
        };
        if let Err(error) = written.await {
            debug!(%error, "failed to write to the SPDY connection");
            break;
        }
        if last {
            let _ = io.shutdown().await;
            break;
        }
    }
    reader.abort();
}

/// Appends `message`'s frame to `buf`; `true` when it was the session's last.
fn encode_outgoing(
    message: Outgoing,
    headers: &mut HeaderEncoder,
    last_stream: &AtomicU32,
    buf: &mut Vec<u8>,
) -> bool {
    let (frame, last) = match message {
        Outgoing::Frame(frame) => (frame, false),
        Outgoing::Reply { stream_id } => {
            let block = headers.encode::<&str, &str>(&[]);
            let reply = Frame::SynReply {
                stream_id,
                flags: 0,
                headers: block,
            };
            (reply, false)
        }
        Outgoing::GoAway { status } => {
            let goaway = Frame::GoAway {
                last_good_stream_id: last_stream.load(Ordering::Acquire),
                status,
            };
            (goaway, true)
        }
    };
    // Every frame queued here is small: data is cut to MAX_WRITE_CHUNK, header blocks are one
    // empty list.
    if let Err(error) = frame.encode(buf) {
        debug!(%error, "dropped an outgoing SPDY frame");
    }
    last
}

// ---------------------------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------------------------

/// A stream the client opened. Reading yields the client's data until it sends FIN or
/// RST_STREAM or the session ends; writing sends data frames; shutting down (or [`close`])
/// sends FIN. Dropping the stream unclosed sends FIN too.
///
/// A stream whose data is never read holds up the whole session once its buffer is full, as
/// in spdystream: split it and drop the [`StreamReader`] if the data does not matter.
///
/// [`close`]: Stream::close
pub struct Stream {
    headers: Vec<(String, String)>,
    reader: StreamReader,
    writer: StreamWriter,
}

impl Stream {
    pub fn id(&self) -> u32 {
        self.writer.id
    }

    /// The SYN_STREAM's headers, names lower-cased: kubectl's `streamType` is `streamtype`.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The value of header `name` (matched without regard to case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Sends FIN: the server's half is closed; the client's data can still be read.
    pub async fn close(&mut self) -> io::Result<()> {
        self.writer.close().await
    }

    /// Sends RST_STREAM with `status` (e.g. [`RST_CANCEL`]) instead of FIN.
    pub async fn reset(&mut self, status: u32) -> io::Result<()> {
        self.writer.reset(status).await
    }

    /// The halves, for reading and writing from different tasks.
    pub fn into_split(self) -> (StreamReader, StreamWriter) {
        (self.reader, self.writer)
    }
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("id", &self.id())
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().reader).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().writer).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().writer).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().writer).poll_shutdown(cx)
    }
}

/// The reading half of a [`Stream`]: the client's data, then EOF at its FIN, at its
/// RST_STREAM, or when the session ends.
pub struct StreamReader {
    id: u32,
    data: mpsc::Receiver<Vec<u8>>,
    /// The data frame being read out, from `at`.
    chunk: Vec<u8>,
    at: usize,
    /// Keeps the stream known to the reader task while this half lives.
    _shared: Arc<Shared>,
}

impl StreamReader {
    pub fn id(&self) -> u32 {
        self.id
    }
}

impl AsyncRead for StreamReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.at == this.chunk.len() {
            match ready!(this.data.poll_recv(cx)) {
                Some(chunk) => {
                    this.chunk = chunk;
                    this.at = 0;
                }
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = buf.remaining().min(this.chunk.len() - this.at);
        buf.put_slice(&this.chunk[this.at..this.at + n]);
        this.at += n;
        Poll::Ready(Ok(()))
    }
}

/// A pending reservation of a slot in the writer task's queue.
type Reserving =
    Pin<Box<dyn Future<Output = Result<OwnedPermit<Outgoing>, SendError<()>>> + Send + Sync>>;

/// The writing half of a [`Stream`]. Writes wait while the writer task's queue is full, which
/// passes the connection's backpressure on to whatever copies into the stream.
pub struct StreamWriter {
    id: u32,
    outgoing: mpsc::Sender<Outgoing>,
    reserving: Option<Reserving>,
    /// FIN or RST_STREAM was sent.
    finished: bool,
    shared: Arc<Shared>,
}

impl StreamWriter {
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Sends FIN; see [`Stream::close`].
    pub async fn close(&mut self) -> io::Result<()> {
        self.shutdown().await
    }

    /// Sends RST_STREAM; see [`Stream::reset`].
    pub async fn reset(&mut self, status: u32) -> io::Result<()> {
        if self.finished {
            return Ok(());
        }
        let permit = std::future::poll_fn(|cx| self.poll_reserve(cx)).await?;
        permit.send(Outgoing::Frame(Frame::RstStream {
            stream_id: self.id,
            status,
        }));
        self.finished = true;
        Ok(())
    }

    /// Waits for room in the writer task's queue.
    fn poll_reserve(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<OwnedPermit<Outgoing>>> {
        let reserving = self
            .reserving
            .get_or_insert_with(|| Box::pin(self.outgoing.clone().reserve_owned()));
        let reserved = ready!(reserving.as_mut().poll(cx));
        self.reserving = None;
        Poll::Ready(reserved.map_err(|_| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                format!("the SPDY session of stream {} has ended", self.id),
            )
        }))
    }

    fn data(&self, data: Vec<u8>, fin: bool) -> Outgoing {
        Outgoing::Frame(Frame::Data {
            stream_id: self.id,
            flags: if fin { FLAG_FIN } else { 0 },
            data,
        })
    }
}

impl AsyncWrite for StreamWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.shared.reset.load(Ordering::Acquire) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                format!("SPDY stream {} was reset by the client", this.id),
            )));
        }
        if this.finished {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                format!("SPDY stream {} is closed", this.id),
            )));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let permit = ready!(this.poll_reserve(cx))?;
        let n = buf.len().min(MAX_WRITE_CHUNK);
        permit.send(this.data(buf[..n].to_vec(), false));
        Poll::Ready(Ok(n))
    }

    /// Data is queued for the writer task, which flushes the connection after every batch.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.finished || this.shared.reset.load(Ordering::Acquire) {
            return Poll::Ready(Ok(()));
        }
        let permit = ready!(this.poll_reserve(cx))?;
        permit.send(this.data(Vec::new(), true));
        this.finished = true;
        Poll::Ready(Ok(()))
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        if !self.finished && !self.shared.reset.load(Ordering::Acquire) {
            send_detached(&self.outgoing, self.data(Vec::new(), true));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};

    use super::*;

    // --- Frames ---------------------------------------------------------------------------

    fn every_frame() -> Vec<Frame> {
        vec![
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 7,
                flags: FLAG_FIN | FLAG_UNIDIRECTIONAL,
                headers: vec![1, 2, 3],
            },
            Frame::SynReply {
                stream_id: 3,
                flags: 0,
                headers: vec![9; 20],
            },
            Frame::RstStream {
                stream_id: 5,
                status: RST_CANCEL,
            },
            Frame::Settings {
                flags: 1,
                entries: vec![
                    Setting {
                        flags: 0,
                        id: 7,
                        value: 65536,
                    },
                    Setting {
                        flags: 2,
                        id: 4,
                        value: 100,
                    },
                ],
            },
            Frame::Ping { id: 1 },
            Frame::GoAway {
                last_good_stream_id: 7,
                status: GOAWAY_PROTOCOL_ERROR,
            },
            Frame::Headers {
                stream_id: 9,
                flags: FLAG_FIN,
                headers: vec![4, 5],
            },
            Frame::WindowUpdate {
                stream_id: 0,
                delta: 0x7fff_ffff,
            },
            Frame::Data {
                stream_id: 11,
                flags: FLAG_FIN,
                data: b"hello".to_vec(),
            },
            Frame::Data {
                stream_id: 0x7fff_ffff,
                flags: 0,
                data: Vec::new(),
            },
        ]
    }

    #[test]
    fn every_frame_round_trips() {
        for frame in every_frame() {
            let bytes = frame.to_bytes().unwrap();
            assert_eq!(
                parse_frame(&bytes, MAX_FRAME_LEN).unwrap(),
                Some((frame.clone(), bytes.len())),
                "{frame:?} did not come back from {bytes:02x?}"
            );
        }
    }

    #[test]
    fn frames_are_laid_out_as_the_spec_says() {
        let ping = Frame::Ping { id: 1 }.to_bytes().unwrap();
        assert_eq!(ping, [0x80, 0x03, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 1]);
        let data = Frame::Data {
            stream_id: 3,
            flags: FLAG_FIN,
            data: b"ab".to_vec(),
        };
        assert_eq!(
            data.to_bytes().unwrap(),
            [0, 0, 0, 3, 1, 0, 0, 2, b'a', b'b']
        );
        let syn = Frame::SynStream {
            stream_id: 1,
            associated_to: 0,
            priority: 2,
            flags: 0,
            headers: vec![0xaa],
        };
        assert_eq!(
            syn.to_bytes().unwrap(),
            [
                0x80, 3, 0, 1, 0, 0, 0, 11, 0, 0, 0, 1, 0, 0, 0, 0, 0x40, 0, 0xaa
            ]
        );
    }

    #[test]
    fn a_partial_frame_needs_more_bytes() {
        let mut bytes = Vec::new();
        for frame in every_frame() {
            bytes.clear();
            frame.encode(&mut bytes).unwrap();
            for end in 0..bytes.len() {
                assert_eq!(
                    parse_frame(&bytes[..end], MAX_FRAME_LEN),
                    Ok(None),
                    "{end} bytes of {frame:?}"
                );
            }
        }
    }

    #[test]
    fn frames_in_one_buffer_parse_one_by_one() {
        let mut bytes = Vec::new();
        for frame in every_frame() {
            frame.encode(&mut bytes).unwrap();
        }
        let mut at = 0;
        let mut parsed = Vec::new();
        while let Some((frame, len)) = parse_frame(&bytes[at..], MAX_FRAME_LEN).unwrap() {
            parsed.push(frame);
            at += len;
        }
        assert_eq!(at, bytes.len());
        assert_eq!(parsed, every_frame());
    }

    #[test]
    fn a_frame_over_the_limit_is_refused_from_its_header() {
        let header = [0, 0, 0, 1, 0, 0x10, 0, 0];
        assert_eq!(
            parse_frame(&header, 1 << 16),
            Err(FrameError::TooLong {
                len: 1 << 20,
                max: 1 << 16
            })
        );
        let data = Frame::Data {
            stream_id: 1,
            flags: 0,
            data: vec![0; MAX_FRAME_LEN + 1],
        };
        let mut out = vec![7];
        assert!(matches!(
            data.encode(&mut out),
            Err(FrameError::TooLong { .. })
        ));
        assert_eq!(out, [7], "a failed encode leaves the buffer as it was");
    }

    #[test]
    fn malformed_control_frames_are_errors() {
        let control = |kind: u8, payload: &[u8]| {
            let mut b = vec![0x80, 3, 0, kind, 0, 0, 0, payload.len() as u8];
            b.extend_from_slice(payload);
            parse_frame(&b, MAX_FRAME_LEN)
        };
        assert!(matches!(
            control(TYPE_PING as u8, &[0, 0, 1]),
            Err(FrameError::Length { kind: "PING", .. })
        ));
        assert!(matches!(
            control(TYPE_RST_STREAM as u8, &[0, 0, 0, 1, 0, 0, 0]),
            Err(FrameError::Length { .. })
        ));
        assert!(matches!(
            control(TYPE_SETTINGS as u8, &[0, 0, 0, 2, 0, 0, 0, 7, 0, 0, 0, 1]),
            Err(FrameError::Length {
                kind: "SETTINGS",
                ..
            })
        ));
        assert_eq!(
            control(TYPE_SYN_STREAM as u8, &[0; 10]),
            Err(FrameError::ZeroStream("SYN_STREAM"))
        );
        assert_eq!(
            parse_frame(&[0, 0, 0, 0, 0, 0, 0, 0], MAX_FRAME_LEN),
            Err(FrameError::ZeroStream("DATA"))
        );
        let spdy2 = [0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1];
        assert_eq!(
            parse_frame(&spdy2, MAX_FRAME_LEN),
            Err(FrameError::Version(2))
        );
    }

    #[test]
    fn unknown_control_frames_are_skipped_whole() {
        // NOOP (type 5) existed in SPDY/2 only.
        let noop = [0x80, 3, 0, 5, 0, 0, 0, 2, 0xff, 0xff];
        assert_eq!(
            parse_frame(&noop, MAX_FRAME_LEN),
            Ok(Some((Frame::Unknown { kind: 5, flags: 0 }, 10)))
        );
    }

    // --- Header blocks --------------------------------------------------------------------

    fn adler32(bytes: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for &byte in bytes {
            a = (a + u32::from(byte)) % 65521;
            b = (b + a) % 65521;
        }
        b << 16 | a
    }

    #[test]
    fn the_dictionary_is_the_specs() {
        assert_eq!(DICTIONARY.len(), 1423);
        assert_eq!(adler32(DICTIONARY), 0xe3c6_a7c2);
    }

    fn owned(headers: &[(&str, &str)]) -> Vec<(String, String)> {
        headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn header_blocks_round_trip_through_one_context_per_direction() {
        let (mut client, mut server) = (HeaderCodec::new(), HeaderCodec::new());
        let long = "v".repeat(100_000);
        let blocks = [
            vec![
                ("streamType", "error"),
                ("port", "8080"),
                ("requestID", "0"),
            ],
            vec![("streamType", "data"), ("port", "8080"), ("requestID", "0")],
            vec![],
            vec![("streamtype", "stdin"), ("x-empty", "")],
            vec![("streamtype", "stdout"), ("long", long.as_str())],
        ];
        for headers in &blocks {
            let sent = client.encode(headers);
            let expected: Vec<_> = headers
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), (*v).to_owned()))
                .collect();
            assert_eq!(server.decode(&sent).unwrap(), expected);
            // And the other way, through the other pair of contexts.
            let answer = server.encode(headers);
            assert_eq!(client.decode(&answer).unwrap(), expected);
        }
    }

    #[test]
    fn later_blocks_lean_on_the_shared_context() {
        let mut codec = HeaderCodec::new();
        let headers = [("streamtype", "stdout"), ("port", "8080")];
        let first = codec.encode(&headers);
        let second = codec.encode(&headers);
        assert!(
            second.len() < first.len(),
            "the repeat ({} bytes) should be shorter than the first ({} bytes)",
            second.len(),
            first.len()
        );
        // Without the first block a fresh decoder cannot read the second.
        assert!(HeaderDecoder::new().decode(&second).is_err());
    }

    #[test]
    fn a_block_from_a_fresh_compressor_with_the_dictionary_decodes() {
        let raw = raw_block(&[("streamtype", "stdin")]);
        let mut deflate = Compress::new(Compression::fast(), true);
        deflate.set_dictionary(DICTIONARY).unwrap();
        let mut block = Vec::with_capacity(1024);
        deflate
            .compress_vec(&raw, &mut block, FlushCompress::Sync)
            .unwrap();
        assert_eq!(
            HeaderDecoder::new().decode(&block).unwrap(),
            owned(&[("streamtype", "stdin")])
        );
    }

    /// Two consecutive blocks from C zlib 1.2.13 (Python's `zlib.compressobj(9, zdict=…)`,
    /// Z_SYNC_FLUSH after each), as a Go peer's compress/zlib would send them: the first names
    /// the dictionary in its zlib header, the second only makes sense after the first.
    #[test]
    fn blocks_from_another_zlib_decode() {
        let first = [
            0x78, 0xf9, 0xe3, 0xc6, 0xa7, 0xc2, 0x02, 0x25, 0x3a, 0x48, 0xf9, 0x5b, 0x04, 0x4e,
            0xea, 0x16, 0x06, 0x16, 0x06, 0x40, 0x9a, 0xb3, 0x08, 0x12, 0x5f, 0x99, 0xa0, 0x74,
            0xcc, 0x68, 0x00, 0x4e, 0x89, 0x25, 0x45, 0xa9, 0x89, 0xb9, 0xd0, 0xc2, 0x86, 0x35,
            0x15, 0x14, 0x15, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff,
        ];
        let second = [
            0x22, 0x53, 0x33, 0xa8, 0xa4, 0x4a, 0x04, 0x00, 0x00, 0x00, 0xff, 0xff,
        ];
        let mut decoder = HeaderDecoder::new();
        assert_eq!(
            decoder.decode(&first).unwrap(),
            owned(&[
                ("port", "8080"),
                ("requestid", "0"),
                ("streamtype", "error")
            ])
        );
        assert_eq!(
            decoder.decode(&second).unwrap(),
            owned(&[("port", "8080"), ("requestid", "0"), ("streamtype", "data")])
        );
    }

    #[test]
    fn a_block_that_inflates_too_far_is_refused() {
        let big = "0".repeat(MAX_HEADER_BLOCK);
        let block = HeaderEncoder::new().encode(&[("big", big.as_str())]);
        assert!(
            block.len() < MAX_HEADER_BLOCK / 100,
            "{} bytes",
            block.len()
        );
        assert!(matches!(
            HeaderDecoder::new().decode(&block),
            Err(HeaderError::TooLarge)
        ));
    }

    #[test]
    fn garbage_is_not_a_header_block() {
        assert!(matches!(
            HeaderDecoder::new().decode(b"not zlib at all"),
            Err(HeaderError::Inflate(_))
        ));
        assert!(matches!(
            HeaderDecoder::new().decode(&[]),
            Err(HeaderError::Truncated)
        ));
    }

    #[test]
    fn raw_blocks_check_their_lengths() {
        let raw = raw_block(&[("a", "b")]);
        assert_eq!(parse_block(&raw).unwrap(), owned(&[("a", "b")]));
        assert!(matches!(
            parse_block(&raw[..raw.len() - 1]),
            Err(HeaderError::Truncated)
        ));
        let mut long = raw.clone();
        long.push(0);
        assert!(matches!(parse_block(&long), Err(HeaderError::Trailing(1))));
        // A count far beyond the block must not allocate for it.
        assert!(matches!(
            parse_block(&[0xff, 0xff, 0xff, 0xff]),
            Err(HeaderError::Truncated)
        ));
    }

    // --- Session --------------------------------------------------------------------------

    const WAIT: Duration = Duration::from_secs(5);

    /// The client end of a session, built from the same framing and header code.
    struct Client {
        io: DuplexStream,
        headers: HeaderCodec,
        buf: Vec<u8>,
    }

    impl Client {
        fn new(io: DuplexStream) -> Self {
            Self {
                io,
                headers: HeaderCodec::new(),
                buf: Vec::new(),
            }
        }

        async fn send(&mut self, frame: Frame) {
            self.io.write_all(&frame.to_bytes().unwrap()).await.unwrap();
        }

        async fn open(&mut self, stream_id: u32, headers: &[(&str, &str)]) {
            let headers = self.headers.encode(headers);
            self.send(Frame::SynStream {
                stream_id,
                associated_to: 0,
                priority: 0,
                flags: 0,
                headers,
            })
            .await;
        }

        async fn data(&mut self, stream_id: u32, data: &[u8], fin: bool) {
            self.send(Frame::Data {
                stream_id,
                flags: if fin { FLAG_FIN } else { 0 },
                data: data.to_vec(),
            })
            .await;
        }

        /// The next frame from the server, or `None` at EOF.
        async fn next(&mut self) -> Option<Frame> {
            tokio::time::timeout(WAIT, async {
                loop {
                    if let Some((frame, len)) = parse_frame(&self.buf, MAX_FRAME_LEN).unwrap() {
                        self.buf.drain(..len);
                        return Some(frame);
                    }
                    if self.io.read_buf(&mut self.buf).await.unwrap() == 0 {
                        assert!(self.buf.is_empty(), "EOF inside a frame");
                        return None;
                    }
                }
            })
            .await
            .expect("the server answers in time")
        }

        /// The next frame, which must be a SYN_REPLY to `stream_id` with no headers.
        async fn expect_reply(&mut self, stream_id: u32) {
            match self.next().await {
                Some(Frame::SynReply {
                    stream_id: id,
                    headers,
                    ..
                }) => {
                    assert_eq!(id, stream_id);
                    assert_eq!(self.headers.decode(&headers).unwrap(), []);
                }
                other => panic!("expected SYN_REPLY to {stream_id}, got {other:?}"),
            }
        }
    }

    fn session() -> (Session, Client) {
        let (server, client) = tokio::io::duplex(64 * 1024);
        (Session::new(server), Client::new(client))
    }

    async fn accept(session: &mut Session) -> Stream {
        tokio::time::timeout(WAIT, session.accept())
            .await
            .expect("a stream in time")
            .expect("the session is open")
    }

    async fn read_all(reader: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
        let mut out = Vec::new();
        tokio::time::timeout(WAIT, reader.read_to_end(&mut out))
            .await
            .expect("EOF in time")
            .unwrap();
        out
    }

    #[tokio::test]
    async fn exec_like_streams_carry_data_both_ways() {
        let (mut session, mut client) = session();
        client.open(1, &[("streamType", "stdin")]).await;
        client.open(3, &[("streamType", "stdout")]).await;

        let mut stdin = accept(&mut session).await;
        assert_eq!((stdin.id(), stdin.header("streamType")), (1, Some("stdin")));
        assert_eq!(stdin.headers(), owned(&[("streamtype", "stdin")]));
        let mut stdout = accept(&mut session).await;
        assert_eq!(
            (stdout.id(), stdout.header("streamtype")),
            (3, Some("stdout"))
        );
        client.expect_reply(1).await;
        client.expect_reply(3).await;

        client.data(1, b"hello ", false).await;
        client.data(1, b"world", true).await;
        assert_eq!(read_all(&mut stdin).await, b"hello world");

        stdout.write_all(b"output").await.unwrap();
        stdout.close().await.unwrap();
        assert_eq!(
            client.next().await,
            Some(Frame::Data {
                stream_id: 3,
                flags: 0,
                data: b"output".to_vec()
            })
        );
        assert_eq!(
            client.next().await,
            Some(Frame::Data {
                stream_id: 3,
                flags: FLAG_FIN,
                data: Vec::new()
            })
        );
        let closed = stdout.write_all(b"more").await.unwrap_err();
        assert_eq!(closed.kind(), io::ErrorKind::BrokenPipe);

        // Dropping a stream that was not closed sends its FIN.
        drop(stdin);
        assert_eq!(
            client.next().await,
            Some(Frame::Data {
                stream_id: 1,
                flags: FLAG_FIN,
                data: Vec::new()
            })
        );

        session.close().await;
        assert_eq!(
            client.next().await,
            Some(Frame::GoAway {
                last_good_stream_id: 3,
                status: GOAWAY_OK
            })
        );
        assert_eq!(
            client.next().await,
            None,
            "the connection ends after GOAWAY"
        );
    }

    #[tokio::test]
    async fn ping_is_echoed_and_flow_control_ignored() {
        let (mut session, mut client) = session();
        client
            .send(Frame::Settings {
                flags: 0,
                entries: vec![Setting {
                    flags: 0,
                    id: 7,
                    value: 1,
                }],
            })
            .await;
        client
            .send(Frame::WindowUpdate {
                stream_id: 0,
                delta: 1000,
            })
            .await;
        client.send(Frame::Ping { id: 1 }).await;
        assert_eq!(client.next().await, Some(Frame::Ping { id: 1 }));
        // An even id would answer a server ping; there is none to answer.
        client.send(Frame::Ping { id: 2 }).await;
        client.send(Frame::Ping { id: 3 }).await;
        assert_eq!(client.next().await, Some(Frame::Ping { id: 3 }));

        // The window the client granted (1 byte) is not enforced.
        client.open(1, &[("streamtype", "data")]).await;
        let mut stream = accept(&mut session).await;
        client.expect_reply(1).await;
        stream.write_all(b"more than one byte").await.unwrap();
        assert!(matches!(
            client.next().await,
            Some(Frame::Data { stream_id: 1, data, .. }) if data == b"more than one byte"
        ));
    }

    #[tokio::test]
    async fn rst_stream_ends_the_stream() {
        let (mut session, mut client) = session();
        client.open(1, &[("streamtype", "data")]).await;
        client.open(3, &[("streamtype", "error")]).await;
        let mut data = accept(&mut session).await;
        let mut error = accept(&mut session).await;
        client.expect_reply(1).await;
        client.expect_reply(3).await;

        client.data(1, b"partial", false).await;
        client
            .send(Frame::RstStream {
                stream_id: 1,
                status: RST_CANCEL,
            })
            .await;
        assert_eq!(read_all(&mut data).await, b"partial");
        let reset = data.write_all(b"late").await.unwrap_err();
        assert_eq!(reset.kind(), io::ErrorKind::ConnectionReset);
        drop(data);

        // Data for the reset stream is dropped; the other stream goes on.
        client.data(1, b"ignored", false).await;
        client.data(3, b"still here", true).await;
        assert_eq!(read_all(&mut error).await, b"still here");
        error.reset(RST_INTERNAL_ERROR).await.unwrap();
        assert_eq!(
            client.next().await,
            Some(Frame::RstStream {
                stream_id: 3,
                status: RST_INTERNAL_ERROR
            })
        );
    }

    #[tokio::test]
    async fn invalid_stream_ids_are_reset() {
        let (mut session, mut client) = session();
        client.open(2, &[("streamtype", "even")]).await;
        assert_eq!(
            client.next().await,
            Some(Frame::RstStream {
                stream_id: 2,
                status: RST_PROTOCOL_ERROR
            })
        );
        client.open(5, &[("streamtype", "ok")]).await;
        client.open(3, &[("streamtype", "backwards")]).await;
        assert_eq!(accept(&mut session).await.header("streamtype"), Some("ok"));
        client.expect_reply(5).await;
        assert_eq!(
            client.next().await,
            Some(Frame::RstStream {
                stream_id: 3,
                status: RST_PROTOCOL_ERROR
            })
        );
        // The refused streams' headers were still decoded, so the context is in step.
        client.open(7, &[("streamtype", "after")]).await;
        assert_eq!(
            accept(&mut session).await.header("streamtype"),
            Some("after")
        );
    }

    #[tokio::test]
    async fn goaway_from_the_client_ends_the_session() {
        let (mut session, mut client) = session();
        client.open(1, &[("streamtype", "stdin")]).await;
        let mut stdin = accept(&mut session).await;
        client.expect_reply(1).await;
        client.data(1, b"unfinished", false).await;
        client
            .send(Frame::GoAway {
                last_good_stream_id: 0,
                status: GOAWAY_OK,
            })
            .await;
        assert_eq!(read_all(&mut stdin).await, b"unfinished");
        assert!(session.accept().await.is_none());
    }

    #[tokio::test]
    async fn a_malformed_frame_ends_the_session_with_goaway() {
        let (mut session, mut client) = session();
        client.open(1, &[("streamtype", "stdin")]).await;
        let _stream = accept(&mut session).await;
        client.expect_reply(1).await;
        client
            .io
            .write_all(&[0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1])
            .await
            .unwrap();
        assert_eq!(
            client.next().await,
            Some(Frame::GoAway {
                last_good_stream_id: 1,
                status: GOAWAY_PROTOCOL_ERROR
            })
        );
        assert!(session.accept().await.is_none());
    }

    /// The agent moves streams into tasks and may hold them across awaits.
    const _: fn() = || {
        fn shareable<T: Send + Sync>() {}
        shareable::<Session>();
        shareable::<Stream>();
        shareable::<StreamReader>();
        shareable::<StreamWriter>();
    };

    #[tokio::test]
    async fn a_stream_copies_to_and_from_a_socket() {
        let (mut session, mut client) = session();
        client
            .open(1, &[("streamtype", "data"), ("port", "80")])
            .await;
        let mut stream = accept(&mut session).await;
        client.expect_reply(1).await;
        let (mut agent_side, mut pod_side) = tokio::io::duplex(1024);
        let copying = tokio::spawn(async move {
            tokio::io::copy_bidirectional(&mut stream, &mut agent_side).await
        });
        let pod = tokio::spawn(async move {
            let request = read_all(&mut pod_side).await;
            pod_side.write_all(b"pong").await.unwrap();
            pod_side.shutdown().await.unwrap();
            request
        });
        client.data(1, b"ping", true).await;
        assert_eq!(
            client.next().await,
            Some(Frame::Data {
                stream_id: 1,
                flags: 0,
                data: b"pong".to_vec()
            })
        );
        assert_eq!(
            client.next().await,
            Some(Frame::Data {
                stream_id: 1,
                flags: FLAG_FIN,
                data: Vec::new()
            })
        );
        assert_eq!(pod.await.unwrap(), b"ping");
        assert_eq!(copying.await.unwrap().unwrap(), (4, 4));
    }

    #[tokio::test]
    async fn large_writes_are_cut_into_frames() {
        let (mut session, mut client) = session();
        client.open(1, &[("streamtype", "data")]).await;
        let stream = accept(&mut session).await;
        client.expect_reply(1).await;
        let (mut reader, mut writer) = stream.into_split();
        let payload: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let sent = payload.clone();
        let writing = tokio::spawn(async move {
            writer.write_all(&sent).await.unwrap();
            writer.close().await.unwrap();
        });
        let mut received = Vec::new();
        loop {
            match client.next().await {
                Some(Frame::Data {
                    stream_id: 1,
                    flags,
                    data,
                }) => {
                    assert!(data.len() <= MAX_WRITE_CHUNK);
                    received.extend_from_slice(&data);
                    if flags & FLAG_FIN != 0 {
                        break;
                    }
                }
                other => panic!("expected data on stream 1, got {other:?}"),
            }
        }
        writing.await.unwrap();
        assert_eq!(received, payload);

        // The other direction, with a frame far larger than a write chunk.
        client.data(1, &payload, true).await;
        assert_eq!(read_all(&mut reader).await, payload);
    }
}
