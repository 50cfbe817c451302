//! Label and field selectors: parsing the query-string forms and matching objects.
//!
//! The grammar follows upstream's `labels.Parse`: requirements separated by commas,
//! each one of `k`, `!k`, `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`,
//! `k>n`, `k<n`. Field selectors allow only `=`, `==` and `!=`.

use std::collections::BTreeMap;

use serde_json::Value;

/// A selector that could not be parsed; the message is shown to the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

/// The operator of one requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operator {
    Equals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

/// One requirement of a selector: a key, an operator and values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub op: Operator,
    pub values: Vec<String>,
}

impl Requirement {
    /// Whether the value of the requirement's key (None: no such label) meets it.
    fn matches(&self, value: Option<&str>) -> bool {
        let listed = |v: &str| self.values.iter().any(|x| x == v);
        match self.op {
            Operator::Equals | Operator::In => value.is_some_and(listed),
            Operator::NotEquals | Operator::NotIn => value.is_none_or(|v| !listed(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(v), Some(bound)) = (value, self.values.first()) else {
                    return false;
                };
                let (Ok(v), Ok(bound)) = (v.parse::<i64>(), bound.parse::<i64>()) else {
                    return false;
                };
                if self.op == Operator::GreaterThan {
                    v > bound
                } else {
                    v < bound
                }
            }
        }
    }
}

/// A label selector: every requirement must hold. The empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub requirements: Vec<Requirement>,
    /// A selector that matches nothing (a nil `LabelSelector` in some contexts).
    pub nothing: bool,
}

impl LabelSelector {
    pub fn everything() -> Self {
        LabelSelector::default()
    }

    pub fn nothing() -> Self {
        LabelSelector {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty() && !self.nothing
    }

    /// Parses the string form used in `?labelSelector=`.
    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        let requirements = Parser::new(input).parse_label_selector()?;
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// Builds a selector from a `metav1.LabelSelector` object (`matchLabels` and
    /// `matchExpressions`). A JSON `null` matches nothing, `{}` matches everything.
    pub fn from_object(selector: &Value) -> Result<Self, SelectorError> {
        if selector.is_null() {
            return Ok(LabelSelector::nothing());
        }
        let mut requirements = Vec::new();
        if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in labels {
                let v = v.as_str().unwrap_or_default();
                requirements.push(Requirement {
                    key: k.clone(),
                    op: Operator::Equals,
                    values: vec![v.to_string()],
                });
            }
        }
        if let Some(exprs) = selector.get("matchExpressions").and_then(Value::as_array) {
            for e in exprs {
                let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
                let values: Vec<String> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                let op = match e.get("operator").and_then(Value::as_str).unwrap_or("") {
                    "In" => Operator::In,
                    "NotIn" => Operator::NotIn,
                    "Exists" => Operator::Exists,
                    "DoesNotExist" => Operator::DoesNotExist,
                    other => {
                        return Err(SelectorError(format!(
                            "{other:?} is not a valid label selector operator"
                        )));
                    }
                };
                if matches!(op, Operator::In | Operator::NotIn) && values.is_empty() {
                    return Err(SelectorError(
                        "for 'in', 'notin' operators, values set can't be empty".into(),
                    ));
                }
                requirements.push(Requirement {
                    key: key.to_string(),
                    op,
                    values,
                });
            }
        }
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// Builds a selector that requires every `key=value` of a map (Service selectors,
    /// ReplicationController selectors).
    pub fn from_map(labels: &serde_json::Map<String, Value>) -> Self {
        let requirements = labels
            .iter()
            .map(|(k, v)| Requirement {
                key: k.clone(),
                op: Operator::Equals,
                values: vec![v.as_str().unwrap_or_default().to_string()],
            })
            .collect();
        LabelSelector {
            requirements,
            nothing: false,
        }
    }

    /// Whether a set of labels (a JSON object of strings, or absent) matches.
    pub fn matches(&self, labels: Option<&Value>) -> bool {
        if self.nothing {
            return false;
        }
        self.requirements
            .iter()
            .all(|r| r.matches(labels.and_then(|l| l.get(&r.key)).and_then(Value::as_str)))
    }

    /// Whether a label map matches.
    pub fn matches_map(&self, labels: &BTreeMap<String, String>) -> bool {
        if self.nothing {
            return false;
        }
        self.requirements
            .iter()
            .all(|r| r.matches(labels.get(&r.key).map(String::as_str)))
    }
}

impl std::fmt::Display for LabelSelector {
    /// The canonical string form, as `kubectl` and Scale's `status.selector` print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts: Vec<String> = self
            .requirements
            .iter()
            .map(|r| match r.op {
                Operator::Equals => format!("{}={}", r.key, r.values[0]),
                Operator::NotEquals => format!("{}!={}", r.key, r.values[0]),
                Operator::In => format!("{} in ({})", r.key, sorted(&r.values).join(",")),
                Operator::NotIn => format!("{} notin ({})", r.key, sorted(&r.values).join(",")),
                Operator::Exists => r.key.clone(),
                Operator::DoesNotExist => format!("!{}", r.key),
                Operator::GreaterThan => format!("{}>{}", r.key, r.values[0]),
                Operator::LessThan => format!("{}<{}", r.key, r.values[0]),
            })
            .collect();
        parts.sort();
        f.write_str(&parts.join(","))
    }
}

fn sorted(values: &[String]) -> Vec<String> {
    let mut v = values.to_vec();
    v.sort();
    v
}

/// A field selector (`?fieldSelector=`): equality requirements on named fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    pub requirements: Vec<FieldRequirement>,
}

/// One `field=value` or `field!=value` requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub value: String,
    pub equal: bool,
}

impl FieldSelector {
    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for part in split_unescaped_commas(input) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (field, value, equal) = if let Some((f, v)) = part.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, v, true)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, v, true)
            } else {
                return Err(SelectorError(format!(
                    "invalid selector: '{input}'; can't understand '{part}'"
                )));
            };
            requirements.push(FieldRequirement {
                field: field.trim().to_string(),
                value: unescape_field_value(value.trim()),
                equal,
            });
        }
        Ok(FieldSelector { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether every requirement holds, given a lookup of an object's selectable fields.
    /// A field the object does not have compares as the empty string.
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements.iter().all(|r| {
            let v = get(&r.field).unwrap_or_default();
            (v == r.value) == r.equal
        })
    }

    /// The value required by an equality on `field`, if the selector has one.
    pub fn required_value(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.equal && r.field == field)
            .map(|r| r.value.as_str())
    }
}

fn split_unescaped_commas(input: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut escaped = false;
    for c in input.chars() {
        if escaped {
            cur.push('\\');
            cur.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    parts.push(cur);
    parts
}

fn unescape_field_value(v: &str) -> String {
    let mut out = String::new();
    let mut escaped = false;
    for c in v.chars() {
        if escaped {
            out.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else {
            out.push(c);
        }
    }
    out
}

/// A small hand-written lexer and parser for the label selector grammar.
struct Parser<'a> {
    input: &'a str,
    chars: Vec<char>,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Self {
        Parser {
            input,
            chars: input.chars().collect(),
            pos: 0,
        }
    }

    fn err(&self, msg: impl Into<String>) -> SelectorError {
        SelectorError(format!(
            "unable to parse requirement: {} (selector {:?})",
            msg.into(),
            self.input
        ))
    }

    fn skip_ws(&mut self) {
        while self.pos < self.chars.len() && self.chars[self.pos].is_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn eat(&mut self, s: &str) -> bool {
        let n = s.chars().count();
        if self.pos + n <= self.chars.len()
            && self.chars[self.pos..self.pos + n]
                .iter()
                .copied()
                .eq(s.chars())
        {
            self.pos += n;
            true
        } else {
            false
        }
    }

    fn ident(&mut self) -> String {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_whitespace() || matches!(c, ',' | '=' | '!' | '(' | ')' | '<' | '>') {
                break;
            }
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }

    fn parse_label_selector(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut reqs = Vec::new();
        self.skip_ws();
        if self.peek().is_none() {
            return Ok(reqs);
        }
        loop {
            reqs.push(self.requirement()?);
            self.skip_ws();
            match self.peek() {
                None => break,
                Some(',') => {
                    self.pos += 1;
                }
                Some(c) => {
                    return Err(self.err(format!("found '{c}', expected: ',' or 'end of string'")));
                }
            }
        }
        Ok(reqs)
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        self.skip_ws();
        let negated = self.eat("!");
        self.skip_ws();
        let key = self.ident();
        if key.is_empty() {
            return Err(self.err("found '', expected: identifier"));
        }
        validate_label_key(&key).map_err(|e| self.err(e))?;
        if negated {
            return Ok(Requirement {
                key,
                op: Operator::DoesNotExist,
                values: vec![],
            });
        }
        self.skip_ws();
        let op = if self.eat("==") || self.eat("=") {
            Operator::Equals
        } else if self.eat("!=") {
            Operator::NotEquals
        } else if self.eat(">") {
            Operator::GreaterThan
        } else if self.eat("<") {
            Operator::LessThan
        } else if self.word_ahead("notin") {
            self.pos += 5;
            Operator::NotIn
        } else if self.word_ahead("in") {
            self.pos += 2;
            Operator::In
        } else {
            match self.peek() {
                None | Some(',') => {
                    return Ok(Requirement {
                        key,
                        op: Operator::Exists,
                        values: vec![],
                    });
                }
                Some(c) => {
                    return Err(self.err(format!(
                        "found '{c}', expected: in, notin, =, ==, !=, gt, lt"
                    )));
                }
            }
        };
        self.skip_ws();
        let values = if matches!(op, Operator::In | Operator::NotIn) {
            if !self.eat("(") {
                return Err(self.err("found '', expected: '('"));
            }
            let mut values = Vec::new();
            loop {
                self.skip_ws();
                if self.eat(")") {
                    break;
                }
                let v = self.ident();
                validate_label_value(&v).map_err(|e| self.err(e))?;
                values.push(v);
                self.skip_ws();
                if self.eat(",") {
                    continue;
                }
                if self.eat(")") {
                    break;
                }
                return Err(self.err("found '', expected: ',', ')'"));
            }
            values
        } else {
            let v = self.ident();
            if matches!(op, Operator::GreaterThan | Operator::LessThan) && v.parse::<i64>().is_err()
            {
                return Err(self.err(format!(
                    "for 'Gt', 'Lt' operators, the value must be an integer, not {v:?}"
                )));
            }
            validate_label_value(&v).map_err(|e| self.err(e))?;
            vec![v]
        };
        Ok(Requirement { key, op, values })
    }

    fn word_ahead(&self, word: &str) -> bool {
        let n = word.len();
        if self.pos + n > self.chars.len() {
            return false;
        }
        let w: String = self.chars[self.pos..self.pos + n].iter().collect();
        if w != word {
            return false;
        }
        matches!(self.chars.get(self.pos + n), Some(c) if c.is_whitespace() || *c == '(')
    }
}

fn validate_label_key(key: &str) -> Result<(), String> {
    let errs = crate::meta::validate_qualified_name(key);
    if errs.is_empty() {
        Ok(())
    } else {
        Err(format!("invalid label key {key:?}: {}", errs.join("; ")))
    }
}

fn validate_label_value(v: &str) -> Result<(), String> {
    let errs = crate::meta::validate_label_value(v);
    if errs.is_empty() {
        Ok(())
    } else {
        Err(format!("invalid label value: {v:?}: {}", errs.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> Option<Value> {
        Some(v)
    }

    #[test]
    fn equality_and_sets() {
        let s = LabelSelector::parse("app=web, tier in (fe,be),!canary,env!=prod").unwrap();
        assert!(s.matches(labels(json!({"app":"web","tier":"fe"})).as_ref()));
        assert!(!s.matches(labels(json!({"app":"web","tier":"db"})).as_ref()));
        assert!(!s.matches(labels(json!({"app":"web","tier":"fe","canary":"1"})).as_ref()));
        assert!(!s.matches(labels(json!({"app":"web","tier":"fe","env":"prod"})).as_ref()));
        assert!(s.matches(labels(json!({"app":"web","tier":"be","env":"dev"})).as_ref()));
    }

    #[test]
    fn exists_notin_and_numbers() {
        let s = LabelSelector::parse("app,tier notin (x),rank>3").unwrap();
        assert!(s.matches(labels(json!({"app":"","rank":"4"})).as_ref()));
        assert!(!s.matches(labels(json!({"app":"a","rank":"3"})).as_ref()));
        assert!(!s.matches(labels(json!({"rank":"9"})).as_ref()));
    }

    #[test]
    fn empty_matches_everything_and_bad_input_is_refused() {
        assert!(LabelSelector::parse("").unwrap().matches(None));
        assert!(LabelSelector::parse("a=(").is_err());
        assert!(LabelSelector::parse("a in b").is_err());
        assert!(LabelSelector::parse("-bad=x").is_err());
    }

    #[test]
    fn from_object_and_display() {
        let s = LabelSelector::from_object(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]}]
        }))
        .unwrap();
        assert_eq!(s.to_string(), "app=web,tier in (a,b)");
        assert!(
            !LabelSelector::from_object(&Value::Null)
                .unwrap()
                .matches(None)
        );
        assert!(
            LabelSelector::from_object(&json!({}))
                .unwrap()
                .matches(None)
        );
    }

    #[test]
    fn field_selectors() {
        let s = FieldSelector::parse("metadata.name=web,status.phase!=Running").unwrap();
        let obj = |f: &str| match f {
            "metadata.name" => Some("web".to_string()),
            "status.phase" => Some("Pending".to_string()),
            _ => None,
        };
        assert!(s.matches(obj));
        assert_eq!(s.required_value("metadata.name"), Some("web"));
        assert!(FieldSelector::parse("nonsense").is_err());
    }
}
