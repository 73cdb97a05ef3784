//! Answer routing: `[answer]` config compiled into an [`AnswerPlan`] that
//! picks a rule per call and renders its NCCO.
//!
//! Everything that can be wrong with the config is found by
//! [`AnswerPlan::compile`]; afterwards selecting and rendering cannot fail.
//! Every rule ends in a static NCCO: when a substituted value is invalid the
//! rule walks its chain (`ncco` → `on_invalid` → default `ncco` → default
//! `on_invalid` → built-in talk) and the call is still answered.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use metrics::{Key, Label};

use crate::telemetry::handles::META;
use serde_json::Value;

use super::action::{Action, Ncco};
use super::config::{
    AnswerConfig, DEFAULT_ANSWER_TEXT, DEFAULT_FALLBACK_TEXT, MatchConfig, OneOrMany, RuleConfig,
};
use super::error::{NccoError, Path, rule};
use super::media::TalkAction;
use super::request::{AnswerRequest, normalize_number};
use super::template::Template;
use super::upstream::UpstreamTarget;

/// Name (and metric label) of the default rule; reserved.
pub const DEFAULT_RULE_NAME: &str = "default";
/// Longest rule name, to keep metric labels short.
pub const MAX_RULE_NAME_LEN: usize = 64;
/// `endpoint_type` values Vonage sends.
const ENDPOINT_TYPES: [&str; 5] = ["phone", "sip", "websocket", "app", "vbc"];

/// The compiled `[answer]` config: rules in order plus the default rule.
#[derive(Debug)]
pub struct AnswerPlan {
    rules: Box<[CompiledRule]>,
    default: CompiledRule,
}

/// One rule, ready to match and render.
#[derive(Debug)]
pub struct CompiledRule {
    name: Box<str>,
    application_id: Option<Box<str>>,
    matcher: Matcher,
    /// Tried in order until one renders; the last one is static.
    answer: Box<[Arc<Template>]>,
    /// Same, for the fallback NCCO.
    fallback: Box<[Arc<Template>]>,
    upstream: Option<UpstreamTarget>,
    /// `callhook_answer_rule_hits_total{rule}`, built once: the macro would
    /// allocate its label list on every call.
    hits: Key,
    /// Its handle, resolved on the first hit (registering allocates a handle each time).
    hits_handle: OnceLock<metrics::Counter>,
    /// `callhook_answer_ncco_invalid_total{rule}`: a substituted value was invalid.
    invalid: Key,
}

impl AnswerPlan {
    /// Validates `cfg` and compiles every NCCO. `known_application_ids` are the
    /// applications callhook serves; a rule scoped to another id is refused.
    ///
    /// # Errors
    /// The first problem found, with its path below `answer` (e.g.
    /// `answer.rules[1].ncco[0].endpoint[0].number`).
    pub fn compile(
        cfg: &AnswerConfig,
        known_application_ids: &[&str],
    ) -> Result<AnswerPlan, NccoError> {
        let root = Path::Root("answer");
        let dp = root.key("default");
        let d = &cfg.default;
        let builtin_fallback = Arc::new(Template::fixed(&talk(DEFAULT_FALLBACK_TEXT)));

        let default_fallback = chain(vec![
            optional(d.fallback.as_ref(), &dp.key("fallback"))?,
            Some(builtin_fallback.clone()),
        ]);
        let default_upstream = upstream(d.upstream.as_deref(), d.deadline_ms, &dp)?;
        let default_answer = match (&d.ncco, &default_upstream) {
            (Some(_), Some(_)) => {
                return Err(dp
                    .key("upstream")
                    .error(rule::CONFLICT, "give either ncco or upstream"));
            }
            (None, Some(_)) => default_fallback.clone(),
            (ncco, None) => {
                let ncco = match ncco {
                    Some(v) => Arc::new(config_template(v, &dp.key("ncco"))?),
                    None => Arc::new(Template::fixed(&talk(DEFAULT_ANSWER_TEXT))),
                };
                let on_invalid = optional(d.on_invalid.as_ref(), &dp.key("on_invalid"))?;
                chain(vec![Some(ncco), on_invalid, Some(builtin_fallback)])
            }
        };
        if default_upstream.is_some() && d.on_invalid.is_some() {
            return Err(dp
                .key("on_invalid")
                .error(rule::REQUIRES, "on_invalid applies to ncco, not upstream"));
        }
        let default = CompiledRule::new(
            DEFAULT_RULE_NAME,
            None,
            Matcher::default(),
            default_answer.clone(),
            default_fallback.clone(),
            default_upstream,
        );

        let mut rules: Vec<CompiledRule> = Vec::with_capacity(cfg.rules.len());
        let rules_path = root.key("rules");
        for (i, rc) in cfg.rules.iter().enumerate() {
            let rp = rules_path.index(i);
            check_name(&rc.name, &rp.key("name"))?;
            if rules.iter().any(|r| *r.name == *rc.name) {
                return Err(rp.key("name").error(
                    rule::DUPLICATE,
                    format!("rule name `{}` is used twice", rc.name),
                ));
            }
            if let Some(app) = &rc.application_id
                && !known_application_ids.contains(&app.as_str())
            {
                return Err(rp.key("application_id").error(
                    rule::UNKNOWN_APPLICATION,
                    format!("`{app}` is not a configured application"),
                ));
            }
            rules.push(compile_rule(rc, &rp, &default_answer, &default_fallback)?);
        }
        Ok(AnswerPlan {
            rules: rules.into_boxed_slice(),
            default,
        })
    }

    /// The first rule matching `req`, else the default rule; counts the hit.
    pub fn select(&self, req: &AnswerRequest<'_>) -> &CompiledRule {
        let rule = self
            .rules
            .iter()
            .find(|r| r.matches(req))
            .unwrap_or(&self.default);
        rule.hits_handle
            .get_or_init(|| metrics::with_recorder(|rec| rec.register_counter(&rule.hits, &META)))
            .increment(1);
        rule
    }

    /// The configured rules, in match order.
    pub fn rules(&self) -> &[CompiledRule] {
        &self.rules
    }

    /// The rule used when none matches.
    pub fn default_rule(&self) -> &CompiledRule {
        &self.default
    }
}

impl CompiledRule {
    fn new(
        name: &str,
        application_id: Option<&str>,
        matcher: Matcher,
        answer: Box<[Arc<Template>]>,
        fallback: Box<[Arc<Template>]>,
        upstream: Option<UpstreamTarget>,
    ) -> Self {
        let label = |metric: &'static str| {
            Key::from_parts(metric, vec![Label::new("rule", name.to_owned())])
        };
        CompiledRule {
            name: name.into(),
            application_id: application_id.map(Into::into),
            matcher,
            answer,
            fallback,
            upstream: upstream.map(|u| u.for_rule(name)),
            hits: label("callhook_answer_rule_hits_total"),
            hits_handle: OnceLock::new(),
            invalid: label("callhook_answer_ncco_invalid_total"),
        }
    }

    /// The rule's configured name (`default` for the default rule).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The application this rule is scoped to, if any.
    pub fn application_id(&self) -> Option<&str> {
        self.application_id.as_deref()
    }

    /// Where to ask for the NCCO; `None` means `render_answer` is the answer.
    pub fn upstream(&self) -> Option<&UpstreamTarget> {
        self.upstream.as_ref()
    }

    /// The answer NCCO (a JSON array) for `req`. For an upstream rule this is
    /// its fallback, i.e. what to answer without the upstream. Never fails:
    /// an invalid substitution moves down the rule's chain.
    pub fn render_answer(&self, req: &AnswerRequest<'_>) -> Bytes {
        self.render_chain(&self.answer, req)
    }

    /// The fallback NCCO for `req`: the answer of `/webhooks/voice/fallback`
    /// and of a failed upstream.
    pub fn render_fallback(&self, req: &AnswerRequest<'_>) -> Bytes {
        self.render_chain(&self.fallback, req)
    }

    fn render_chain(&self, chain: &[Arc<Template>], req: &AnswerRequest<'_>) -> Bytes {
        for (i, template) in chain.iter().enumerate() {
            if let Some(bytes) = template.render(req) {
                if i > 0 {
                    metrics::with_recorder(|rec| {
                        rec.register_counter(&self.invalid, &META).increment(1)
                    });
                    tracing::debug!(rule = %self.name, step = i, "substituted value invalid; used a later NCCO of the rule");
                }
                return bytes;
            }
        }
        // Unreachable by construction (every chain ends in a static
        // template), but an answer must never be missing.
        Template::fixed(&talk(DEFAULT_FALLBACK_TEXT))
            .render(req)
            .unwrap_or_default()
    }

    fn matches(&self, req: &AnswerRequest<'_>) -> bool {
        if let Some(app) = &self.application_id
            && req.application_id.as_deref() != Some(app)
        {
            return false;
        }
        self.matcher.matches(req)
    }
}

fn compile_rule(
    rc: &RuleConfig,
    rp: &Path<'_>,
    default_answer: &[Arc<Template>],
    default_fallback: &[Arc<Template>],
) -> Result<CompiledRule, NccoError> {
    let matcher = Matcher::compile(&rc.matcher, &rp.key("match"))?;
    let fallback = match optional(rc.fallback.as_ref(), &rp.key("fallback"))? {
        Some(t) => chain(
            std::iter::once(Some(t))
                .chain(default_fallback.iter().cloned().map(Some))
                .collect(),
        ),
        None => default_fallback.into(),
    };
    let target = upstream(rc.upstream.as_deref(), rc.deadline_ms, rp)?;
    let answer = match (&rc.ncco, &target) {
        (Some(_), Some(_)) => {
            return Err(rp
                .key("upstream")
                .error(rule::CONFLICT, "give either ncco or upstream"));
        }
        (None, None) => {
            return Err(rp
                .key("ncco")
                .error(rule::MISSING_FIELD, "a rule needs ncco or upstream"));
        }
        (None, Some(_)) => {
            if rc.on_invalid.is_some() {
                return Err(rp
                    .key("on_invalid")
                    .error(rule::REQUIRES, "on_invalid applies to ncco, not upstream"));
            }
            fallback.clone()
        }
        (Some(ncco), None) => {
            let mut steps = vec![Some(Arc::new(config_template(ncco, &rp.key("ncco"))?))];
            steps.push(optional(rc.on_invalid.as_ref(), &rp.key("on_invalid"))?);
            steps.extend(default_answer.iter().cloned().map(Some));
            chain(steps)
        }
    };
    Ok(CompiledRule::new(
        &rc.name,
        rc.application_id.as_deref(),
        matcher,
        answer,
        fallback,
        target,
    ))
}

fn optional(
    v: Option<&serde_json::Value>,
    p: &Path<'_>,
) -> Result<Option<Arc<Template>>, NccoError> {
    v.map(|v| config_template(v, p).map(Arc::new)).transpose()
}

/// Drops absent steps and everything after the first static one (unreachable).
fn chain(steps: Vec<Option<Arc<Template>>>) -> Box<[Arc<Template>]> {
    let mut out = Vec::with_capacity(steps.len());
    for step in steps.into_iter().flatten() {
        let last = step.is_static();
        out.push(step);
        if last {
            break;
        }
    }
    out.into_boxed_slice()
}

fn upstream(
    url: Option<&str>,
    deadline_ms: Option<u64>,
    rp: &Path<'_>,
) -> Result<Option<UpstreamTarget>, NccoError> {
    match url {
        Some(url) => UpstreamTarget::parse(
            url,
            deadline_ms,
            &rp.key("upstream"),
            &rp.key("deadline_ms"),
        )
        .map(Some),
        None if deadline_ms.is_some() => Err(rp
            .key("deadline_ms")
            .error(rule::REQUIRES, "deadline_ms needs upstream")),
        None => Ok(None),
    }
}

fn talk(text: &str) -> Ncco {
    Ncco(vec![Action::Talk(TalkAction::new(text))])
}

fn check_name(name: &str, p: &Path<'_>) -> Result<(), NccoError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_RULE_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !ok {
        return Err(p.error(
            rule::FORMAT,
            format!("`{name}`: 1 to {MAX_RULE_NAME_LEN} of A-Z a-z 0-9 _ . -"),
        ));
    }
    if name == DEFAULT_RULE_NAME {
        return Err(p.error(rule::DUPLICATE, "`default` is the name of the default rule"));
    }
    Ok(())
}

/// Compiled `match` conditions. Exact sets are sorted for binary search, so
/// a rule listing many numbers stays cheap.
#[derive(Debug, Default)]
struct Matcher {
    to: Vec<Box<str>>,
    to_prefix: Vec<Box<str>>,
    to_user: Vec<Box<str>>,
    from: Vec<Box<str>>,
    from_prefix: Vec<Box<str>>,
    from_user: Vec<Box<str>>,
    endpoint_type: Vec<Box<str>>,
    custom: Vec<(Box<str>, Vec<Box<str>>)>,
}

impl Matcher {
    fn compile(m: &MatchConfig, p: &Path<'_>) -> Result<Matcher, NccoError> {
        let exact =
            |list: &OneOrMany, key: &str, number: bool| -> Result<Vec<Box<str>>, NccoError> {
                let lp = p.key(key);
                let mut out = Vec::with_capacity(list.0.len());
                for (i, v) in list.0.iter().enumerate() {
                    let v = if number {
                        normalize_number(v)
                    } else {
                        v.trim()
                    };
                    if v.is_empty() {
                        return Err(lp.index(i).error(rule::EMPTY, "must not be empty"));
                    }
                    out.push(Box::from(v));
                }
                out.sort_unstable();
                out.dedup();
                Ok(out)
            };
        let prefixes = |list: &OneOrMany, key: &str| -> Result<Vec<Box<str>>, NccoError> {
            let lp = p.key(key);
            let mut out = Vec::with_capacity(list.0.len());
            for (i, v) in list.0.iter().enumerate() {
                let v = normalize_number(v);
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(lp
                        .index(i)
                        .error(rule::FORMAT, format!("`{v}`: a prefix is digits only")));
                }
                out.push(Box::from(v));
            }
            Ok(out)
        };
        let endpoint_type = exact(&m.endpoint_type, "endpoint_type", false)?;
        for (i, t) in m.endpoint_type.0.iter().enumerate() {
            if !ENDPOINT_TYPES.contains(&t.trim()) {
                return Err(p
                    .key("endpoint_type")
                    .index(i)
                    .error(rule::ENUM, format!("`{t}`: one of {ENDPOINT_TYPES:?}")));
            }
        }
        let mut custom = Vec::with_capacity(m.custom.len());
        for (key, values) in &m.custom {
            let cp = p.key("custom");
            if key.is_empty() {
                return Err(cp.error(rule::EMPTY, "custom_data keys must not be empty"));
            }
            let mut vals: Vec<Box<str>> = values.0.iter().map(|v| Box::from(v.as_str())).collect();
            vals.sort_unstable();
            custom.push((Box::from(key.as_str()), vals));
        }
        Ok(Matcher {
            to: exact(&m.to, "to", true)?,
            to_prefix: prefixes(&m.to_prefix, "to_prefix")?,
            to_user: exact(&m.to_user, "to_user", false)?,
            from: exact(&m.from, "from", true)?,
            from_prefix: prefixes(&m.from_prefix, "from_prefix")?,
            from_user: exact(&m.from_user, "from_user", false)?,
            endpoint_type,
            custom,
        })
    }

    fn matches(&self, req: &AnswerRequest<'_>) -> bool {
        let to = req.to.as_deref().map(normalize_number);
        let from = req.from.as_deref().map(normalize_number);
        let is_app = req.endpoint_type.as_deref() == Some("app");
        in_set(&self.to, to)
            && has_prefix(&self.to_prefix, to)
            && (self.to_user.is_empty()
                || to.is_some_and(|t| (is_app || !all_digits(t)) && contains(&self.to_user, t)))
            && in_set(&self.from, from)
            && has_prefix(&self.from_prefix, from)
            && in_set(&self.from_user, req.from_user.as_deref().map(str::trim))
            && in_set(&self.endpoint_type, req.endpoint_type.as_deref())
            && self
                .custom
                .iter()
                .all(|(key, values)| req.custom(key).is_some_and(|v| contains(values, &v)))
    }
}

/// An empty set is no condition; otherwise the value must be present and listed.
fn in_set(set: &[Box<str>], value: Option<&str>) -> bool {
    set.is_empty() || value.is_some_and(|v| contains(set, v))
}

fn has_prefix(prefixes: &[Box<str>], value: Option<&str>) -> bool {
    prefixes.is_empty()
        || value.is_some_and(|v| all_digits(v) && prefixes.iter().any(|p| v.starts_with(&**p)))
}

fn contains(sorted: &[Box<str>], value: &str) -> bool {
    sorted.binary_search_by(|s| (**s).cmp(value)).is_ok()
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// A config NCCO compiled, after refusing what the TOML source cannot have meant.
fn config_template(value: &Value, path: &Path<'_>) -> Result<Template, NccoError> {
    no_null(value, path)?;
    Template::compile(value, path)
}

/// TOML has no null, so a null in a config NCCO is a number TOML allows and JSON cannot
/// carry (`inf`, `nan`), which serde_json turned into null. Refused with its path: read as
/// an absent field it would vanish silently, and the config could not be rendered back.
fn no_null(value: &Value, path: &Path<'_>) -> Result<(), NccoError> {
    match value {
        Value::Null => Err(path.error(
            rule::TYPE,
            "not a finite number (inf and nan have no JSON form)",
        )),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| no_null(v, &path.index(i))),
        Value::Object(fields) => fields
            .iter()
            .try_for_each(|(k, v)| no_null(v, &path.key(k))),
        _ => Ok(()),
    }
}
