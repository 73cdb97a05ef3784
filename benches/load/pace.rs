//! Open-loop load at fixed rates, for latency at a given request rate (`run.sh`'s paced
//! cells). `cargo run --release --example pace -- --help`.
//!
//! wrk is closed-loop: each connection waits for its answer before the next request, and
//! pausing connections between requests (its `delay()`, on millisecond timers) made them
//! fire together, so the server saw bursts, and the bursts' length set the p99. Here each
//! stream's requests are due at evenly spaced instants (`RATE` a second) whether or not
//! earlier ones were answered, as wrk2 does; a due request goes out on the first idle
//! connection of its stream, or waits for one, and its latency runs from the instant it
//! was due (no coordinated omission: a stalled server shows as latency, not as fewer
//! requests). One thread spins on its core (run it pinned: `taskset -c 1`) and drives
//! every stream, so two streams never take turns on the generator's core. A latency also
//! holds the generator's own handling of the events polled with its answer.
//!
//! Prints one line per stream:
//! `PACE name rate p50 p90 p99 p99.9 max errors late max_lag sent_p50 sent_p99 sent_p99.9
//! gen_stall_max`, times in ms. `rate` counts the requests due in the measured window and
//! answered. `late` counts those sent more than 100 µs after they were due, and `max_lag`
//! is the most any was: no idle connection (the server stalled with every connection
//! busy) or the generator falling behind. `sent_*` are the same requests' latencies from
//! when each was written, and `gen_stall_max` (one figure for the whole run, repeated on
//! each line) the longest the spinning loop went between two turns: the generator off its
//! core (preempted by a kernel thread, say) or one turn handling many events. Where it
//! approaches `max_lag`, late sends were the generator's, not the server's, and the
//! `sent_*` figures are the server's share (the burst a late generator then sends is
//! still load the server sees).
//! `errors` counts non-2xx answers and the requests due in the window that got none (their
//! connection closed, or none could be made). Responses must carry `Content-Length`
//! (callhook's and nginx's do).

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Parser;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

#[derive(Parser)]
#[command(about = "Open-loop HTTP/1.1 load at fixed rates; latency from each request's due time")]
struct Args {
    /// Server address.
    #[arg(long)]
    addr: SocketAddr,
    /// NAME:FILE:RATE:CONNS, repeatable: FILE holds one whole HTTP/1.1 request (keep-alive),
    /// sent RATE times a second over CONNS connections.
    #[arg(long = "stream", required = true)]
    streams: Vec<String>,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    secs: f64,
    /// Seconds at the same rates before measuring (not recorded).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
}

/// One keep-alive connection: connecting, idle, or carrying one request due at `due`.
struct Conn {
    sock: TcpStream,
    /// A reconnection not yet established (it turns idle once writable).
    connecting: bool,
    due: Option<Instant>,
    /// When the request due at `due` was handed to the socket.
    sent: Instant,
    /// Bytes of the request not yet written (a full socket buffer).
    unsent: usize,
    buf: Vec<u8>,
}

struct Stream {
    name: String,
    request: Vec<u8>,
    period_ns: f64,
    /// Requests scheduled so far (the next is due at `start + scheduled * period`).
    scheduled: u64,
    /// Due and not yet sent: no connection was idle.
    backlog: VecDeque<Instant>,
    idle: VecDeque<usize>,
    conns: Vec<Conn>,
    latencies_ns: Vec<u64>,
    /// The same requests' latencies from when they were sent.
    from_send_ns: Vec<u64>,
    errors: u64,
    late: u64,
    max_lag: Duration,
}

const LATE: Duration = Duration::from_micros(100);
/// Far above what one spinning thread sends; bounds the latencies kept (8 bytes each).
const MAX_RATE: f64 = 1_000_000.0;

fn main() {
    let args = Args::parse();
    if !(args.secs.is_finite() && args.secs > 0.0 && args.warmup.is_finite() && args.warmup >= 0.0)
    {
        die("--secs must be positive and --warmup not negative");
    }
    let mut poll = Poll::new().expect("epoll");
    let mut streams: Vec<Stream> = Vec::new();
    let mut owners: Vec<(usize, usize)> = Vec::new(); // token -> (stream, conn)
    for spec in &args.streams {
        // From the right, so that FILE may hold a ':'.
        let mut right = spec.rsplitn(3, ':');
        let (Some(conns), Some(rate), Some(left)) = (right.next(), right.next(), right.next())
        else {
            die(&format!("--stream {spec}: want NAME:FILE:RATE:CONNS"));
        };
        let Some((name, file)) = left.split_once(':') else {
            die(&format!("--stream {spec}: want NAME:FILE:RATE:CONNS"));
        };
        let rate: f64 = rate.parse().unwrap_or_else(|_| die("RATE is a number"));
        let n: usize = conns.parse().unwrap_or_else(|_| die("CONNS is a number"));
        if !(rate > 0.0 && rate <= MAX_RATE) || n == 0 {
            die("RATE must be above 0 and at most 1M, CONNS above 0");
        }
        let request = std::fs::read(file).unwrap_or_else(|e| die(&format!("{file}: {e}")));
        let s = streams.len();
        let mut st = Stream {
            name: name.to_string(),
            request,
            period_ns: 1e9 / rate,
            scheduled: 0,
            backlog: VecDeque::new(),
            idle: (0..n).collect(),
            conns: Vec::with_capacity(n),
            latencies_ns: Vec::with_capacity((rate * args.secs * 1.1) as usize),
            from_send_ns: Vec::with_capacity((rate * args.secs * 1.1) as usize),
            errors: 0,
            late: 0,
            max_lag: Duration::ZERO,
        };
        for c in 0..n {
            let std_sock = std::net::TcpStream::connect(args.addr)
                .unwrap_or_else(|e| die(&format!("connect {}: {e}", args.addr)));
            std_sock.set_nonblocking(true).expect("non-blocking");
            st.conns.push(register(
                &poll,
                TcpStream::from_std(std_sock),
                owners.len(),
                false,
            ));
            owners.push((s, c));
        }
        streams.push(st);
    }
    let start = Instant::now() + Duration::from_millis(100); // connections settle first
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let stop = measure_from + Duration::from_secs_f64(args.secs);
    let mut events = Events::with_capacity(1024);
    // After `stop` nothing new is due; what is in flight or waiting for a connection gets
    // up to 2 s to be answered.
    let give_up = stop + Duration::from_secs(2);
    // The loop spins: a long gap between two turns is the generator itself off its core
    // (preempted), which delays sends whatever the server does.
    let (mut last_turn, mut stall_max) = (Instant::now(), Duration::ZERO);
    loop {
        let now = Instant::now();
        if now >= measure_from && now < stop {
            stall_max = stall_max.max(now - last_turn);
        }
        last_turn = now;
        if now >= stop {
            let pending = streams
                .iter()
                .any(|s| !s.backlog.is_empty() || s.conns.iter().any(|c| c.due.is_some()));
            if now >= give_up || !pending {
                break;
            }
        }
        for st in &mut streams {
            loop {
                let due = start + Duration::from_nanos((st.scheduled as f64 * st.period_ns) as u64);
                if due > now || due >= stop {
                    break;
                }
                st.backlog.push_back(due);
                st.scheduled += 1;
            }
            while !st.backlog.is_empty() {
                let Some(c) = st.idle.pop_front() else { break };
                let due = st.backlog.pop_front().expect("checked non-empty");
                let lag = Instant::now().saturating_duration_since(due);
                if due >= measure_from {
                    st.late += u64::from(lag > LATE);
                    st.max_lag = st.max_lag.max(lag);
                }
                let conn = &mut st.conns[c];
                conn.due = Some(due);
                conn.sent = Instant::now();
                conn.unsent = st.request.len();
                write_some(conn, &st.request);
            }
        }
        poll.poll(&mut events, Some(Duration::ZERO))
            .expect("epoll_wait");
        for ev in events.iter() {
            let token = ev.token().0;
            let (s, c) = owners[token];
            let st = &mut streams[s];
            if st.conns[c].connecting {
                if ev.is_writable() || ev.is_error() {
                    connected(st, c, &poll, args.addr, token);
                }
                continue;
            }
            if ev.is_writable() && st.conns[c].unsent > 0 {
                let req = std::mem::take(&mut st.request);
                write_some(&mut st.conns[c], &req);
                st.request = req;
            }
            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                read_answer(st, c, &poll, args.addr, token, measure_from);
            }
        }
    }
    println!(
        "# PACE stream rate p50_ms p90_ms p99_ms p99.9_ms max_ms errors late max_lag_ms \
         sent_p50_ms sent_p99_ms sent_p99.9_ms gen_stall_max_ms"
    );
    for st in &mut streams {
        st.latencies_ns.sort_unstable();
        st.from_send_ns.sort_unstable();
        let q = |v: &[u64], p: f64| -> f64 {
            if v.is_empty() {
                return f64::NAN;
            }
            let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
            v[i] as f64 / 1e6
        };
        let (v, sent) = (&st.latencies_ns, &st.from_send_ns);
        // Requests due in the window and never answered are errors too.
        let unanswered = st
            .conns
            .iter()
            .filter(|c| c.due.is_some_and(|d| d >= measure_from))
            .count()
            + st.backlog.iter().filter(|d| **d >= measure_from).count();
        println!(
            "PACE {} {:.0} {:.3} {:.3} {:.3} {:.3} {:.3} {} {} {:.3} {:.3} {:.3} {:.3} {:.3}",
            st.name,
            v.len() as f64 / args.secs,
            q(v, 50.0),
            q(v, 90.0),
            q(v, 99.0),
            q(v, 99.9),
            q(v, 100.0),
            st.errors + unanswered as u64,
            st.late,
            st.max_lag.as_secs_f64() * 1e3,
            q(sent, 50.0),
            q(sent, 99.0),
            q(sent, 99.9),
            stall_max.as_secs_f64() * 1e3
        );
    }
}

fn die(msg: &str) -> ! {
    eprintln!("pace: {msg}");
    std::process::exit(2);
}

fn register(poll: &Poll, mut sock: TcpStream, token: usize, connecting: bool) -> Conn {
    let _ = sock.set_nodelay(true);
    poll.registry()
        .register(
            &mut sock,
            Token(token),
            Interest::READABLE | Interest::WRITABLE,
        )
        .expect("epoll register");
    Conn {
        sock,
        connecting,
        due: None,
        sent: Instant::now(),
        unsent: 0,
        buf: Vec::with_capacity(4096),
    }
}

/// Replaces connection `c` with a new one, connecting without blocking the loop; its
/// request, if any, was counted by the caller. It becomes idle once connected.
fn reconnect(st: &mut Stream, c: usize, poll: &Poll, addr: SocketAddr, token: usize) {
    let _ = poll.registry().deregister(&mut st.conns[c].sock);
    st.idle.retain(|&i| i != c);
    match TcpStream::connect(addr) {
        Ok(sock) => st.conns[c] = register(poll, sock, token, true),
        // Not even started (no descriptors, say): stays out of use; the requests that
        // wait for a connection meanwhile count as unanswered at the end.
        Err(_) => st.conns[c].connecting = true,
    }
}

/// A reconnection became writable: in use if it connected, tried again if it failed.
fn connected(st: &mut Stream, c: usize, poll: &Poll, addr: SocketAddr, token: usize) {
    let conn = &mut st.conns[c];
    let failed =
        matches!(conn.sock.take_error(), Ok(Some(_)) | Err(_)) || conn.sock.peer_addr().is_err();
    if failed {
        reconnect(st, c, poll, addr, token);
    } else {
        conn.connecting = false;
        st.idle.push_back(c);
    }
}

/// Writes what the socket takes of the request's unsent tail; the rest goes out when
/// epoll says it is writable.
fn write_some(conn: &mut Conn, request: &[u8]) {
    while conn.unsent > 0 {
        let from = request.len() - conn.unsent;
        match conn.sock.write(&request[from..]) {
            Ok(n) => conn.unsent -= n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return, // the read side sees the connection fail
        }
    }
}

/// Reads what arrived on connection `c` until the socket has no more. A whole response
/// frees the connection and records its latency. The connection is replaced when it
/// closed or failed, when bytes came with no request outstanding, and when a response
/// came before the whole request was sent (the byte stream is out of step); a request
/// left without its response counts as an error.
fn read_answer(
    st: &mut Stream,
    c: usize,
    poll: &Poll,
    addr: SocketAddr,
    token: usize,
    measure_from: Instant,
) {
    let mut chunk = [0u8; 16384];
    let mut closed = false;
    loop {
        match st.conns[c].sock.read(&mut chunk) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => st.conns[c].buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    let conn = &mut st.conns[c];
    let mut out_of_step = false;
    if !conn.buf.is_empty() {
        match (conn.due, response_len(&conn.buf)) {
            (None, _) => out_of_step = true,
            (Some(_), Framing::Incomplete) => {}
            (Some(due), Framing::Complete { status, len }) => {
                let done = Instant::now();
                conn.buf.drain(..len);
                conn.due = None;
                if due >= measure_from {
                    st.latencies_ns
                        .push(done.duration_since(due).as_nanos() as u64);
                    st.from_send_ns
                        .push(done.duration_since(conn.sent).as_nanos() as u64);
                    st.errors += u64::from(!(200..300).contains(&status));
                }
                out_of_step = conn.unsent > 0 || !conn.buf.is_empty();
                if !(closed || out_of_step) {
                    st.idle.push_back(c);
                }
            }
            (Some(_), Framing::Unsupported(why)) => die(why),
        }
    }
    if closed || out_of_step {
        let conn = &mut st.conns[c];
        if conn.due.take().is_some_and(|d| d >= measure_from) {
            st.errors += 1;
        }
        reconnect(st, c, poll, addr, token);
    }
}

enum Framing {
    Incomplete,
    Complete { status: u16, len: usize },
    Unsupported(&'static str),
}

/// Whether the response at the start of `buf` is all there: `Content-Length` framing only
/// (what callhook and nginx send for these requests).
fn response_len(buf: &[u8]) -> Framing {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Framing::Incomplete;
    };
    let Ok(head) = std::str::from_utf8(&buf[..head_end]) else {
        return Framing::Unsupported("a response head that is not UTF-8");
    };
    let Some(status) = head.get(9..12).and_then(|s| s.parse::<u16>().ok()) else {
        return Framing::Unsupported("a response without an HTTP/1.1 status line");
    };
    let field = |name: &str| {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    };
    if field("transfer-encoding").is_some() {
        return Framing::Unsupported("a chunked response (only Content-Length is read)");
    }
    let Some(body) = field("content-length").and_then(|v| v.parse::<usize>().ok()) else {
        return Framing::Unsupported("a response without Content-Length");
    };
    let len = head_end + 4 + body;
    if buf.len() >= len {
        Framing::Complete { status, len }
    } else {
        Framing::Incomplete
    }
}
