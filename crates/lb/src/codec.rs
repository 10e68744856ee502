//! HTTP/1.1 message heads and body framing, as the proxy needs them. No I/O.
//!
//! Heads are parsed with `httparse` and the forwarded head is written straight into a reused
//! buffer: the request with its hop-by-hop headers dropped and `X-Forwarded-*` set, the response
//! with the framing and `Connection` headers this hop needs. Bodies are not decoded, only
//! followed ([`BodyReader`]) so the proxy knows where each one ends and can copy its bytes
//! through as they are; the one exception is a chunked response to an HTTP/1.0 client, which
//! cannot read chunks and gets the data alone, ended by the close of the connection.
//!
//! A protocol upgrade (WebSocket) is the one hop-by-hop exchange forwarded: an HTTP/1.1 request
//! whose `Connection` names `upgrade` keeps its `Upgrade` header and is sent with
//! `Connection: upgrade`, and a `101 Switching Protocols` answer to it goes to the client the
//! same way. After that the connection is no longer HTTP (see `http`).
//!
//! Since bytes are forwarded as they came, what this codec lets through a backend must read the
//! same way. So a request that lenient servers read differently is refused with 400 rather than
//! passed on: both Content-Length and Transfer-Encoding, a chunk size or trailer line off the
//! grammar, a header the proxy reads or sets spelled with `_` for `-`, and a `Connection` header
//! naming what the request is routed or framed by (see `Fields::refusal` for the last two).

use std::ops::Range;

/// The longest request or response head accepted. Larger requests get a 431.
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// Header fields per head, as hyper allows.
pub(crate) const MAX_HEADERS: usize = 100;

/// A request the proxy answers itself: status and the sentence saying what was wrong.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Reject {
    pub status: u16,
    pub reason: String,
}

impl Reject {
    fn bad(reason: impl Into<String>) -> Self {
        Reject { status: 400, reason: reason.into() }
    }
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body at all.
    Empty,
    Length(u64),
    Chunked,
    /// Until the sender closes the connection (responses only).
    Close,
}

/// What the proxy needs to know of a client's request once its head has been parsed. Ranges
/// index the client connection's read buffer, which keeps the head until the request is done.
#[derive(Debug)]
pub(crate) struct RequestHead {
    pub head_len: usize,
    pub method: Range<usize>,
    /// The Host header, or the authority of an absolute-form target.
    pub host: Option<Range<usize>>,
    /// The target's path, without query, for routing.
    pub path: Range<usize>,
    pub framing: Framing,
    pub http10: bool,
    /// The client wants the connection kept open after the response.
    pub keep_alive: bool,
    /// `HEAD`: the response has no body, whatever its headers say.
    pub head_method: bool,
    /// May be sent again after the backend may have seen it (RFC 9110 §9.2.2).
    pub idempotent: bool,
    /// `Expect: 100-continue` with a body: the client waits for a `100 Continue` first.
    pub expect_continue: bool,
    /// No Host header: the backend's address is sent as Host.
    pub needs_host: bool,
    /// HTTP/1.1 with an `Upgrade` header named in `Connection`: forwarded as an upgrade, and a
    /// `101` answer turns the connection into a tunnel.
    pub upgrade: bool,
}

/// What the proxy needs to know of a backend's response head.
#[derive(Debug)]
pub(crate) struct ResponseHead {
    pub head_len: usize,
    /// 1xx other than 101: an interim response, followed by the final one.
    pub interim: bool,
    /// `101 Switching Protocols` to an upgrade request: the connection is a tunnel from here.
    pub switching: bool,
    /// The body as the backend sends it.
    pub framing: Framing,
    /// The backend connection may take another request after this response.
    pub reusable: bool,
}

/// How the response goes to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientFraming {
    /// Chunked from the backend, but the client speaks HTTP/1.0: send the data only.
    pub dechunk: bool,
    /// The client connection stays open after this response.
    pub keep_alive: bool,
}

/// Header fields the proxy treats specially.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    /// Connection-level (RFC 9110 §7.6.1): describes one hop, never forwarded.
    HopByHop,
    Connection,
    /// Hop-by-hop, but forwarded on an upgrade request and its 101 answer.
    Upgrade,
    TransferEncoding,
    ContentLength,
    Host,
    Expect,
    ForwardedFor,
    /// X-Forwarded-Host and X-Forwarded-Proto: replaced by the proxy's own.
    ForwardedOther,
}

// Inlined into `Fields::scan`, which calls it for every header; `underscored` rarely does.
#[inline(always)]
fn kind(name: &str) -> Kind {
    let is = |n: &str| name.eq_ignore_ascii_case(n);
    // By length first: nearly every name is then rejected by one integer comparison.
    match name.len() {
        2 if is("te") => Kind::HopByHop,
        4 if is("host") => Kind::Host,
        6 if is("expect") => Kind::Expect,
        7 if is("trailer") => Kind::HopByHop,
        7 if is("upgrade") => Kind::Upgrade,
        10 if is("connection") => Kind::Connection,
        10 if is("keep-alive") => Kind::HopByHop,
        14 if is("content-length") => Kind::ContentLength,
        15 if is("x-forwarded-for") => Kind::ForwardedFor,
        16 if is("proxy-connection") => Kind::HopByHop,
        16 if is("x-forwarded-host") => Kind::ForwardedOther,
        17 if is("transfer-encoding") => Kind::TransferEncoding,
        17 if is("x-forwarded-proto") => Kind::ForwardedOther,
        18 if is("proxy-authenticate") => Kind::HopByHop,
        19 if is("proxy-authorization") => Kind::HopByHop,
        _ => Kind::Plain,
    }
}

/// True for a name that is one [`kind`] knows, spelled with `_` for `-` (see
/// `Fields::underscored`). It is looked for in ordinary names only, so a name must first be as
/// long as one of those with a `-`, and have a `_` where that one has its `-`: the common headers
/// cost a few byte tests, not a scan.
fn underscored(name: &str) -> bool {
    const LONGEST: usize = "proxy-authorization".len();
    const DASHES: [usize; 6] = [1, 4, 5, 7, 8, 11];
    let b = name.as_bytes();
    if !matches!(b.len(), 10 | 14..=LONGEST) || !DASHES.iter().any(|&i| b.get(i) == Some(&b'_')) {
        return false;
    }
    let mut dashed = [0u8; LONGEST];
    for (d, b) in dashed.iter_mut().zip(name.bytes()) {
        *d = if b == b'_' { b'-' } else { b };
    }
    std::str::from_utf8(&dashed[..name.len()]).is_ok_and(|n| kind(n) != Kind::Plain)
}

/// The comma-separated tokens of a header value, trimmed, empty ones skipped.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|b| *b == b',').map(|t| t.trim_ascii()).filter(|t| !t.is_empty())
}

fn has_token(value: &[u8], token: &str) -> bool {
    tokens(value).any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
}

/// What a message's Connection, Transfer-Encoding and Content-Length headers say.
#[derive(Default)]
struct Fields<'b> {
    /// Header names listed in Connection: hop-by-hop for this message.
    listed: Vec<&'b [u8]>,
    close: bool,
    keep_alive: bool,
    /// Connection names `upgrade`, and an Upgrade header is present.
    upgrade_token: bool,
    upgrade_header: bool,
    /// Transfer-Encoding present; `chunked` when its last coding is chunked.
    te: bool,
    chunked: bool,
    length: Option<u64>,
    conflicting_lengths: bool,
    /// The first name the proxy reads or sets, spelled with `_` for `-` (`Transfer_Encoding`).
    /// Such a header is an ordinary one to the proxy; a request with it is refused, because servers
    /// that read `_` as `-` (CGI's `HTTP_*` variables, and frameworks built on them) would take
    /// it for the framing or forwarding header the proxy did not see: `Transfer_Encoding` next
    /// to a `Content-Length` splits one request into two, `X_Forwarded_For` shadows the
    /// proxy's own. nginx drops every name with `_` by default and Apache drops them before
    /// CGI; refusing only these keeps the others, which RFC 9110 allows and applications use,
    /// and tells the client why instead of changing its request behind its back.
    underscored: Option<&'b str>,
}

impl<'b> Fields<'b> {
    fn scan(headers: &[httparse::Header<'b>], kinds: &mut [Kind]) -> Self {
        let mut f = Fields::default();
        for (h, k) in headers.iter().zip(kinds.iter_mut()) {
            *k = kind(h.name);
            match *k {
                Kind::Connection => {
                    for t in tokens(h.value) {
                        if t.eq_ignore_ascii_case(b"close") {
                            f.close = true;
                        } else if t.eq_ignore_ascii_case(b"keep-alive") {
                            f.keep_alive = true;
                        } else if t.eq_ignore_ascii_case(b"upgrade") {
                            f.upgrade_token = true;
                        } else {
                            f.listed.push(t);
                        }
                    }
                }
                Kind::TransferEncoding => {
                    f.te = true;
                    // Only the last coding decides; a later header field continues the list.
                    if let Some(last) = tokens(h.value).last() {
                        f.chunked = last.eq_ignore_ascii_case(b"chunked");
                    }
                }
                Kind::Upgrade => f.upgrade_header = true,
                Kind::Plain if f.underscored.is_none() && underscored(h.name) => f.underscored = Some(h.name),
                Kind::ContentLength => match parse_length(h.value) {
                    Some(n) if f.length.is_none_or(|l| l == n) => f.length = Some(n),
                    _ => f.conflicting_lengths = true,
                },
                _ => {}
            }
        }
        f
    }

    fn upgrade(&self) -> bool {
        self.upgrade_token && self.upgrade_header
    }

    /// Why the request cannot be forwarded as these fields say, if it cannot.
    fn refusal(&self) -> Option<Reject> {
        if let Some(name) = self.underscored {
            let dashed = name.replace('_', "-");
            return Some(Reject::bad(format!(
                "the header name {name} is {dashed} with `_` for `-`; servers that read `_` as `-` would act on a {dashed} this proxy did not check, so it is refused: send it as {dashed}"
            )));
        }
        // Connection makes the headers it names this hop's, to be removed before forwarding.
        // Removing Host, Content-Length or Transfer-Encoding would send a request routed or
        // framed differently from the one this proxy read, so such a request is refused.
        let framing =
            self.listed.iter().find_map(|t| ["Host", "Content-Length", "Transfer-Encoding"].into_iter().find(|n| t.eq_ignore_ascii_case(n.as_bytes())));
        framing.map(|name| {
            Reject::bad(format!(
                "the request's Connection header names {name}, which the request is routed or framed by and so cannot be removed; take {name} out of Connection"
            ))
        })
    }

    /// True for a header this hop must not forward because the Connection header names it.
    fn is_listed(&self, name: &str) -> bool {
        !self.listed.is_empty() && self.listed.iter().any(|l| l.eq_ignore_ascii_case(name.as_bytes()))
    }
}

fn parse_length(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

fn offset(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - buf.as_ptr() as usize;
    start..start + part.len()
}

fn put_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn put_length(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(b"content-length: ");
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
}

/// Parses the request head at the start of `buf` and writes the head to forward into `out`
/// (cleared first), without Host when the request had none and without the blank line that
/// ends it: those depend on the backend (see [`finish_request_head`]). `Ok(None)`: the head is
/// not complete yet.
pub(crate) fn parse_request(buf: &[u8], peer_ip: &[u8], out: &mut Vec<u8>) -> Result<Option<RequestHead>, Reject> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => return Err(too_large()),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Reject { status: 431, reason: format!("the request has more than {MAX_HEADERS} header fields; send fewer") })
        }
        Err(err) => return Err(Reject::bad(format!("the request head is not valid HTTP/1.1 ({err})"))),
    };
    if head_len > MAX_HEAD {
        return Err(too_large());
    }
    let method = req.method.unwrap_or_default();
    let target = req.path.unwrap_or_default();
    let http10 = req.version == Some(0);
    if method == "CONNECT" {
        return Err(Reject { status: 405, reason: "CONNECT is not supported: this is a reverse proxy, not a forward proxy".into() });
    }
    let headers = req.headers;
    let mut kinds = [Kind::Plain; MAX_HEADERS];
    let fields = Fields::scan(headers, &mut kinds);
    if let Some(reject) = fields.refusal() {
        return Err(reject);
    }

    let framing = match (fields.te, fields.length) {
        (true, Some(_)) => return Err(Reject::bad("the request has both Transfer-Encoding and Content-Length; send one")),
        (true, None) if http10 => return Err(Reject::bad("Transfer-Encoding is not allowed in an HTTP/1.0 request")),
        (true, None) if !fields.chunked => return Err(Reject::bad("the request's Transfer-Encoding does not end with chunked, so its length is unknown")),
        (true, None) => Framing::Chunked,
        _ if fields.conflicting_lengths => return Err(Reject::bad("the request's Content-Length is not a single decimal number")),
        (false, Some(0) | None) => Framing::Empty,
        (false, Some(n)) => Framing::Length(n),
    };

    let mut host = None;
    for (h, k) in headers.iter().zip(&kinds) {
        if *k == Kind::Host {
            if host.is_some() {
                return Err(Reject::bad("the request has more than one Host header"));
            }
            host = Some(h.value);
        }
    }
    // Backends get the origin form (`/path?query`), whatever form the client used.
    let (origin, authority) = split_target(target);
    let host = host.or(authority).filter(|h| !h.is_empty());
    let path = origin.split('?').next().unwrap_or_default();

    out.clear();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(if origin.is_empty() { b"/" } else { origin.as_bytes() });
    out.extend_from_slice(b" HTTP/1.1\r\n");
    // HTTP/1.0 has no upgrade: its Upgrade header is dropped like any hop-by-hop one.
    let upgrade = !http10 && fields.upgrade();
    let mut expect_continue = false;
    for (h, k) in headers.iter().zip(&kinds) {
        match k {
            Kind::Plain | Kind::Host if !fields.is_listed(h.name) => put_header(out, h.name.as_bytes(), h.value),
            Kind::Upgrade if upgrade => put_header(out, h.name.as_bytes(), h.value),
            Kind::Expect => expect_continue |= has_token(h.value, "100-continue"),
            _ => {}
        }
    }
    if upgrade {
        out.extend_from_slice(b"connection: upgrade\r\n");
    }
    match framing {
        Framing::Length(n) => put_length(out, n),
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::Empty | Framing::Close => {}
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    for (h, k) in headers.iter().zip(&kinds) {
        let v = h.value.trim_ascii();
        if *k == Kind::ForwardedFor && !v.is_empty() && !fields.is_listed(h.name) {
            out.extend_from_slice(v);
            out.extend_from_slice(b", ");
        }
    }
    out.extend_from_slice(peer_ip);
    out.extend_from_slice(b"\r\n");
    if let Some(h) = host {
        put_header(out, b"x-forwarded-host", h);
    }
    out.extend_from_slice(b"x-forwarded-proto: http\r\n");

    // An upgrade is never sent twice: a backend that saw it may have started a session.
    let idempotent = !upgrade && matches!(method, "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE");
    Ok(Some(RequestHead {
        head_len,
        method: offset(buf, method.as_bytes()),
        needs_host: !kinds[..headers.len()].contains(&Kind::Host),
        host: host.map(|h| offset(buf, h)),
        path: offset(buf, path.as_bytes()),
        framing,
        http10,
        keep_alive: if http10 { fields.keep_alive && !fields.close } else { !fields.close },
        head_method: method == "HEAD",
        idempotent,
        expect_continue: expect_continue && framing != Framing::Empty,
        upgrade,
    }))
}

fn too_large() -> Reject {
    Reject { status: 431, reason: format!("the request head is larger than {MAX_HEAD} bytes; send smaller headers") }
}

/// `(origin form, authority)` of a request target: `/a?b` stays, `http://h:1/a?b` becomes
/// `/a?b` with authority `h:1`.
fn split_target(target: &str) -> (&str, Option<&[u8]>) {
    let Some((scheme, rest)) = target.split_once("://") else {
        return (target, None);
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return (target, None);
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..end];
    // Userinfo is not part of the host.
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    (&rest[end..], Some(authority.as_bytes()))
}

/// Ends the forwarded request head written by [`parse_request`] for one backend.
pub(crate) fn finish_request_head(out: &mut Vec<u8>, host_line: Option<&[u8]>) {
    if let Some(line) = host_line {
        out.extend_from_slice(line);
    }
    out.extend_from_slice(b"\r\n");
}

/// Parses the response head at the start of `buf` and writes the head for the client into
/// `out` (cleared first). `Ok(None)`: not complete yet. The error says what was wrong with it.
pub(crate) fn parse_response(buf: &[u8], req: &RequestHead, draining: bool, out: &mut Vec<u8>) -> Result<Option<(ResponseHead, ClientFraming)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= MAX_HEAD => n,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Ok(None),
        Ok(_) => return Err(format!("its response head is larger than {MAX_HEAD} bytes")),
        Err(err) => return Err(format!("its response is not valid HTTP/1.1 ({err})")),
    };
    let code = resp.code.unwrap_or_default();
    let http10 = resp.version == Some(0);
    let headers = resp.headers;
    let mut kinds = [Kind::Plain; MAX_HEADERS];
    let fields = Fields::scan(headers, &mut kinds);
    let switching = code == 101;
    if switching && !req.upgrade {
        return Err("it switched protocols, which the request did not ask for".into());
    }
    let interim = (100..200).contains(&code) && !switching;
    let framing = if interim || switching || req.head_method || code == 204 || code == 304 {
        Framing::Empty
    } else if fields.te {
        if fields.chunked {
            Framing::Chunked
        } else {
            Framing::Close
        }
    } else if fields.conflicting_lengths {
        return Err("its response's Content-Length is not a single decimal number".into());
    } else {
        match fields.length {
            Some(n) => Framing::Length(n),
            None => Framing::Close,
        }
    };
    let reusable = !switching && framing != Framing::Close && !fields.close && (!http10 || fields.keep_alive);
    let head = ResponseHead { head_len, interim, switching, framing, reusable };
    let client = ClientFraming {
        dechunk: framing == Framing::Chunked && req.http10,
        keep_alive: req.keep_alive && !draining && framing != Framing::Close && !(framing == Framing::Chunked && req.http10),
    };
    if interim {
        return Ok(Some((head, client)));
    }

    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    let status = [b'0' + (code / 100 % 10) as u8, b'0' + (code / 10 % 10) as u8, b'0' + (code % 10) as u8];
    out.extend_from_slice(&status);
    out.push(b' ');
    out.extend_from_slice(resp.reason.unwrap_or_default().as_bytes());
    out.extend_from_slice(b"\r\n");
    for (h, k) in headers.iter().zip(&kinds) {
        let keep = match k {
            Kind::Plain | Kind::Host | Kind::Expect | Kind::ForwardedFor | Kind::ForwardedOther => !fields.is_listed(h.name),
            // A body-less response keeps its length: for HEAD it is the length a GET would get.
            Kind::ContentLength => framing == Framing::Empty && !fields.te && !switching,
            // A coding other than chunked is part of a body relayed as it is.
            Kind::TransferEncoding => framing == Framing::Close,
            Kind::Upgrade => switching,
            Kind::HopByHop | Kind::Connection => false,
        };
        if keep {
            put_header(out, h.name.as_bytes(), h.value);
        }
    }
    if switching {
        out.extend_from_slice(b"connection: upgrade\r\n\r\n");
        return Ok(Some((head, client)));
    }
    match framing {
        Framing::Length(n) => put_length(out, n),
        Framing::Chunked if !client.dechunk => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        _ => {}
    }
    if !client.keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    } else if req.http10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(Some((head, client)))
}

/// The reason phrase of a status the proxy answers with itself.
pub(crate) fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

/// A response the proxy makes itself: its status, a plain-text body and the `Connection`
/// header that says whether the client connection stays open.
pub(crate) fn write_text_response(out: &mut Vec<u8>, status: u16, body: &str, with_body: bool, keep_alive: bool, http10: bool) {
    out.clear();
    out.extend_from_slice(format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status)).as_bytes());
    out.extend_from_slice(b"content-type: text/plain; charset=utf-8\r\n");
    put_length(out, body.len() as u64);
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    } else if http10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if with_body {
        out.extend_from_slice(body.as_bytes());
    }
}

/// Follows one body through its framing, so the proxy knows where it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyReader {
    Length(u64),
    Chunked(Chunk),
    /// Until the connection closes.
    Close,
    Done,
}

/// The longest run of chunk extensions after one chunk size. hyper allows 16 KiB over a whole
/// body; no client sends more than a few bytes, and a bound keeps a body from being nothing but
/// extensions.
const MAX_CHUNK_EXT: u16 = 4096;

/// Where a chunked body is (RFC 9112 §7.1). Size lines and trailer lines are checked against
/// the grammar byte by byte, and anything else refuses the body: the bytes are forwarded as
/// they came, so whatever this reader let through, a backend would have to read the same way.
/// Lenient readers disagree precisely on such lines (a size followed by garbage, a bare LF, a
/// line that is not a field), which is how one request gets read as two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chunk {
    Size {
        value: u64,
        digits: u8,
    },
    /// In the extensions after the size; `len` bytes of them so far.
    Extension {
        value: u64,
        at: Ext,
        len: u16,
    },
    SizeLf {
        value: u64,
    },
    Data(u64),
    DataCr,
    DataLf,
    TrailerStart,
    TrailerName,
    TrailerLine,
    TrailerLineLf,
    TrailerLf,
}

/// Where in `*( BWS ";" BWS name [ BWS "=" BWS value ] )` a chunk size line is, value being a
/// token or a quoted string (RFC 9112 §7.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ext {
    /// Whitespace after the size or a value: only more of it or `;` may follow.
    Semi,
    NameStart,
    Name,
    /// Whitespace after a name: `=` or `;` must follow.
    AfterName,
    ValueStart,
    Token,
    Quoted,
    Escaped,
    /// After a quoted string's closing quote.
    Closed,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Whitespace, visible ASCII and obs-text: what a field value, or a quoted string once `"` and
/// `\` are taken care of, may hold.
fn is_text(b: u8) -> bool {
    is_ws(b) || (0x21..=0x7e).contains(&b) || b >= 0x80
}

impl Ext {
    /// Where `b` leads, or None when it breaks the grammar. The line's end is not handled here.
    fn next(self, b: u8) -> Option<Ext> {
        use Ext::*;
        Some(match (self, b) {
            (Semi | AfterName | NameStart | ValueStart, _) if is_ws(b) => self,
            (Semi | AfterName | Name | Token | Closed, b';') => NameStart,
            (NameStart | Name, _) if is_tchar(b) => Name,
            (Name, _) if is_ws(b) => AfterName,
            (AfterName | Name, b'=') => ValueStart,
            (ValueStart, b'"') => Quoted,
            (ValueStart | Token, _) if is_tchar(b) => Token,
            (Token | Closed, _) if is_ws(b) => Semi,
            (Quoted, b'"') => Closed,
            (Quoted, b'\\') => Escaped,
            (Quoted | Escaped, _) if is_text(b) => Quoted,
            _ => return None,
        })
    }

    /// True when the size line may end here (a CR).
    fn may_end(self) -> bool {
        matches!(self, Ext::Name | Ext::Token | Ext::Closed)
    }
}

impl BodyReader {
    pub(crate) fn new(framing: Framing) -> Self {
        match framing {
            Framing::Empty | Framing::Length(0) => BodyReader::Done,
            Framing::Length(n) => BodyReader::Length(n),
            Framing::Chunked => BodyReader::Chunked(Chunk::Size { value: 0, digits: 0 }),
            Framing::Close => BodyReader::Close,
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        *self == BodyReader::Done
    }

    /// Takes the body's bytes from the start of `input` (stopping where the body ends) and
    /// appends them to `out`, or with `dechunk` only the data of a chunked body. Returns how
    /// many bytes of `input` belong to the body.
    pub(crate) fn feed(&mut self, input: &[u8], out: &mut Vec<u8>, dechunk: bool) -> Result<usize, &'static str> {
        self.advance(input, Some(out), dechunk)
    }

    /// Like [`feed`](Self::feed), for bytes that are relayed from where they are.
    pub(crate) fn skip(&mut self, input: &[u8]) -> Result<usize, &'static str> {
        self.advance(input, None, false)
    }

    fn advance(&mut self, input: &[u8], mut out: Option<&mut Vec<u8>>, dechunk: bool) -> Result<usize, &'static str> {
        match self {
            BodyReader::Done => Ok(0),
            BodyReader::Close => {
                if let Some(out) = out {
                    out.extend_from_slice(input);
                }
                Ok(input.len())
            }
            BodyReader::Length(left) => {
                let take = (*left).min(input.len() as u64) as usize;
                if let Some(out) = out {
                    out.extend_from_slice(&input[..take]);
                }
                *left -= take as u64;
                if *left == 0 {
                    *self = BodyReader::Done;
                }
                Ok(take)
            }
            BodyReader::Chunked(chunk) => {
                let (used, done) = chunk.feed(input, &mut out, dechunk)?;
                if done {
                    *self = BodyReader::Done;
                }
                Ok(used)
            }
        }
    }
}

impl Chunk {
    fn feed(&mut self, input: &[u8], out: &mut Option<&mut Vec<u8>>, dechunk: bool) -> Result<(usize, bool), &'static str> {
        let mut i = 0;
        while i < input.len() {
            if let Chunk::Data(left) = *self {
                let take = left.min((input.len() - i) as u64) as usize;
                if let Some(out) = out {
                    out.extend_from_slice(&input[i..i + take]);
                }
                i += take;
                *self = if take as u64 == left { Chunk::DataCr } else { Chunk::Data(left - take as u64) };
                continue;
            }
            let b = input[i];
            i += 1;
            if let (Some(out), false) = (out.as_mut(), dechunk) {
                out.push(b);
            }
            *self = match (*self, b) {
                (Chunk::Size { value, digits }, _) if b.is_ascii_hexdigit() => {
                    if digits >= 15 {
                        return Err("a chunk size is too large");
                    }
                    let d = (b as char).to_digit(16).unwrap_or_default() as u64;
                    Chunk::Size { value: value * 16 + d, digits: digits + 1 }
                }
                (Chunk::Size { value, digits }, b';') if digits > 0 => Chunk::Extension { value, at: Ext::NameStart, len: 1 },
                (Chunk::Size { value, digits }, _) if digits > 0 && is_ws(b) => Chunk::Extension { value, at: Ext::Semi, len: 1 },
                (Chunk::Size { value, digits }, b'\r') if digits > 0 => Chunk::SizeLf { value },
                (Chunk::Size { .. }, _) => return Err("a chunk size is not a hexadecimal number"),
                (Chunk::Extension { value, at, .. }, b'\r') if at.may_end() => Chunk::SizeLf { value },
                (Chunk::Extension { .. }, b'\n') => return Err("a chunk size line does not end with CRLF"),
                (Chunk::Extension { len, .. }, _) if len >= MAX_CHUNK_EXT => return Err("a chunk size is followed by more than 4 KiB of extensions"),
                (Chunk::Extension { value, at, len }, _) => match at.next(b) {
                    Some(at) => Chunk::Extension { value, at, len: len + 1 },
                    None => return Err("a chunk size is followed by something other than `;name=value` extensions"),
                },
                (Chunk::SizeLf { value: 0 }, b'\n') => Chunk::TrailerStart,
                (Chunk::SizeLf { value }, b'\n') => Chunk::Data(value),
                (Chunk::SizeLf { .. }, _) => return Err("a chunk size line does not end with CRLF"),
                (Chunk::DataCr, b'\r') => Chunk::DataLf,
                (Chunk::DataCr, _) => return Err("a chunk is longer than its size says"),
                (Chunk::DataLf, b'\n') => Chunk::Size { value: 0, digits: 0 },
                (Chunk::DataLf, _) => return Err("a chunk does not end with CRLF"),
                // Lines end with CRLF only: a backend reading a bare LF as a line end would
                // see a different end of the message than the proxy.
                (Chunk::TrailerStart, b'\r') => Chunk::TrailerLf,
                (Chunk::TrailerLine, b'\r') => Chunk::TrailerLineLf,
                (Chunk::TrailerStart | Chunk::TrailerName | Chunk::TrailerLine, b'\n') => return Err("a trailer line does not end with CRLF"),
                (Chunk::TrailerStart | Chunk::TrailerName, _) if is_tchar(b) => Chunk::TrailerName,
                (Chunk::TrailerName, b':') => Chunk::TrailerLine,
                (Chunk::TrailerStart | Chunk::TrailerName, _) => return Err("a trailer line is not a `name: value` field"),
                (Chunk::TrailerLine, _) if is_text(b) => Chunk::TrailerLine,
                (Chunk::TrailerLine, _) => return Err("a trailer field has a control character"),
                (Chunk::TrailerLineLf, b'\n') => Chunk::TrailerStart,
                (Chunk::TrailerLineLf, _) => return Err("a trailer line does not end with CRLF"),
                (Chunk::TrailerLf, b'\n') => return Ok((i, true)),
                (Chunk::TrailerLf, _) => return Err("the chunked body does not end with CRLF"),
                (Chunk::Data(_), _) => unreachable!("data is taken above"),
            };
        }
        Ok((i, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> (RequestHead, String) {
        let mut out = Vec::new();
        let head = parse_request(raw.as_bytes(), b"192.0.2.7", &mut out).unwrap().expect("complete head");
        finish_request_head(&mut out, head.needs_host.then_some(&b"host: 10.0.0.1:80\r\n"[..]));
        (head, String::from_utf8(out).unwrap())
    }

    fn reject(raw: &str) -> Reject {
        parse_request(raw.as_bytes(), b"192.0.2.7", &mut Vec::new()).unwrap_err()
    }

    #[test]
    fn hop_by_hop_headers_are_dropped_including_ones_named_in_connection() {
        let raw = "GET /a?b=1 HTTP/1.1\r\nHost: App.example:8080\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nUpgrade: websocket\r\nX-App: kept\r\n\r\n";
        let (head, out) = parse(raw);
        assert_eq!(
            out,
            "GET /a?b=1 HTTP/1.1\r\nHost: App.example:8080\r\nX-App: kept\r\nx-forwarded-for: 192.0.2.7\r\nx-forwarded-host: App.example:8080\r\nx-forwarded-proto: http\r\n\r\n"
        );
        assert_eq!(&raw[head.path.clone()], "/a");
        assert_eq!(&raw[head.host.clone().unwrap()], "App.example:8080");
        assert!(head.keep_alive && head.idempotent && !head.needs_host);
        assert_eq!(head.framing, Framing::Empty);
    }

    #[test]
    fn forwarded_headers_are_set_and_xff_appended() {
        let (_, out) = parse(
            "POST /x HTTP/1.1\r\nX-Forwarded-For: 10.1.1.1\r\nx-forwarded-for: 10.2.2.2\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\nContent-Length: 3\r\n\r\nabc",
        );
        assert_eq!(
            out,
            "POST /x HTTP/1.1\r\ncontent-length: 3\r\nx-forwarded-for: 10.1.1.1, 10.2.2.2, 192.0.2.7\r\nx-forwarded-proto: http\r\nhost: 10.0.0.1:80\r\n\r\n"
        );
    }

    #[test]
    fn absolute_form_becomes_origin_form_and_gives_the_host() {
        let raw = "GET http://user@App.example:81/p/q?x HTTP/1.1\r\n\r\n";
        let (head, out) = parse(raw);
        assert!(out.starts_with("GET /p/q?x HTTP/1.1\r\n"), "{out}");
        assert_eq!(&raw[head.host.clone().unwrap()], "App.example:81");
        assert_eq!(&raw[head.path.clone()], "/p/q");
        assert!(head.needs_host);
        let (_, out) = parse("OPTIONS http://h HTTP/1.1\r\n\r\n");
        assert!(out.starts_with("OPTIONS / HTTP/1.1\r\n"), "{out}");
    }

    #[test]
    fn http10_keeps_alive_only_when_asked() {
        let (head, _) = parse("GET / HTTP/1.0\r\n\r\n");
        assert!(head.http10 && !head.keep_alive);
        let (head, _) = parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert!(head.keep_alive);
        let (head, _) = parse("GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert!(!head.keep_alive);
    }

    #[test]
    fn framing_of_requests() {
        let (h, _) = parse("PUT / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\nExpect: 100-continue\r\n\r\n");
        assert_eq!(h.framing, Framing::Chunked);
        assert!(h.expect_continue);
        let (h, _) = parse("PUT / HTTP/1.1\r\nContent-Length: 7\r\ncontent-length: 7\r\n\r\n");
        assert_eq!(h.framing, Framing::Length(7));
        for (raw, says) in [
            ("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "Content-Length"),
            ("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", "Content-Length"),
            ("POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", "both"),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", "chunked"),
            ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", "HTTP/1.0"),
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "more than one Host"),
            ("GET /a b HTTP/1.1\r\n\r\n", "not valid"),
            ("\x01\x02\r\n\r\n", "not valid"),
        ] {
            let r = reject(raw);
            assert_eq!(r.status, 400, "{raw:?}");
            assert!(r.reason.contains(says), "{raw:?}: {}", r.reason);
        }
        assert_eq!(reject("CONNECT a:443 HTTP/1.1\r\n\r\n").status, 405);
    }

    #[test]
    fn oversized_heads_are_431() {
        let mut raw = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        raw.resize(MAX_HEAD + 10, b'a');
        let r = parse_request(&raw, b"1", &mut Vec::new()).unwrap_err();
        assert_eq!(r.status, 431);
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: 1\r\n")).collect();
        let r = reject(&format!("GET / HTTP/1.1\r\n{many}\r\n"));
        assert_eq!(r.status, 431);
        assert!(parse_request(b"GET / HTTP/1.1\r\nHost:", b"1", &mut Vec::new()).unwrap().is_none());
    }

    fn respond(req: &str, resp: &str) -> (ResponseHead, ClientFraming, String) {
        let (req, _) = parse(req);
        let mut out = Vec::new();
        let (head, client) = parse_response(resp.as_bytes(), &req, false, &mut out).unwrap().unwrap();
        (head, client, String::from_utf8(out).unwrap())
    }

    #[test]
    fn response_framing_and_connection_headers() {
        let get11 = "GET / HTTP/1.1\r\n\r\n";
        let (h, c, out) = respond(get11, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\nX-A: 1\r\n\r\nhi");
        assert_eq!((h.framing, h.reusable, c.keep_alive), (Framing::Length(2), false, true));
        assert_eq!(out, "HTTP/1.1 200 OK\r\nX-A: 1\r\ncontent-length: 2\r\n\r\n");

        let (h, c, out) = respond(get11, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n");
        assert_eq!((h.framing, h.reusable, c.dechunk), (Framing::Chunked, true, false));
        assert_eq!(out, "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");

        let (h, c, out) = respond("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(c.dechunk && !c.keep_alive && h.reusable);
        assert_eq!(out, "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n");

        let (_, c, out) = respond("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert!(c.keep_alive);
        assert!(out.ends_with("connection: keep-alive\r\n\r\n"), "{out}");

        let (h, c, out) = respond(get11, "HTTP/1.0 200 OK\r\n\r\n");
        assert_eq!((h.framing, h.reusable, c.keep_alive), (Framing::Close, false, false));
        assert!(out.ends_with("connection: close\r\n\r\n"));

        let (h, _, out) = respond("HEAD / HTTP/1.1\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 1024\r\n\r\n");
        assert_eq!((h.framing, h.reusable), (Framing::Empty, true));
        assert!(out.contains("Content-Length: 1024\r\n"), "{out}");

        let (h, _, _) = respond(get11, "HTTP/1.1 100 Continue\r\n\r\n");
        assert!(h.interim);
    }

    #[test]
    fn bad_responses_are_errors() {
        let (req, _) = parse("GET / HTTP/1.1\r\n\r\n");
        for raw in ["HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "HTTP/1.1 101 Switching Protocols\r\n\r\n", "garbage\r\n\r\n"] {
            assert!(parse_response(raw.as_bytes(), &req, false, &mut Vec::new()).is_err(), "{raw}");
        }
    }

    #[test]
    fn upgrade_requests_keep_upgrade_and_drop_the_other_hop_by_hop_headers() {
        let raw = "GET /chat HTTP/1.1\r\nHost: app.example\r\nConnection: keep-alive, Upgrade, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nUpgrade: websocket\r\nSec-WebSocket-Key: abc\r\n\r\n";
        let (head, out) = parse(raw);
        assert!(head.upgrade && !head.idempotent);
        assert_eq!(
            out,
            "GET /chat HTTP/1.1\r\nHost: app.example\r\nUpgrade: websocket\r\nSec-WebSocket-Key: abc\r\nconnection: upgrade\r\nx-forwarded-for: 192.0.2.7\r\nx-forwarded-host: app.example\r\nx-forwarded-proto: http\r\n\r\n"
        );

        // Not an upgrade: HTTP/1.0, Upgrade not named in Connection, or no Upgrade header.
        for raw in [
            "GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            "GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            "GET / HTTP/1.1\r\nConnection: upgrade\r\n\r\n",
        ] {
            let (head, out) = parse(raw);
            assert!(!head.upgrade && head.idempotent, "{raw:?}");
            assert!(!out.to_ascii_lowercase().contains("upgrade"), "{raw:?}: {out}");
        }

        // A body goes with the upgrade, framed as usual.
        let (head, out) = parse("POST /up HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: x\r\nContent-Length: 3\r\n\r\nabc");
        assert!(head.upgrade && head.framing == Framing::Length(3));
        assert!(out.contains("content-length: 3\r\n") && out.contains("connection: upgrade\r\n"));
    }

    #[test]
    fn switching_protocols_answers_an_upgrade_only() {
        let upgrade = "GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
        let resp = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: xyz\r\n\r\nframe";
        let (h, _, out) = respond(upgrade, resp);
        assert!(h.switching && !h.interim && !h.reusable);
        assert_eq!(h.framing, Framing::Empty);
        assert_eq!(out, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: xyz\r\nconnection: upgrade\r\n\r\n");
        assert_eq!(&resp[h.head_len..], "frame", "bytes after the head are not part of it");

        // A refusal is an ordinary response, without the hop-by-hop Upgrade.
        let (h, c, out) = respond(upgrade, "HTTP/1.1 400 Bad Request\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n");
        assert!(!h.switching && h.reusable && c.keep_alive);
        assert_eq!(out, "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");

        let (req, _) = parse("GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n");
        let raw = "HTTP/1.1 101 Switching Protocols\r\n\r\n";
        assert!(parse_response(raw.as_bytes(), &req, false, &mut Vec::new()).is_err());
    }

    fn feed_all(framing: Framing, input: &[u8], dechunk: bool) -> Result<(usize, Vec<u8>, bool), &'static str> {
        // Byte by byte, to cover every split of the input across reads.
        let mut r = BodyReader::new(framing);
        let mut out = Vec::new();
        let mut used = 0;
        while used < input.len() && !r.is_done() {
            used += r.feed(&input[used..used + 1], &mut out, dechunk)?;
        }
        Ok((used, out, r.is_done()))
    }

    #[test]
    fn chunked_bodies_end_where_they_end() {
        let body = b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\nGET /next";
        let end = body.len() - "GET /next".len();
        let (used, out, done) = feed_all(Framing::Chunked, body, false).unwrap();
        assert_eq!((used, done), (end, true));
        assert_eq!(out, &body[..end]);
        let (_, out, _) = feed_all(Framing::Chunked, body, true).unwrap();
        assert_eq!(out, b"hello0123456789");
        // In one piece too.
        let mut r = BodyReader::new(Framing::Chunked);
        let mut out = Vec::new();
        assert_eq!(r.feed(body, &mut out, false), Ok(end));
        assert!(r.is_done());
        for bad in [&b"x\r\n"[..], b"5\r\nhello!\r\n", b"5\nhello", b"fffffffffffffffff\r\n", b"0\r\nX: 1\n\r\n", b"0\r\n\n"] {
            assert!(feed_all(Framing::Chunked, bad, false).is_err(), "{bad:?}");
        }
        let (used, out, done) = feed_all(Framing::Length(3), b"abcdef", false).unwrap();
        assert_eq!((used, out.as_slice(), done), (3, &b"abc"[..], true));
    }

    #[test]
    fn chunk_size_lines_and_trailers_follow_the_grammar() {
        let ext = |e: &str| format!("5{e}\r\nhello\r\n0\r\n\r\n");
        let valid = [
            ext(";name=val"),
            ext(" ; a = \"v;\\\"x\" ;b"),
            ext(";a;b=c;d=\"\""),
            ext("\t;x"),
            ext(&format!(";{}", "a".repeat(4095))),
            "0\r\nX-Trailer: 1\r\nY: \t\r\n\r\n".into(),
        ];
        for body in &valid {
            let (used, _, done) = feed_all(Framing::Chunked, body.as_bytes(), false).unwrap_or_else(|e| panic!("{body:?}: {e}"));
            assert_eq!((used, done), (body.len(), true), "{body:?}");
        }
        let (_, data, _) = feed_all(Framing::Chunked, valid[1].as_bytes(), true).unwrap();
        assert_eq!(data, b"hello");

        for (body, says) in [
            (ext(" zz"), "extensions"),
            (ext("\tgarbage"), "extensions"),
            (ext(" "), "extensions"),
            (ext(";"), "extensions"),
            (ext(";=b"), "extensions"),
            (ext(";a "), "extensions"),
            (ext(";a="), "extensions"),
            (ext(";a=b c"), "extensions"),
            (ext(";a=\"x"), "extensions"),
            (ext(";a=\"x\"y"), "extensions"),
            (ext(";a\x01"), "extensions"),
            (ext(";a=\"\\\x01\""), "extensions"),
            ("5;a\nhello".into(), "CRLF"),
            (ext(&format!(";{}", "a".repeat(4096))), "4 KiB"),
            ("0\r\nno colon\r\n\r\n".into(), "field"),
            ("0\r\n: no name\r\n\r\n".into(), "field"),
            ("0\r\n folded\r\n\r\n".into(), "field"),
            ("0\r\nX: a\x00b\r\n\r\n".into(), "control"),
        ] {
            let err = feed_all(Framing::Chunked, body.as_bytes(), false).unwrap_err();
            assert!(err.contains(says), "{body:?}: {err}");
        }
    }

    #[test]
    fn names_the_proxy_reads_or_sets_spelled_with_underscores_are_refused() {
        for (header, name) in [
            ("Transfer_Encoding: chunked", "Transfer-Encoding"),
            ("content_length: 5", "content-length"),
            ("X_Forwarded_For: 10.9.9.9", "X-Forwarded-For"),
            ("x_forwarded_host: evil", "x-forwarded-host"),
            ("Keep_Alive: 5", "Keep-Alive"),
            ("Proxy_Authorization: x", "Proxy-Authorization"),
        ] {
            let r = reject(&format!("POST / HTTP/1.1\r\nHost: a\r\n{header}\r\n\r\n"));
            let spelled = header.split(':').next().unwrap();
            assert_eq!(r.status, 400, "{header}");
            assert!(r.reason.contains(spelled) && r.reason.contains(&format!("send it as {name}")), "{header}: {}", r.reason);
        }
        // Every `-` of every such name, alone or with the others.
        for name in [
            "keep-alive",
            "content-length",
            "x-forwarded-for",
            "proxy-connection",
            "x-forwarded-host",
            "transfer-encoding",
            "x-forwarded-proto",
            "proxy-authenticate",
            "proxy-authorization",
        ] {
            assert_ne!(kind(name), Kind::Plain, "{name}");
            assert!(!underscored(name), "{name}");
            assert!(underscored(&name.replace('-', "_")), "{name}");
            for (i, _) in name.match_indices('-') {
                let one = format!("{}_{}", &name[..i], &name[i + 1..]);
                assert!(underscored(&one) && underscored(&one.to_uppercase()), "{one}");
            }
        }
        // Other names with `_` are valid HTTP and pass as they are.
        let (_, out) = parse("GET / HTTP/1.1\r\nX_Custom: 1\r\nHost_Name: h\r\n\r\n");
        assert!(out.contains("\r\nX_Custom: 1\r\nHost_Name: h\r\n"), "{out}");
        // A response's are ordinary headers: relayed, and not read for framing.
        let (h, _, out) = respond("GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 200 OK\r\nTransfer_Encoding: chunked\r\nContent-Length: 2\r\n\r\n");
        assert_eq!(h.framing, Framing::Length(2));
        assert!(out.contains("Transfer_Encoding: chunked\r\n"), "{out}");
    }

    #[test]
    fn connection_may_not_name_what_the_request_is_routed_or_framed_by() {
        for (connection, name) in
            [("host", "Host"), ("keep-alive, HOST", "Host"), ("Content-Length", "Content-Length"), ("close, transfer-encoding", "Transfer-Encoding")]
        {
            let r = reject(&format!("POST / HTTP/1.1\r\nHost: a\r\nConnection: {connection}\r\nContent-Length: 0\r\n\r\n"));
            assert_eq!(r.status, 400, "{connection}");
            assert!(r.reason.contains(&format!("take {name} out of Connection")), "{connection}: {}", r.reason);
        }
        // Named in Connection, the client's X-Forwarded-For goes no further; the proxy's own does.
        let (_, out) = parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: X-Forwarded-For\r\nX-Forwarded-For: 10.9.9.9\r\n\r\n");
        assert!(out.contains("\r\nx-forwarded-for: 192.0.2.7\r\n") && !out.contains("10.9.9.9"), "{out}");
    }
}
