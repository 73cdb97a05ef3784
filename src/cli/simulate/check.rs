//! Answer checks: an NCCO served as JSON, and the seed flow's actions.

use super::*;

/// Checks an answer: an NCCO served as JSON, and (unless `expected` is `None`) the seed
/// flow's actions. Returns a one-line summary of the actions.
pub(super) fn check_ncco(
    resp: &Response,
    expected: Option<SeedNcco>,
    params: &Map<String, Value>,
) -> Result<String, String> {
    if !resp
        .content_type
        .to_ascii_lowercase()
        .starts_with("application/json")
    {
        return Err(format!(
            "content-type is '{}', Vonage expects application/json",
            resp.content_type
        ));
    }
    let ncco: Value =
        serde_json::from_slice(&resp.body).map_err(|e| format!("body is not JSON: {e}"))?;
    let Value::Array(actions) = &ncco else {
        return Err("an NCCO is a JSON array".into());
    };
    if actions.is_empty() {
        return Err("the NCCO is empty: Vonage would hang up at once".into());
    }
    let mut names = Vec::with_capacity(actions.len());
    for (i, a) in actions.iter().enumerate() {
        match a.get("action").and_then(Value::as_str) {
            Some(name) if a.is_object() => names.push(name),
            _ => {
                return Err(format!(
                    "action {i} is not an object with a string 'action'"
                ));
            }
        }
    }
    let summary = actions
        .iter()
        .map(describe_action)
        .collect::<Vec<_>>()
        .join(", ");
    let endpoint0 = |a: &Value| a.get("endpoint").and_then(|e| e.get(0)).cloned();
    match expected {
        None => {}
        Some(SeedNcco::TalkThenConnectAlice) => {
            let ep = (names == ["talk", "connect"])
                .then(|| endpoint0(&actions[1]))
                .flatten();
            let ok = ep.as_ref().is_some_and(|e| {
                e.get("type").and_then(Value::as_str) == Some("app")
                    && e.get("user").and_then(Value::as_str) == Some("Alice")
            });
            if !ok {
                return Err(format!(
                    "expected talk, connect(app Alice) for the seed inbound call, got {summary} \
                     (use --any-ncco for other answer rules)"
                ));
            }
        }
        Some(SeedNcco::ConnectDialledPhone) => {
            let to = params.get("to").and_then(Value::as_str).unwrap_or_default();
            let ep = (names == ["connect"])
                .then(|| endpoint0(&actions[0]))
                .flatten();
            let ok = ep.as_ref().is_some_and(|e| {
                e.get("type").and_then(Value::as_str) == Some("phone")
                    && e.get("number").and_then(Value::as_str) == Some(to)
            });
            if !ok {
                return Err(format!(
                    "expected connect(phone {to}) for the seed app-to-phone call, got {summary} \
                     (use --any-ncco for other answer rules)"
                ));
            }
        }
    }
    Ok(summary)
}

/// `talk`, `connect(app Alice)`, `connect(phone 447700900000)`...
pub(super) fn describe_action(a: &Value) -> String {
    let name = a.get("action").and_then(Value::as_str).unwrap_or("?");
    let Some(ep) = a.get("endpoint").and_then(|e| e.get(0)) else {
        return name.to_owned();
    };
    let ty = ep.get("type").and_then(Value::as_str).unwrap_or("?");
    let target = ["user", "number", "uri", "extension"]
        .iter()
        .find_map(|k| ep.get(*k).and_then(Value::as_str))
        .unwrap_or("");
    format!("{name}({ty} {target})")
}
