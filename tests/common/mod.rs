//! Test harness: starts the real `callhook` binary on 127.0.0.1:0 with its own data dir
//! and config, and talks HTTP/1.1 to it.
#![allow(dead_code)]

pub mod kafka;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

pub const BIN: &str = env!("CARGO_BIN_EXE_callhook");

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

pub fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The fixture as Vonage puts it on the wire: compact JSON (whitespace outside strings
/// removed, key order and every value's spelling kept).
pub fn compact(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len());
    let (mut in_str, mut esc) = (false, false);
    for &b in json {
        if in_str {
            out.push(b);
            if esc {
                esc = false;
            } else if b == b'\\' {
                esc = true;
            } else if b == b'"' {
                in_str = false;
            }
        } else if !b.is_ascii_whitespace() {
            in_str = b == b'"';
            out.push(b);
        }
    }
    out
}

/// A flat JSON fixture of strings as the query string Vonage would send (received order).
pub fn fixture_query(name: &str) -> String {
    let v: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&fixture(name)).unwrap();
    v.iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                enc(k),
                enc(v.as_str().expect("query fixtures hold strings"))
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A running gateway process. Killed on drop.
pub struct Gateway {
    pub child: Child,
    pub addr: SocketAddr,
    /// `server.ops_listen`'s address, when configured.
    pub ops: Option<SocketAddr>,
    pub data: PathBuf,
    pub config: PathBuf,
    /// Its log lines, for a gateway started with [`Gateway::start_logged`].
    log: Option<std::sync::Arc<std::sync::Mutex<Vec<String>>>>,
    /// The spool's next sequence number when it started (records from earlier runs), if
    /// /metrics could be read then.
    start_seq: Option<f64>,
    _tmp: Option<tempfile::TempDir>,
}

pub struct Reply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

impl Gateway {
    /// Starts with `extra_toml` appended to a config that listens on an ephemeral port.
    pub fn start(extra_toml: &str) -> Gateway {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let mut g = Self::start_in(&data, extra_toml, &[]);
        g._tmp = Some(tmp);
        g
    }

    /// Like [`Gateway::start`], keeping its log (stderr) for [`Gateway::wait_log`].
    pub fn start_logged(extra_toml: &str) -> Gateway {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let (mut cmd, config) = Self::command(&data, extra_toml);
        cmd.stderr(Stdio::piped());
        let mut g = Self::spawn(cmd, &data, &config);
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = log.clone();
        let stderr = g.child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        g.log = Some(log);
        g._tmp = Some(tmp);
        g
    }

    /// The first log line containing `needle`, waiting up to 10 s for it.
    pub async fn wait_log(&self, needle: &str) -> String {
        let log = self.log.as_ref().expect("started with start_logged");
        for _ in 0..200 {
            if let Some(l) = log.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no log line with {needle:?} in {:#?}", log.lock().unwrap());
    }

    /// Starts with a complete config file (e.g. the shipped example) on an ephemeral port.
    pub fn start_with_config(path: &Path) -> Gateway {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .arg("--config")
            .arg(path)
            .arg("--data-dir")
            .arg(&data)
            .arg("--listen")
            .arg("127.0.0.1:0");
        let mut g = Self::spawn(cmd, &data, path);
        g._tmp = Some(tmp);
        g
    }

    /// Starts on an existing data dir (restart tests).
    pub fn start_in(data: &Path, extra_toml: &str, env: &[(&str, &str)]) -> Gateway {
        let (mut cmd, config) = Self::command(data, extra_toml);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self::spawn(cmd, data, &config)
    }

    /// `callhook serve` on `data`, with a config listening on an ephemeral port.
    fn command(data: &Path, extra_toml: &str) -> (Command, PathBuf) {
        std::fs::create_dir_all(data).unwrap();
        let config = data.with_extension("toml");
        std::fs::write(
            &config,
            format!("[server]\nlisten = \"127.0.0.1:0\"\n{extra_toml}"),
        )
        .unwrap();
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(data);
        (cmd, config)
    }

    fn spawn(mut cmd: Command, data: &Path, config: &Path) -> Gateway {
        cmd.env_remove("CALLHOOK_LISTEN")
            .env_remove("CALLHOOK_KAFKA_BROKERS")
            .env("RUST_LOG", "warn");
        let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // The ops listener's line (if any) comes first, then the webhook listener's.
            let mut lines = BufReader::new(stdout).lines();
            while let Some(Ok(line)) = lines.next() {
                let last = !line.starts_with("callhook ops listening on ");
                let _ = tx.send(line);
                if last {
                    break;
                }
            }
            for _ in lines {}
        });
        let mut ops = None;
        let line = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("callhook did not start (exit {:?})", child.wait()));
            match line.strip_prefix("callhook ops listening on http://") {
                Some(a) => ops = Some(a.parse().unwrap()),
                None => break line,
            }
        };
        let addr = line
            .strip_prefix("callhook listening on http://")
            .or_else(|| line.strip_prefix("callhook listening on https://"))
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();
        let start_seq = blocking_get(ops.unwrap_or(addr), "/metrics")
            .map(|text| metric_sum(&text, "callhook_spool_next_seq"));
        Gateway {
            child,
            addr,
            ops,
            data: data.to_path_buf(),
            config: config.to_path_buf(),
            log: None,
            start_seq,
            _tmp: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        request(self.addr, method, path, headers, body.into()).await
    }

    pub async fn post(&self, path: &str, body: impl Into<Bytes>) -> Reply {
        self.request("POST", path, &[("content-type", "application/json")], body)
            .await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.request("GET", path, &[], Bytes::new()).await
    }

    /// A gauge or counter series from /metrics, `name` with its labels as rendered (0 when
    /// absent: a labelled series appears once first counted). The metric must be one
    /// callhook has, so a misspelt name fails instead of reading 0. Read from the ops
    /// listener when there is one.
    pub async fn metric(&self, name: &str) -> f64 {
        let base = name.split('{').next().unwrap_or(name);
        assert!(
            callhook::telemetry::metrics::CATALOGUE
                .iter()
                .any(|(n, ..)| *n == base),
            "{base} is not in callhook's metric catalogue"
        );
        let scrape = request(
            self.ops.unwrap_or(self.addr),
            "GET",
            "/metrics",
            &[],
            Bytes::new(),
        );
        let text = String::from_utf8(scrape.await.body.to_vec()).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// Polls /metrics until `name` reads `want` (10 s at most).
    pub async fn wait_metric(&self, name: &str, want: f64) {
        self.wait_metric_within(name, want, Duration::from_secs(10))
            .await;
    }

    /// [`Gateway::wait_metric`] for up to `within`.
    pub async fn wait_metric_within(&self, name: &str, want: f64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let v = self.metric(name).await;
            if v == want {
                return;
            }
            assert!(Instant::now() < deadline, "{name} stayed {v}, want {want}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, then wait for exit; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        assert_eq!(
            unsafe { libc::kill(pid, libc::SIGTERM) },
            0,
            "kill -TERM {pid}"
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            assert!(
                Instant::now() < deadline,
                "callhook did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the spool holds every record the gateway accepted since it started
    /// (`/metrics`: its next sequence number against the one it started with plus the
    /// accepted count). Answer-path records are queued unawaited: their 200 goes out
    /// before the writer, which lets them gather for a few ms, writes them.
    pub fn settle_spool(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (Some(start), Some(text)) = (
                self.start_seq,
                blocking_get(self.ops.unwrap_or(self.addr), "/metrics"),
            ) else {
                // /metrics unreadable here (TLS, an allowlist): outwait the 10 ms linger.
                std::thread::sleep(Duration::from_millis(200));
                return;
            };
            let next = metric_sum(&text, "callhook_spool_next_seq");
            if next >= start + metric_sum(&text, "callhook_events_accepted_total") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the spool did not catch up with the accepted records in 10 s"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `callhook tail` output, one parsed JSON value per line, once the spool holds every
    /// record accepted so far (see [`Gateway::settle_spool`]).
    pub fn tail(&self, extra: &[&str]) -> Vec<serde_json::Value> {
        self.settle_spool();
        tail_lines(&self.data, extra)
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// The sum of every series of metric `name` in a /metrics text.
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A GET on a fresh connection without an async runtime; the body if the status is 200.
fn blocking_get(addr: SocketAddr, path: &str) -> Option<String> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

pub fn tail_lines(data: &Path, extra: &[&str]) -> Vec<String> {
    let out = Command::new(BIN)
        .arg("tail")
        .arg("--data-dir")
        .arg(data)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tail failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The `uuid` of every spooled record's body, in spool order (`callhook tail`).
pub fn spooled_uuids(data: &Path) -> Vec<String> {
    body_uuids(tail_lines(data, &[]).iter().map(String::as_str))
}

/// The `body.uuid` of each `callhook tail` JSON line, in order.
pub fn body_uuids<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<String> {
    lines
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["body"]["uuid"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// Starts `cmd` (a `callhook serve` at RUST_LOG=info) with its log on a pipe and reads
/// the log until the gateway says it listens; returns its pid and those lines, the process
/// already killed. For tests about what startup logs or sets up.
pub fn startup_log(cmd: &mut Command, inspect: impl FnOnce(u32)) -> Vec<String> {
    let mut child = cmd
        .env_remove("CALLHOOK_CONFIG")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        let done = line.contains("callhook listening");
        seen.push(line);
        if done {
            break;
        }
    }
    inspect(child.id());
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        seen.iter().any(|l| l.contains("callhook listening")),
        "never listened: {seen:?}"
    );
    seen
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request on a fresh connection.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Reply {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = send
        .send_request(req.body(Full::new(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

/// Route for a fixture file, by its name.
pub fn route_for(name: &str) -> &'static str {
    if name.starts_with("messages-status") {
        "/webhooks/messages/status"
    } else if name.starts_with("messages-inbound") {
        "/webhooks/messages/inbound"
    } else if name.starts_with("rtc-") {
        "/webhooks/rtc/event"
    } else if name.contains("answer-fallback") {
        "/webhooks/voice/fallback"
    } else if name.contains("answer") {
        "/webhooks/voice/answer"
    } else {
        "/webhooks/voice/event"
    }
}

pub fn kind_for(name: &str) -> &'static str {
    match route_for(name) {
        "/webhooks/messages/status" => "messages.status",
        "/webhooks/messages/inbound" => "messages.inbound",
        "/webhooks/rtc/event" => "rtc.event",
        "/webhooks/voice/fallback" => "voice.fallback",
        "/webhooks/voice/answer" => "voice.answer",
        _ => "voice.event",
    }
}

/// Every POST-body webhook fixture (not GET queries, NCCOs, claims or app configs).
pub fn body_fixtures() -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| {
                n.ends_with(".json")
                    && !n.contains("query")
                    && !n.starts_with("ncco")
                    && !n.starts_with("jwt")
                    && !n.starts_with("application")
            })
            .collect();
    v.sort();
    v
}

/// Signs like Vonage: HS256 JWT with iat, jti, iss "Vonage", payload_hash = sha256(body)
/// hex, api_key and application_id; made with `jsonwebtoken`, independent of callhook.
pub fn vonage_token(
    secret: &str,
    api_key: &str,
    app: &str,
    payload: &[u8],
    iat: i64,
    jti: &str,
) -> String {
    use sha2::Digest;
    let hash: String = sha2::Sha256::digest(payload)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let claims = serde_json::json!({
        "iat": iat, "jti": jti, "iss": "Vonage", "payload_hash": hash,
        "api_key": api_key, "application_id": app,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The payload a GET webhook's hash covers: its decoded query as compact JSON, in order.
pub fn query_payload(query: &str) -> Vec<u8> {
    let mut m = serde_json::Map::new();
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap();
        m.insert(dec(k), serde_json::Value::from(dec(v)));
    }
    serde_json::to_vec(&serde_json::Value::Object(m)).unwrap()
}

fn dec(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap(), 16).unwrap(),
            );
            i += 3;
        } else {
            out.push(if b[i] == b'+' { b' ' } else { b[i] });
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// Plays a client that pipelines far more requests than the buffers on the way hold (so
/// the server's writes block) and reads 4 KiB of the responses every 250 ms (16 KB/s) for
/// 10 s; panics if the server cuts the connection meanwhile. Use with a header read
/// timeout of 3 s: no read comes more than 250 ms after the last, yet a buffer of 64 KiB
/// or more takes over 4 s to drain.
pub async fn read_slowly_but_steadily<S>(conn: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut rd, mut wr) = tokio::io::split(conn);
    let writer = tokio::spawn(async move {
        let reqs = b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n".repeat(50_000);
        let _ = wr.write_all(&reqs).await;
        wr
    });
    let started = Instant::now();
    let mut got = 0usize;
    let mut chunk = [0u8; 4096];
    while started.elapsed() < Duration::from_secs(10) {
        let n = rd.read(&mut chunk).await.unwrap_or(0);
        assert!(
            n > 0,
            "cut off after {:?} and {got} bytes while reading steadily",
            started.elapsed()
        );
        got += n;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    writer.abort();
}

/// How many pipelined `GET /healthz` requests the slow-reader tests send without reading.
pub const UNREAD_REQUESTS: usize = 200_000;

/// Plays a client that pipelines [`UNREAD_REQUESTS`] requests and reads nothing for
/// `quiet` (well over the server's header read timeout), then everything the server still
/// sends. Returns how many responses came before the server closed the connection;
/// panics if it stayed open.
pub async fn responses_to_a_client_that_stops_reading<S>(conn: S, quiet: Duration) -> usize
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut rd, mut wr) = tokio::io::split(conn);
    let writer = tokio::spawn(async move {
        let reqs = b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n".repeat(UNREAD_REQUESTS);
        // Fails (reset or broken pipe) once the server gives up on the connection.
        let _ = wr.write_all(&reqs).await;
    });
    tokio::time::sleep(quiet).await;
    let mut got = Vec::new();
    let eof = tokio::time::timeout(Duration::from_secs(30), async {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    writer.abort();
    assert!(eof.is_ok(), "the connection stayed open");
    got.windows(9).filter(|w| w == b"HTTP/1.1 ").count()
}

/// `(utime + stime in clock ticks, scheduling policy)` of the gateway's thread `name`.
pub fn thread_stat(pid: u32, name: &str) -> (u64, i32) {
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap();
        // Fields after the parenthesised name start at field 3.
        let f: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        let n = |field: usize| f[field - 3].parse::<u64>().unwrap();
        return (n(14) + n(15), n(41) as i32);
    }
    panic!("no thread {name} in callhook {pid}");
}
