use super::*;

#[test]
fn seed_payloads_are_sent_compact_and_unchanged() {
    let p = prepare(&INBOUND_STEPS[7], &[], "/webhooks").unwrap();
    let body = std::str::from_utf8(&p.body).unwrap();
    assert!(body.starts_with(r#"{"headers":{},"end_time":"#), "{body}");
    assert!(
        body.contains(r#""from":" 441234567890""#),
        "leading space kept"
    );
    assert_eq!(p.path, "/webhooks/voice/event");
    assert_eq!(p.signed_payload, p.body.to_vec());
}

#[test]
fn get_answers_carry_the_query_and_hash_its_json() {
    let p = prepare(&INBOUND_STEPS[0], &[], "/webhooks").unwrap();
    assert_eq!(
        p.path,
        "/webhooks/voice/answer?from=441234567890&to=442038297050\
         &uuid=0779a56d002f1c7f47f82ef5fe84ab79\
         &conversation_uuid=CON-8f5a100c-fbce-4218-8d4b-16341335bcd6"
    );
    assert_eq!(
        p.signed_payload,
        br#"{"from":"441234567890","to":"442038297050","uuid":"0779a56d002f1c7f47f82ef5fe84ab79","conversation_uuid":"CON-8f5a100c-fbce-4218-8d4b-16341335bcd6"}"#
    );
}

#[test]
fn fresh_ids_keep_their_shape_and_replace_every_occurrence() {
    let ids = IdGen::new();
    let a = ids.like("CON-8f5a100c-fbce-4218-8d4b-16341335bcd6");
    assert!(a.starts_with("CON-") && a.len() == 40, "{a}");
    assert_eq!(ids.like("0779a56d002f1c7f47f82ef5fe84ab79").len(), 32);
    assert!(
        ids.like("knocker:568e4e01-d423-459b-9556-7d1b0a674edc")
            .starts_with("knocker:")
    );
    assert_ne!(ids.uuid(), ids.uuid());
    let subs: Vec<(String, String)> = INBOUND_IDS
        .iter()
        .map(|id| (format!("\"{id}\""), format!("\"{}\"", ids.like(id))))
        .collect();
    for step in INBOUND_STEPS {
        let p = prepare(step, &subs, "").unwrap();
        let text = format!("{}{}", p.path, String::from_utf8_lossy(&p.body));
        for id in INBOUND_IDS {
            assert!(!text.contains(id), "{id} left in {text}");
        }
    }
}

#[test]
fn tokens_verify_with_an_independent_hmac() {
    let s = Signer::new("secret", "key1", Some("app1".into())).unwrap();
    let t = s.token(b"{}", "j1");
    let parts: Vec<&str> = t.split('.').collect();
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[0], "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9");
    let claims: Value = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(claims["iss"], "Vonage");
    assert_eq!(claims["jti"], "j1");
    assert_eq!(claims["api_key"], "key1");
    assert_eq!(claims["application_id"], "app1");
    assert_eq!(
        claims["payload_hash"],
        "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    );
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"secret").unwrap();
    mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
    mac.verify_slice(&B64.decode(parts[2]).unwrap()).unwrap();
}

fn reply(body: &str) -> Response {
    Response {
        status: 200,
        content_type: "application/json".into(),
        body: Bytes::copy_from_slice(body.as_bytes()),
        latency: Duration::ZERO,
    }
}

#[test]
fn ncco_checks() {
    let mut q = Map::new();
    q.insert("to".into(), Value::from("447700900000"));
    let seed_in = r#"[{"action":"talk","text":"x"},{"action":"connect","endpoint":[{"type":"app","user":"Alice"}]}]"#;
    assert_eq!(
        check_ncco(&reply(seed_in), Some(SeedNcco::TalkThenConnectAlice), &q).unwrap(),
        "talk, connect(app Alice)"
    );
    let phone = r#"[{"action":"connect","endpoint":[{"type":"phone","number":"447700900000"}]}]"#;
    assert!(check_ncco(&reply(phone), Some(SeedNcco::ConnectDialledPhone), &q).is_ok());
    assert!(check_ncco(&reply(phone), Some(SeedNcco::TalkThenConnectAlice), &q).is_err());
    assert!(check_ncco(&reply(phone), None, &q).is_ok());
    for bad in ["{}", "[]", "[1]", r#"[{"text":"x"}]"#, "not json"] {
        assert!(check_ncco(&reply(bad), None, &q).is_err(), "{bad}");
    }
    let mut html = reply(phone);
    html.content_type = "text/html".into();
    assert!(check_ncco(&html, None, &q).is_err());
}

#[test]
fn urls() {
    assert_eq!(
        check_base("http://127.0.0.1:8080/").unwrap(),
        "http://127.0.0.1:8080"
    );
    assert!(check_base("https://example.com").is_err());
    assert!(check_base("127.0.0.1:8080").is_err());
    assert!(check_base("http://h/?a=b").is_err());
    assert_eq!(enc("a b/é"), "a%20b%2F%C3%A9");
}

#[test]
fn percentiles() {
    let v: Vec<u32> = (1..=100).map(|x| x * 1000).collect();
    assert_eq!(percentile(&v, 0.5), 50.0);
    assert_eq!(percentile(&v, 0.99), 99.0);
    assert_eq!(percentile(&[], 0.5), 0.0);
}

#[test]
fn rates_outside_what_a_pause_can_hold_are_refused() {
    for bad in ["0", "-1", "1e-300", "NaN", "inf", "2e6"] {
        assert!(super::args::parse_rate(bad).is_err(), "{bad}");
    }
    assert_eq!(super::args::parse_rate("0.5"), Ok(0.5));
    assert_eq!(super::args::parse_rate("250"), Ok(250.0));
}

#[test]
fn signing_claims_without_a_secret_are_refused() {
    use clap::Parser;
    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: super::SimulateArgs,
    }
    let base = ["t", "--url", "http://127.0.0.1:9", "messages"];
    for extra in [&["--api-key", "k"][..], &["--application-id", "a"][..]] {
        let args = [&base[..], extra].concat();
        let e = T::try_parse_from(&args).err();
        assert!(
            e.as_ref()
                .is_some_and(|e| e.to_string().contains("--secret")),
            "{args:?}: {e:?}"
        );
    }
    let ok = T::try_parse_from([&base[..], &["--secret", "s", "--api-key", "k"]].concat());
    assert!(ok.is_ok(), "{:?}", ok.err());
}
