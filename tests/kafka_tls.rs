//! Kafka over TLS, as managed Kafka services require: the forwarder checks the brokers'
//! certificate against `ssl.ca.location`, delivers through TLS, and with a certificate it
//! does not trust delivers nothing and loses nothing.
//!
//! tansu 0.6 takes `--cert`/`--key` but serves no TLS, so a rustls terminator in this test
//! sits in front of a real broker that advertises the terminator's address: every
//! connection a client makes to that broker, bootstrap and partition leader alike, goes
//! through TLS. The terminator only relays bytes; the broker is tansu.

mod common;
use common::kafka::*;
use common::*;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A CA (written to `dir/name.pem`) and, signed by it, a certificate for 127.0.0.1.
fn ca_and_leaf(dir: &Path, name: &str) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, format!("callhook test CA {name}"));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), ca_cert.pem()).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, "tansu");
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    (
        leaf_cert.der().clone(),
        PrivatePkcs8KeyDer::from(leaf_key.serialize_der()).into(),
    )
}

/// Handshakes the terminator completed and refused.
#[derive(Default)]
struct Counts {
    ok: AtomicUsize,
    failed: AtomicUsize,
}

/// Terminates TLS on `listener` and relays each connection to the broker on `upstream`,
/// on a thread and runtime of its own (the consumer below blocks its thread).
fn terminator(
    listener: std::net::TcpListener,
    upstream: u16,
    chain: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
) -> Arc<Counts> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![chain], key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(cfg));
    let counts = Arc::new(Counts::default());
    let c = counts.clone();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, c) = (acceptor.clone(), c.clone());
                tokio::spawn(async move {
                    let mut tls = match acceptor.accept(tcp).await {
                        Ok(tls) => tls,
                        Err(_) => {
                            c.failed.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    };
                    c.ok.fetch_add(1, Ordering::SeqCst);
                    if let Ok(mut broker) = TcpStream::connect(("127.0.0.1", upstream)).await {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut broker).await;
                    }
                });
            }
        });
    });
    counts
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tls_config(brokers: &str, p: &str) -> String {
    let extra = "flush_timeout_ms = 1000\n[kafka.properties]\n\"security.protocol\" = \"ssl\"\n";
    kafka_config(brokers, p, extra)
}

async fn post_events(gw: &Gateway, uuids: &[String]) {
    for u in uuids {
        let body = format!(r#"{{"uuid":"{u}","conversation_uuid":"CON-tls","status":"started"}}"#);
        let r = gw.post("/webhooks/voice/event", body).await;
        assert_eq!(r.status, 200, "{u}");
    }
}

#[tokio::test]
async fn events_reach_kafka_over_tls_and_an_untrusted_broker_gets_none() {
    let _ = bootstrap(); // the suite's broker install must exist: this test starts its own
    let tmp = tempfile::tempdir().unwrap();
    let (chain, key) = ca_and_leaf(tmp.path(), "trusted");
    // A second CA that signed nothing the broker shows.
    let _ = ca_and_leaf(tmp.path(), "other");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tls_port = listener.local_addr().unwrap().port();
    let broker = Broker {
        port: free_port(),
        env: vec![(
            "KAFKA_LOCAL_ADVERTISE".into(),
            format!("127.0.0.1:{tls_port}"),
        )],
    };
    let counts = terminator(listener, broker.port, chain, key);
    broker.run("start");
    let brokers = format!("127.0.0.1:{tls_port}");
    let p = unique("tls");
    let data = tmp.path().join("data");
    let ca = |name: &str| tmp.path().join(format!("{name}.pem")).display().to_string();

    // 1. The CA given does not vouch for the broker: TLS is attempted and refused, nothing
    //    reaches Kafka, and every event is still accepted into the spool.
    let first: Vec<String> = (0..3).map(|i| format!("tls-{i}")).collect();
    let other = ca("other");
    let mut gw = Gateway::start_in(
        &data,
        &tls_config(&brokers, &p),
        &[("CALLHOOK_KAFKA__PROPERTIES__SSL__CA__LOCATION", &other)],
    );
    post_events(&gw, &first).await;
    // Several attempts (librdkafka keeps reconnecting), so "none accepted" is not just
    // "none tried yet".
    let deadline = Instant::now() + Duration::from_secs(60);
    while counts.failed.load(Ordering::SeqCst) < 3 && counts.ok.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "fewer than 3 TLS handshakes attempted in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let produced = format!("callhook_kafka_produced_total{{topic=\"{p}.voice.event\"}}");
    assert_eq!(gw.metric(&produced).await, 0.0);
    assert_eq!(
        counts.ok.load(Ordering::SeqCst),
        0,
        "a broker certificate from another CA was accepted"
    );
    assert_eq!(gw.tail(&[]).len(), first.len(), "every event spooled");
    assert_eq!(gw.terminate(), Some(0));
    drop(gw);

    // 2. The right CA (from the environment, as a Secret would give it): the spooled
    //    events and new ones arrive, in order, through TLS only.
    let second: Vec<String> = (3..6).map(|i| format!("tls-{i}")).collect();
    let trusted = ca("trusted");
    let gw = Gateway::start_in(
        &data,
        &tls_config(&brokers, &p),
        &[("CALLHOOK_KAFKA__PROPERTIES__SSL__CA__LOCATION", &trusted)],
    );
    post_events(&gw, &second).await;
    let topic = format!("{p}.voice.event");
    let got = tokio::task::spawn_blocking(move || {
        consume_with(
            &brokers,
            &[("security.protocol", "ssl"), ("ssl.ca.location", &trusted)],
            &[&topic],
            6,
            Duration::from_secs(60),
        )
    })
    .await
    .unwrap();
    let uuids: Vec<String> = got
        .iter()
        .map(|g| serde_json::from_slice::<serde_json::Value>(&g.value).unwrap()["uuid"].to_string())
        .collect();
    let want: Vec<String> = first
        .iter()
        .chain(&second)
        .map(|u| format!("\"{u}\""))
        .collect();
    assert_eq!(uuids, want);
    assert!(counts.ok.load(Ordering::SeqCst) > 0);
    gw.wait_metric(&produced, 6.0).await;
}
