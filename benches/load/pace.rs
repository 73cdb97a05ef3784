//! Open-loop load at fixed rates, for latency at a given request rate (`run.sh`'s paced
//! cells). `cargo run --release --example pace -- --help`.
//!
//! wrk is closed-loop: each connection waits for its answer before the next request, and
//! pausing connections between requests (its `delay()`, 1 ms timers) made them fire
//! together, so the server saw bursts whose length set the p99 (about half the cycle at
//! half load, for any server). Here each stream's requests are due at evenly spaced
//! instants (`RATE` a second) whether or not earlier ones were answered, as wrk2 does; a
//! due request goes out on the first idle connection of its stream, or waits for one,
//! and its latency runs from the instant it was due (no coordinated omission: a stalled
//! server shows as latency, not as fewer requests). One thread spins on its core (run it
//! pinned: `taskset -c 1`), sends on time to about a microsecond, and drives every stream
//! at once, so two streams never take turns on the generator's core.
//!
//! Prints one line per stream:
//! `PACE name rate_achieved p50 p90 p99 p99.9 max_ms errors late`, latencies in ms;
//! `late` counts requests sent more than 100 µs after they were due (the generator
//! falling behind, or no idle connection).

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

/// One keep-alive connection: idle, or carrying one request due at `due`.
struct Conn {
    sock: TcpStream,
    due: Option<Instant>,
    /// Bytes of the request not yet written (a full socket buffer).
    unsent: usize,
    buf: Vec<u8>,
}

struct Stream {
    name: String,
    request: Vec<u8>,
    period_ns: f64,
    /// Requests scheduled so far (the next is due at `start + sent * period`).
    scheduled: u64,
    /// Due and not yet sent: no connection was idle.
    backlog: VecDeque<Instant>,
    idle: VecDeque<usize>,
    conns: Vec<Conn>,
    latencies_ns: Vec<u64>,
    errors: u64,
    late: u64,
    /// The worst lateness of a send (the generator's own delay, in the latencies too).
    max_lag: Duration,
}

const LATE: Duration = Duration::from_micros(100);

fn main() {
    let args = Args::parse();
    let mut poll = Poll::new().expect("epoll");
    let mut streams: Vec<Stream> = Vec::new();
    let mut owners: Vec<(usize, usize)> = Vec::new(); // token -> (stream, conn)
    for spec in &args.streams {
        let parts: Vec<&str> = spec.splitn(4, ':').collect();
        let [name, file, rate, conns] = parts[..] else {
            die(&format!("--stream {spec}: want NAME:FILE:RATE:CONNS"));
        };
        let rate: f64 = rate.parse().unwrap_or_else(|_| die("RATE is a number"));
        let n: usize = conns.parse().unwrap_or_else(|_| die("CONNS is a number"));
        if rate.is_nan() || rate <= 0.0 || n == 0 {
            die("RATE and CONNS must be positive");
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
            errors: 0,
            late: 0,
            max_lag: Duration::ZERO,
        };
        for c in 0..n {
            st.conns.push(connect(&poll, args.addr, owners.len()));
            owners.push((s, c));
        }
        streams.push(st);
    }
    let start = Instant::now() + Duration::from_millis(100); // connections settle first
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let stop = measure_from + Duration::from_secs_f64(args.secs);
    let mut events = Events::with_capacity(1024);
    // After `stop` nothing new is due; requests in flight get up to 2 s to be answered.
    let give_up = stop + Duration::from_secs(2);
    loop {
        let now = Instant::now();
        let busy = streams.iter().any(|s| s.idle.len() < s.conns.len());
        if now >= give_up || (now >= stop && !busy) {
            break;
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
                let lag = now.duration_since(due);
                if due >= measure_from {
                    st.late += u64::from(lag > LATE);
                    st.max_lag = st.max_lag.max(lag);
                }
                let conn = &mut st.conns[c];
                conn.due = Some(due);
                conn.unsent = st.request.len();
                write_some(conn, &st.request);
            }
        }
        poll.poll(&mut events, Some(Duration::ZERO))
            .expect("epoll_wait");
        for ev in events.iter() {
            let (s, c) = owners[ev.token().0];
            let st = &mut streams[s];
            if ev.is_writable() && st.conns[c].unsent > 0 {
                let req = std::mem::take(&mut st.request);
                write_some(&mut st.conns[c], &req);
                st.request = req;
            }
            if ev.is_readable() || ev.is_read_closed() {
                read_answers(st, c, &poll, args.addr, ev.token().0, measure_from);
            }
        }
    }
    let secs = args.secs;
    println!("# PACE stream rate p50_ms p90_ms p99_ms p99.9_ms max_ms errors late max_lag_ms");
    for st in &mut streams {
        st.latencies_ns.sort_unstable();
        let q = |p: f64| -> f64 {
            let v = &st.latencies_ns;
            if v.is_empty() {
                return f64::NAN;
            }
            let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
            v[i] as f64 / 1e6
        };
        // Requests due in the window and never answered are errors too.
        let unanswered = st
            .conns
            .iter()
            .filter(|c| c.due.is_some_and(|d| d >= measure_from))
            .count()
            + st.backlog.iter().filter(|d| **d >= measure_from).count();
        println!(
            "PACE {} {:.0} {:.3} {:.3} {:.3} {:.3} {:.3} {} {} {:.3}",
            st.name,
            st.latencies_ns.len() as f64 / secs,
            q(50.0),
            q(90.0),
            q(99.0),
            q(99.9),
            q(100.0),
            st.errors + unanswered as u64,
            st.late,
            st.max_lag.as_secs_f64() * 1e3
        );
    }
}

fn die(msg: &str) -> ! {
    eprintln!("pace: {msg}");
    std::process::exit(2);
}

fn connect(poll: &Poll, addr: SocketAddr, token: usize) -> Conn {
    let std_sock =
        std::net::TcpStream::connect(addr).unwrap_or_else(|e| die(&format!("connect {addr}: {e}")));
    std_sock.set_nodelay(true).expect("TCP_NODELAY");
    std_sock.set_nonblocking(true).expect("non-blocking");
    let mut sock = TcpStream::from_std(std_sock);
    poll.registry()
        .register(
            &mut sock,
            Token(token),
            Interest::READABLE | Interest::WRITABLE,
        )
        .expect("epoll register");
    Conn {
        sock,
        due: None,
        unsent: 0,
        buf: Vec::with_capacity(4096),
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

/// Reads what arrived on connection `c`; a whole response frees it and records its
/// latency. A closed or failed connection counts its request as an error and reconnects.
fn read_answers(
    st: &mut Stream,
    c: usize,
    poll: &Poll,
    addr: SocketAddr,
    token: usize,
    measure_from: Instant,
) {
    let mut chunk = [0u8; 16384];
    loop {
        let conn = &mut st.conns[c];
        match conn.sock.read(&mut chunk) {
            Ok(0) => return fail(st, c, poll, addr, token, measure_from),
            Ok(n) => conn.buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return fail(st, c, poll, addr, token, measure_from),
        }
    }
    let conn = &mut st.conns[c];
    let Some((status, len)) = response_len(&conn.buf) else {
        return;
    };
    let done = Instant::now();
    conn.buf.drain(..len);
    if let Some(due) = conn.due.take() {
        if due >= measure_from {
            st.latencies_ns
                .push(done.duration_since(due).as_nanos() as u64);
            if !(200..300).contains(&status) {
                st.errors += 1;
            }
        }
        st.idle.push_back(c);
    }
}

fn fail(
    st: &mut Stream,
    c: usize,
    poll: &Poll,
    addr: SocketAddr,
    token: usize,
    measure_from: Instant,
) {
    let _ = poll.registry().deregister(&mut st.conns[c].sock);
    let old = std::mem::replace(&mut st.conns[c], connect(poll, addr, token));
    if let Some(due) = old.due {
        if due >= measure_from {
            st.errors += 1;
        }
        st.idle.push_back(c);
    }
}

/// Status and total length of the whole response at the start of `buf`, once it is all
/// there (`Content-Length` bodies only: what callhook and nginx send here).
fn response_len(buf: &[u8]) -> Option<(u16, usize)> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let status: u16 = head.get(9..12)?.parse().ok()?;
    let body = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    (buf.len() >= head_end + body).then_some((status, head_end + body))
}
