//! RESP2, the Redis wire protocol, without I/O: commands encoded straight into the
//! bytes sent, replies parsed out of the bytes received. A reply's strings are slices of
//! the buffer they arrived in (`Bytes`), so reading a hash field allocates nothing.

use std::fmt;

use bytes::{Bytes, BytesMut};

/// One command's arguments, encoded as RESP bulk strings as they are added. `Batch`
/// prefixes the argument count when the command joins a request.
#[derive(Default, Clone)]
pub struct Command {
    encoded: Vec<u8>,
    args: usize,
}

impl Command {
    pub fn new(name: &str) -> Self {
        let mut command = Self::default();
        command.arg(name.as_bytes());
        command
    }

    /// Starts over as a new command `name`, keeping the allocation.
    pub fn restart(&mut self, name: &str) -> &mut Self {
        self.encoded.clear();
        self.args = 0;
        self.arg(name.as_bytes())
    }

    pub fn arg(&mut self, arg: impl AsRef<[u8]>) -> &mut Self {
        let arg = arg.as_ref();
        self.encoded.push(b'$');
        self.encoded
            .extend_from_slice(itoa::Buffer::new().format(arg.len()).as_bytes());
        self.encoded.extend_from_slice(b"\r\n");
        self.encoded.extend_from_slice(arg);
        self.encoded.extend_from_slice(b"\r\n");
        self.args += 1;
        self
    }

    /// Appends the arguments of `other` (built from `Command::default()` to hold
    /// arguments only, encoded once for many commands).
    pub fn args_of(&mut self, other: &Command) -> &mut Self {
        self.encoded.extend_from_slice(&other.encoded);
        self.args += other.args;
        self
    }

    /// Appends the complete command (`*<count>` and its arguments) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.push(b'*');
        out.extend_from_slice(itoa::Buffer::new().format(self.args).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.encoded);
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded.len() + 8);
        self.write_to(&mut out);
        out
    }
}

/// Commands written to a node in one go, and how many replies they will get.
#[derive(Default, Clone)]
pub struct Pipeline {
    bytes: Vec<u8>,
    commands: usize,
    strings_flat: bool,
}

impl Pipeline {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replies that are arrays of bulk strings and nils (HMGET's) are to be parsed as
    /// `Reply::Strings`: one slice of the received bytes per array, not one per item.
    pub fn parse_strings_flat(&mut self) -> &mut Self {
        self.strings_flat = true;
        self
    }

    pub fn strings_flat(&self) -> bool {
        self.strings_flat
    }

    pub fn push(&mut self, command: &Command) -> &mut Self {
        command.write_to(&mut self.bytes);
        self.commands += 1;
        self
    }

    /// Appends one command already encoded by `Command::write_to`.
    pub fn push_encoded(&mut self, command: &[u8]) {
        self.bytes.extend_from_slice(command);
        self.commands += 1;
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn len(&self) -> usize {
        self.commands
    }

    pub fn is_empty(&self) -> bool {
        self.commands == 0
    }
}

/// A RESP2 reply.
#[derive(Clone, PartialEq, Eq)]
pub enum Reply {
    Nil,
    Int(i64),
    Status(Bytes),
    Bulk(Bytes),
    Error(Bytes),
    Array(Vec<Reply>),
    /// An array of bulk strings and nils, for a pipeline that asked for it
    /// (`Pipeline::parse_strings_flat`).
    Strings(Strings),
}

/// An array of bulk strings and nils held as one slice of the bytes received and each
/// item's place in it: reading a field costs neither an allocation nor a reference count.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Strings {
    bytes: Bytes,
    /// `(offset, length)` in `bytes`; `None` for a nil.
    items: Vec<Option<(u32, u32)>>,
}

impl Strings {
    /// Strings holding copies of `items`, in one allocation.
    pub fn from_items<'a>(items: impl IntoIterator<Item = Option<&'a [u8]>>) -> Self {
        let mut bytes = Vec::new();
        let items = items
            .into_iter()
            .map(|item| {
                item.map(|item| {
                    bytes.extend_from_slice(item);
                    ((bytes.len() - item.len()) as u32, item.len() as u32)
                })
            })
            .collect();
        Self {
            bytes: bytes.into(),
            items,
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Item `index`; `None` for a nil (or past the end).
    pub fn get(&self, index: usize) -> Option<&[u8]> {
        let (offset, len) = (*self.items.get(index)?)?;
        Some(&self.bytes[offset as usize..(offset + len) as usize])
    }

    /// The last item; `None` for a nil (or no items).
    pub fn last(&self) -> Option<&[u8]> {
        self.get(self.len().checked_sub(1)?)
    }

    pub fn iter(&self) -> impl Iterator<Item = Option<&[u8]>> {
        (0..self.len()).map(|index| self.get(index))
    }

    /// Keeps the first `len` items.
    pub fn truncate(&mut self, len: usize) {
        self.items.truncate(len);
    }
}

impl fmt::Debug for Strings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|item| item.map(String::from_utf8_lossy)))
            .finish()
    }
}

impl Reply {
    /// A server error's text (`MOVED 3999 127.0.0.1:6381`), when this is one.
    pub fn error(&self) -> Option<&str> {
        match self {
            Self::Error(text) => Some(std::str::from_utf8(text).unwrap_or("(not UTF-8)")),
            _ => None,
        }
    }

    /// The error's code: its first word (`MOVED`, `WRONGPASS`, `ERR`).
    pub fn error_code(&self) -> Option<&str> {
        self.error()
            .map(|text| text.split_once(' ').map_or(text, |(code, _)| code))
    }

    /// A bulk or status string's bytes.
    pub fn text(&self) -> Option<&[u8]> {
        match self {
            Self::Bulk(bytes) | Self::Status(bytes) => Some(bytes),
            _ => None,
        }
    }

    /// An integer, or a string holding one (`CLUSTER SLOTS` and `SCAN` use both).
    pub fn integer(&self) -> Option<i64> {
        match self {
            Self::Int(n) => Some(*n),
            other => std::str::from_utf8(other.text()?).ok()?.parse().ok(),
        }
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Nil => write!(f, "nil"),
            Self::Int(n) => write!(f, "{n}"),
            Self::Status(text) => write!(f, "+{}", String::from_utf8_lossy(text)),
            Self::Bulk(bytes) => write!(f, "{:?}", String::from_utf8_lossy(bytes)),
            Self::Error(text) => write!(f, "-{}", String::from_utf8_lossy(text)),
            Self::Array(items) => f.debug_list().entries(items).finish(),
            Self::Strings(strings) => strings.fmt(f),
        }
    }
}

/// Bytes that are not RESP2: the connection cannot be trusted afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Deeper nesting than any reply this client asks for: refused rather than recursed.
const MAX_DEPTH: usize = 8;

/// Redis' own limit on a bulk string (`proto-max-bulk-len`, 512 MB by default): a longer
/// announcement is not a Redis reply, and is refused before anything is buffered for it.
const MAX_BULK_LEN: i64 = 512 * 1024 * 1024;

fn number(line: &[u8]) -> Result<i64, ProtocolError> {
    let bad = || ProtocolError(format!("not a number: {:?}", String::from_utf8_lossy(line)));
    let (negative, digits) = match line.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, line),
    };
    if digits.is_empty() || digits.len() > 18 {
        return Err(bad());
    }
    let mut value: i64 = 0;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return Err(bad());
        }
        value = value * 10 + i64::from(digit - b'0');
    }
    Ok(if negative { -value } else { value })
}

/// The header line at `start` (its kind byte, its text and where the next line starts),
/// or `None` while it is still to come.
fn header(bytes: &[u8], start: usize) -> Option<(u8, &[u8], usize)> {
    let &kind = bytes.get(start)?;
    // Header lines are short: a plain scan beats a vectorized search here.
    let end = bytes[start + 1..].iter().position(|&b| b == b'\r')? + start + 1;
    let after_line = end + 2;
    (bytes.len() >= after_line).then(|| (kind, &bytes[start + 1..end], after_line))
}

/// A bulk string's length, refused past Redis' limit; negative for a nil.
fn bulk_len(line: &[u8]) -> Result<i64, ProtocolError> {
    match number(line)? {
        len if len > MAX_BULK_LEN => Err(ProtocolError(format!(
            "a bulk string of {len} bytes, over Redis' 512 MB limit"
        ))),
        len => Ok(len),
    }
}

/// Where a bulk string of `len` bytes starting at `start` ends (after its CRLF), or
/// `None` while bytes of it are still to come.
fn bulk_end(bytes: &[u8], start: usize, len: usize) -> Result<Option<usize>, ProtocolError> {
    let stop = start + len;
    if bytes.len() < stop + 2 {
        return Ok(None);
    }
    if &bytes[stop..stop + 2] != b"\r\n" {
        return Err(ProtocolError("a bulk string longer than announced".into()));
    }
    Ok(Some(stop + 2))
}

enum Flat {
    Strings(Strings),
    /// An item that is not a bulk string or nil: the array is parsed as `Reply::Array`.
    Other,
    Incomplete,
}

/// The `count` items from `*at` as `Strings`, moving `*at` past them.
fn parse_strings(bytes: &Bytes, at: &mut usize, count: usize) -> Result<Flat, ProtocolError> {
    let first = *at;
    let mut items = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let Some((kind, line, after_line)) = header(bytes, *at) else {
            *at = bytes.len() + 1;
            return Ok(Flat::Incomplete);
        };
        if kind != b'$' {
            return Ok(Flat::Other);
        }
        let len = bulk_len(line)?;
        if len < 0 {
            items.push(None);
            *at = after_line;
            continue;
        }
        let Some(end) = bulk_end(bytes, after_line, len as usize)? else {
            *at = after_line + len as usize + 2;
            return Ok(Flat::Incomplete);
        };
        let Ok(offset) = u32::try_from(after_line - first) else {
            return Ok(Flat::Other); // Over 4 GB: items as bulk strings of their own.
        };
        items.push(Some((offset, len as u32)));
        *at = end;
    }
    Ok(Flat::Strings(Strings {
        bytes: bytes.slice(first..*at),
        items,
    }))
}

/// Parses the reply at `*at` in one pass, moving `*at` past it; `None` while bytes of it
/// are still to come, with `*at` at the least length `bytes` must reach before the reply
/// can be parsed further. With `strings_flat`, an array of bulk strings and nils is a
/// `Reply::Strings`.
fn parse(
    bytes: &Bytes,
    at: &mut usize,
    depth: usize,
    strings_flat: bool,
) -> Result<Option<Reply>, ProtocolError> {
    let start = *at;
    let Some((kind, line, after_line)) = header(bytes, start) else {
        *at = bytes.len() + 1;
        return Ok(None);
    };
    *at = after_line;
    let reply = match kind {
        b'$' => match bulk_len(line)? {
            len if len < 0 => Reply::Nil,
            len => match bulk_end(bytes, after_line, len as usize)? {
                Some(end) => {
                    *at = end;
                    Reply::Bulk(bytes.slice(after_line..end - 2))
                }
                None => {
                    *at = after_line + len as usize + 2;
                    return Ok(None);
                }
            },
        },
        b'*' => match number(line)? {
            count if count < 0 => Reply::Nil,
            _ if depth >= MAX_DEPTH => return Err(ProtocolError("a reply nested too deeply".into())),
            count => {
                if strings_flat {
                    match parse_strings(bytes, at, count as usize)? {
                        Flat::Strings(strings) => return Ok(Some(Reply::Strings(strings))),
                        Flat::Incomplete => return Ok(None),
                        Flat::Other => *at = after_line,
                    }
                }
                let mut items = Vec::with_capacity((count as usize).min(1024));
                for _ in 0..count {
                    match parse(bytes, at, depth + 1, false)? {
                        Some(item) => items.push(item),
                        None => return Ok(None),
                    }
                }
                Reply::Array(items)
            }
        },
        b':' => Reply::Int(number(line)?),
        b'+' => Reply::Status(bytes.slice(start + 1..after_line - 2)),
        b'-' => Reply::Error(bytes.slice(start + 1..after_line - 2)),
        other => {
            return Err(ProtocolError(format!(
                "a reply starting with byte {other:#04x}, which RESP2 does not have"
            )))
        }
    };
    Ok(Some(reply))
}

/// Takes every complete reply at the front of `buf`, at most `limit` of them, into `out`
/// (with `strings_flat`, arrays of bulk strings and nils as `Reply::Strings`). Bytes of
/// an incomplete reply stay in `buf` for the next read. Returns the length `buf` must
/// reach before another call can take a reply: a long bulk string is parsed (and its
/// bytes moved) once it is all in, not again at every read.
pub fn parse_replies(
    buf: &mut BytesMut,
    limit: usize,
    strings_flat: bool,
    out: &mut Vec<Reply>,
) -> Result<usize, ProtocolError> {
    if buf.is_empty() || limit == 0 {
        return Ok(buf.len() + 1);
    }
    let bytes = buf.split().freeze();
    let mut at = 0;
    let needed = parse_from(&bytes, &mut at, limit, strings_flat, out)?;
    buf.extend_from_slice(&bytes[at..]);
    Ok(needed)
}

/// `parse_replies` on bytes already taken from the read buffer, from `*at` (moved past
/// the replies taken): the replies of several requests are parsed from one read
/// without moving the bytes between them. Returns the length the bytes from `*at` must
/// reach before the next reply can be taken (0 once `limit` were).
pub fn parse_from(
    bytes: &Bytes,
    at: &mut usize,
    limit: usize,
    strings_flat: bool,
    out: &mut Vec<Reply>,
) -> Result<usize, ProtocolError> {
    for _ in 0..limit {
        let mut end = *at;
        match parse(bytes, &mut end, 0, strings_flat)? {
            Some(reply) => {
                out.push(reply);
                *at = end;
            }
            None => return Ok(end - *at),
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_all(bytes: &[u8]) -> Vec<Reply> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        parse_replies(&mut buf, usize::MAX, false, &mut out).unwrap();
        assert!(buf.is_empty(), "left: {buf:?}");
        out
    }

    fn bulk(text: &str) -> Reply {
        Reply::Bulk(Bytes::copy_from_slice(text.as_bytes()))
    }

    /// The replies parsed from `wire` arriving cut at `cuts` (ending with its length),
    /// and the bytes left unparsed.
    fn parse_in_pieces(wire: &[u8], cuts: &[usize], strings_flat: bool) -> (Vec<Reply>, BytesMut) {
        let (mut buf, mut out, mut from) = (BytesMut::new(), Vec::new(), 0);
        for &cut in cuts {
            buf.extend_from_slice(&wire[from..cut]);
            from = cut;
            parse_replies(&mut buf, usize::MAX, strings_flat, &mut out).unwrap();
        }
        (out, buf)
    }

    #[test]
    fn a_long_bulk_string_is_parsed_once_all_of_it_is_in() {
        let mut out = Vec::new();
        let reply = b"$10\r\n0123456789\r\n";
        let mut buf = BytesMut::from(&reply[..7]);
        assert_eq!(parse_replies(&mut buf, 1, false, &mut out).unwrap(), reply.len());
        assert_eq!((out.len(), buf.len()), (0, 7));
        buf.extend_from_slice(&reply[7..]);
        assert_eq!(parse_replies(&mut buf, 1, false, &mut out).unwrap(), 0);
        assert_eq!(out, [bulk("0123456789")]);

        // In a flat array, after a complete reply; and a header still to come.
        let replies = b":1\r\n*2\r\n$1\r\na\r\n$10\r\n0123456789\r\n";
        let mut buf = BytesMut::from(&replies[..20]);
        assert_eq!(
            parse_replies(&mut buf, 2, true, &mut out).unwrap(),
            replies.len() - 4
        );
        let mut buf = BytesMut::from(&replies[..11]);
        assert_eq!(parse_replies(&mut buf, 2, true, &mut out).unwrap(), 11 - 4 + 1);
    }

    #[test]
    fn commands_are_encoded_as_arrays_of_bulk_strings() {
        let mut command = Command::new("HMGET");
        command.arg(b"k\r\n").arg("f");
        assert_eq!(
            command.to_bytes(),
            b"*3\r\n$5\r\nHMGET\r\n$3\r\nk\r\n\r\n$1\r\nf\r\n"
        );
    }

    #[test]
    fn every_reply_kind_is_parsed() {
        let replies =
            parse_all(b"+OK\r\n-ERR no\r\n:-42\r\n$3\r\na\r\n\r\n$-1\r\n*-1\r\n*2\r\n$0\r\n\r\n*1\r\n:1\r\n");
        assert_eq!(
            replies,
            vec![
                Reply::Status(Bytes::from_static(b"OK")),
                Reply::Error(Bytes::from_static(b"ERR no")),
                Reply::Int(-42),
                bulk("a\r\n"),
                Reply::Nil,
                Reply::Nil,
                Reply::Array(vec![bulk(""), Reply::Array(vec![Reply::Int(1)])]),
            ]
        );
        assert_eq!(replies[1].error_code(), Some("ERR"));
    }

    #[test]
    fn a_reply_split_anywhere_is_parsed_once_complete() {
        let wire: &[u8] = b"*3\r\n$2\r\nab\r\n$-1\r\n$4\r\nwxyz\r\n:7\r\n";
        for split in 0..wire.len() {
            let mut buf = BytesMut::from(&wire[..split]);
            let mut out = Vec::new();
            parse_replies(&mut buf, usize::MAX, false, &mut out).unwrap();
            let complete = out.len();
            buf.extend_from_slice(&wire[split..]);
            parse_replies(&mut buf, usize::MAX, false, &mut out).unwrap();
            assert_eq!(out.len(), 2, "split at {split} ({complete} complete before)");
            assert_eq!(out[0], Reply::Array(vec![bulk("ab"), Reply::Nil, bulk("wxyz")]));
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn the_limit_leaves_later_replies_in_the_buffer() {
        let mut buf = BytesMut::from(&b":1\r\n:2\r\n:3\r\n"[..]);
        let mut out = Vec::new();
        parse_replies(&mut buf, 2, false, &mut out).unwrap();
        assert_eq!(out, vec![Reply::Int(1), Reply::Int(2)]);
        assert_eq!(&buf[..], b":3\r\n");
    }

    fn encode(reply: &Reply, out: &mut Vec<u8>) {
        match reply {
            Reply::Nil => out.extend_from_slice(b"$-1\r\n"),
            Reply::Int(n) => out.extend_from_slice(format!(":{n}\r\n").as_bytes()),
            Reply::Status(text) => out.extend_from_slice(&[b"+", &text[..], b"\r\n"].concat()),
            Reply::Error(text) => out.extend_from_slice(&[b"-", &text[..], b"\r\n"].concat()),
            Reply::Bulk(bytes) => {
                out.extend_from_slice(format!("${}\r\n", bytes.len()).as_bytes());
                out.extend_from_slice(bytes);
                out.extend_from_slice(b"\r\n");
            }
            Reply::Array(items) => {
                out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
                items.iter().for_each(|item| encode(item, out));
            }
            Reply::Strings(strings) => encode(&array_of(strings), out),
        }
    }

    /// `strings` as the `Reply::Array` parsed without `strings_flat`.
    fn array_of(strings: &Strings) -> Reply {
        let item = |item: Option<&[u8]>| item.map_or(Reply::Nil, |b| Reply::Bulk(Bytes::copy_from_slice(b)));
        Reply::Array(strings.iter().map(item).collect())
    }

    fn any_reply() -> impl Strategy<Value = Reply> {
        let line = "[a-zA-Z0-9 :.-]{0,16}".prop_map(|t| Bytes::from(t.into_bytes()));
        let leaf = prop_oneof![
            Just(Reply::Nil),
            (-(10i64.pow(17))..10i64.pow(17)).prop_map(Reply::Int),
            line.clone().prop_map(Reply::Status),
            line.prop_map(Reply::Error),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| Reply::Bulk(Bytes::from(b))),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            proptest::collection::vec(inner, 0..6).prop_map(Reply::Array)
        })
    }

    // More cases: PROPTEST_CASES=1000000 cargo test --no-default-features resp
    proptest! {
        #[test]
        fn replies_survive_the_wire_split_anywhere(
            replies in proptest::collection::vec(any_reply(), 1..5),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
        ) {
            let mut wire = Vec::new();
            replies.iter().for_each(|reply| encode(reply, &mut wire));
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
            cuts.sort_unstable();
            cuts.push(wire.len());
            let (out, left) = parse_in_pieces(&wire, &cuts, false);
            prop_assert!(left.is_empty());
            prop_assert_eq!(&out, &replies);

            // Flat: the same replies, with arrays of bulk strings and nils as `Strings`.
            let (flat, left) = parse_in_pieces(&wire, &cuts, true);
            prop_assert!(left.is_empty());
            prop_assert_eq!(flat.len(), replies.len());
            for (flat, reply) in flat.iter().zip(&replies) {
                let plain = |items: &[Reply]| items.iter().all(|i| matches!(i, Reply::Bulk(_) | Reply::Nil));
                match (flat, reply) {
                    (Reply::Strings(strings), Reply::Array(items)) => {
                        prop_assert!(plain(items));
                        prop_assert_eq!(&array_of(strings), reply);
                    }
                    (Reply::Array(_), Reply::Array(items)) => {
                        prop_assert!(!plain(items));
                        prop_assert_eq!(flat, reply);
                    }
                    _ => prop_assert_eq!(flat, reply),
                }
            }
        }

        #[test]
        fn any_bytes_are_parsed_or_refused_never_a_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
            prefix in prop_oneof![Just(&b""[..]), Just(&b"*"[..]), Just(&b"$"[..]), Just(&b"*2\r\n$"[..])],
        ) {
            let mut buf = BytesMut::from([prefix, &bytes[..]].concat().as_slice());
            let mut out = Vec::new();
            let _ = parse_replies(&mut buf, usize::MAX, false, &mut out);
            let mut buf = BytesMut::from([prefix, &bytes[..]].concat().as_slice());
            let _ = parse_replies(&mut buf, usize::MAX, true, &mut out);
        }
    }

    #[test]
    fn bytes_that_are_not_resp_are_an_error() {
        for wire in [&b"?x\r\n"[..], b"$x\r\n", b"$1\r\nab\r\n", b"*1\r\n!\r\n"] {
            let mut buf = BytesMut::from(wire);
            assert!(
                parse_replies(&mut buf, usize::MAX, false, &mut Vec::new()).is_err(),
                "{wire:?}"
            );
        }
        let deep = "*1\r\n".repeat(MAX_DEPTH + 1) + ":1\r\n";
        assert!(number(b"12345678901234567890").is_err() && number(b"-").is_err());
        let mut huge = BytesMut::from(&b"$99999999999\r\n"[..]);
        assert!(parse_replies(&mut huge, 1, false, &mut Vec::new()).is_err());
        assert_eq!(number(b"-12").unwrap(), -12);
        let mut buf = BytesMut::from(deep.as_bytes());
        assert!(parse_replies(&mut buf, 1, false, &mut Vec::new()).is_err());
    }
}
