//! Label and field selectors: the string form (`app=web,tier!=db,env in (prod,qa),!legacy`),
//! the manifest form (`matchLabels` / `matchExpressions`, node selector terms with Gt/Lt),
//! and matching, all with Kubernetes semantics.
//!
//! The manifest structs below are plain serde data used inside resource specs; `Selector` is
//! the compiled form every consumer matches with. A `Requirement` is validated when it is
//! built, so matching never fails and never allocates: the scheduler matches many pods against
//! many nodes and cannot afford either.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// `metav1.LabelSelector` as it appears in manifests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One `matchExpressions` entry: operator In, NotIn, Exists or DoesNotExist.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    pub key: String,
    pub operator: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// One node selector term entry (`matchExpressions` / `matchFields` in node affinity):
/// operators In, NotIn, Exists, DoesNotExist, Gt, Lt.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSelectorRequirement {
    pub key: String,
    pub operator: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// How a requirement tests a label. `==` in the string form is the same as `=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    Equals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    /// The label value, read as an integer, is greater than the one value. That value is
    /// also a label value, so (as in Kubernetes) it is a non-negative integer without sign.
    Gt,
    /// The label value, read as an integer, is less than the one value (see `Gt`).
    Lt,
}

/// One test on one label key. Built only through validation (`Requirement::new`, the parsers
/// and the manifest conversions), so its key, values and value count are always valid.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Requirement {
    key: String,
    operator: Operator,
    /// Sorted and without duplicates: the values form a set, as in Kubernetes, and sorting
    /// gives a canonical string form and lets `matches` binary-search.
    values: Vec<String>,
    /// The parsed value of a Gt/Lt requirement (0 otherwise), so matching does not reparse it.
    bound: i64,
}

/// The compiled selector: every requirement must hold. The empty selector matches everything;
/// `Selector::nothing()` matches no label set at all.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Selector {
    /// Sorted by key (stably), as Kubernetes does, so equal selectors print the same.
    requirements: Vec<Requirement>,
    nothing: bool,
}

/// A field selector (`metadata.name=web,status.phase!=Running`): `=`, `==`, `!=` only.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    /// Sorted, so that equal selectors print the same and printing round-trips.
    terms: Vec<FieldTerm>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct FieldTerm {
    field: String,
    negated: bool,
    value: String,
}

/// Why a selector (string or manifest form) was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The string form of a label selector; `position` counts characters from 0.
    #[error("invalid label selector {input:?}: {problem} at position {position}")]
    Label {
        input: String,
        position: usize,
        problem: SelectorProblem,
    },
    /// The string form of a field selector; `position` counts characters from 0.
    #[error("invalid field selector {input:?}: {problem} at position {position}")]
    Field {
        input: String,
        position: usize,
        problem: SelectorProblem,
    },
    /// A requirement built from manifest data or from parts.
    #[error("invalid selector requirement on key {key:?}: {problem}")]
    Requirement {
        key: String,
        problem: SelectorProblem,
    },
}

/// What exactly is wrong, shared by the `SelectorError` variants.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorProblem {
    /// The grammar wanted something else; `found` is `None` at the end of the input.
    #[error("expected {expected}{}", found_text(.found))]
    Expected {
        expected: &'static str,
        found: Option<String>,
    },
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },
    #[error("invalid value {value:?}: {reason}")]
    InvalidValue { value: String, reason: &'static str },
    #[error("operator {operator:?} takes {needs}, got {got}")]
    ValueCount {
        operator: Operator,
        needs: &'static str,
        got: usize,
    },
    #[error("operator {operator:?} needs an integer value, got {value:?}")]
    NotInteger { operator: Operator, value: String },
    #[error("unknown operator {operator:?} (supported: {supported})")]
    UnknownOperator {
        operator: String,
        supported: &'static str,
    },
    #[error("unsupported field {field:?} (supported: metadata.name)")]
    UnsupportedField { field: String },
    #[error("invalid escape sequence {sequence:?} (supported: \\\\, \\, and \\=)")]
    InvalidEscape { sequence: String },
    #[error("{character:?} must be escaped with a backslash in a value")]
    Unescaped { character: char },
}

fn found_text(found: &Option<String>) -> String {
    match found {
        Some(f) => format!(", found {f}"),
        None => String::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Requirements and selectors
// ---------------------------------------------------------------------------------------------

/// What a validation problem is about, so the string parser can point at the right place.
enum Blame {
    Key,
    Value(usize),
}

impl Requirement {
    /// Builds a requirement, checking the key (a qualified name), each value (a label value)
    /// and the value count the operator needs: one for Equals, NotEquals, Gt and Lt (an
    /// unsigned integer for the last two), at least one for In and NotIn, none for Exists and
    /// DoesNotExist.
    pub fn new(
        key: impl Into<String>,
        operator: Operator,
        values: Vec<String>,
    ) -> Result<Requirement, SelectorError> {
        let key = key.into();
        match build(key, operator, values) {
            Ok(r) => Ok(r),
            Err((problem, _, key)) => Err(SelectorError::Requirement { key, problem }),
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values, sorted and without duplicates.
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Kubernetes semantics: NotEquals and NotIn hold when the key is absent; Gt and Lt need
    /// the label present with an integer value.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_value(labels.get(self.key.as_str()).map(String::as_str))
    }

    fn matches_value(&self, label: Option<&str>) -> bool {
        operator_holds(
            self.operator,
            label,
            |v| self.values.binary_search_by(|x| x.as_str().cmp(v)).is_ok(),
            self.bound,
        )
    }
}

/// The one place the meaning of each operator lives; `has` says whether a label value is
/// among the requirement's values.
fn operator_holds(
    operator: Operator,
    label: Option<&str>,
    has: impl Fn(&str) -> bool,
    bound: i64,
) -> bool {
    match operator {
        Operator::Equals | Operator::In => label.is_some_and(has),
        Operator::NotEquals | Operator::NotIn => label.is_none_or(|v| !has(v)),
        Operator::Exists => label.is_some(),
        Operator::DoesNotExist => label.is_none(),
        Operator::Gt => label
            .and_then(|v| v.parse::<i64>().ok())
            .is_some_and(|n| n > bound),
        Operator::Lt => label
            .and_then(|v| v.parse::<i64>().ok())
            .is_some_and(|n| n < bound),
    }
}

/// Checks a requirement without taking ownership (so manifest data can be matched without
/// copying it); returns the Gt/Lt bound.
fn check(
    key: &str,
    operator: Operator,
    values: &[String],
) -> Result<i64, (SelectorProblem, Blame)> {
    if let Err(reason) = check_key(key) {
        let problem = SelectorProblem::InvalidKey {
            key: key.to_string(),
            reason,
        };
        return Err((problem, Blame::Key));
    }
    let needs = match operator {
        Operator::Equals | Operator::NotEquals | Operator::Gt | Operator::Lt => {
            (values.len() != 1).then_some("exactly one value")
        }
        Operator::In | Operator::NotIn => values.is_empty().then_some("at least one value"),
        Operator::Exists | Operator::DoesNotExist => (!values.is_empty()).then_some("no values"),
    };
    if let Some(needs) = needs {
        let problem = SelectorProblem::ValueCount {
            operator,
            needs,
            got: values.len(),
        };
        return Err((problem, Blame::Key));
    }
    for (i, value) in values.iter().enumerate() {
        if let Err(reason) = check_value(value) {
            let problem = SelectorProblem::InvalidValue {
                value: value.clone(),
                reason,
            };
            return Err((problem, Blame::Value(i)));
        }
    }
    if matches!(operator, Operator::Gt | Operator::Lt) {
        return values[0].parse::<i64>().map_err(|_| {
            let problem = SelectorProblem::NotInteger {
                operator,
                value: values[0].clone(),
            };
            (problem, Blame::Value(0))
        });
    }
    Ok(0)
}

/// A failed `build`: the problem, what it is about, and the key handed back for the message.
type BuildError = (SelectorProblem, Blame, String);

/// `check`, then builds the requirement.
fn build(
    key: String,
    operator: Operator,
    mut values: Vec<String>,
) -> Result<Requirement, BuildError> {
    let bound = match check(&key, operator, &values) {
        Ok(bound) => bound,
        Err((problem, blame)) => return Err((problem, blame, key)),
    };
    values.sort_unstable();
    values.dedup();
    Ok(Requirement {
        key,
        operator,
        values,
        bound,
    })
}

impl Selector {
    /// Matches every label set (the empty selector).
    pub fn everything() -> Selector {
        Selector::default()
    }

    /// Matches no label set. This is what a missing selector means where Kubernetes treats
    /// nil as "select nothing" (see `LabelSelector::to_selector_or_nothing`).
    pub fn nothing() -> Selector {
        Selector {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// All of `requirements` must hold; no requirements means everything.
    pub fn new(mut requirements: Vec<Requirement>) -> Selector {
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Selector {
            requirements,
            nothing: false,
        }
    }

    /// The equality selector for a label map (a Service's `selector`, a pod's
    /// `nodeSelector`). An empty map gives everything; callers for which an empty map means
    /// "nothing" (a Service without selector manages no endpoints) check that themselves.
    pub fn from_labels(labels: &BTreeMap<String, String>) -> Result<Selector, SelectorError> {
        labels
            .iter()
            .map(|(k, v)| Requirement::new(k.clone(), Operator::Equals, vec![v.clone()]))
            .collect::<Result<Vec<_>, _>>()
            .map(Selector::new)
    }

    /// Parses the string form, e.g. `app=web,tier!=db,env in (prod,qa),!legacy`. The empty
    /// (or blank) string is the selector that matches everything.
    pub fn parse(s: &str) -> Result<Selector, SelectorError> {
        LabelParser::new(s).parse().map(Selector::new)
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// The requirements, sorted by key. Empty both for everything and for nothing.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    pub fn is_everything(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    pub fn is_nothing(&self) -> bool {
        self.nothing
    }

    /// The single value `key` must have for this selector to match (an Equals requirement,
    /// or In with one value), so a caller can look objects up by label instead of scanning.
    pub fn requires_exact_match(&self, key: &str) -> Option<&str> {
        self.requirements.iter().find_map(|r| {
            let exact =
                matches!(r.operator, Operator::Equals | Operator::In) && r.values.len() == 1;
            (exact && r.key == key).then(|| r.values[0].as_str())
        })
    }
}

impl std::str::FromStr for Selector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Selector::parse(s)
    }
}

impl fmt::Display for Requirement {
    /// The canonical string form: `k=v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`,
    /// `k>5`, `k<5`, values sorted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (prefix, infix, parens) = match self.operator {
            Operator::Equals => ("", "=", false),
            Operator::NotEquals => ("", "!=", false),
            Operator::In => ("", " in ", true),
            Operator::NotIn => ("", " notin ", true),
            Operator::Exists => ("", "", false),
            Operator::DoesNotExist => ("!", "", false),
            Operator::Gt => ("", ">", false),
            Operator::Lt => ("", "<", false),
        };
        write!(f, "{prefix}{}{infix}", self.key)?;
        if parens {
            f.write_str("(")?;
        }
        for (i, v) in self.values.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(v)?;
        }
        if parens {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// Key used to print `Selector::nothing()`; see the `Display` impl.
const NOTHING_KEY: &str = "skiff.io/nothing";

impl fmt::Display for Selector {
    /// The canonical string form, which `Selector::parse` reads back to an equal selector.
    /// The grammar has no word for "nothing", so `Selector::nothing()` prints as a
    /// contradiction (`skiff.io/nothing,!skiff.io/nothing`) that also matches no label set:
    /// unlike Kubernetes' empty string, it cannot turn into "everything" when sent on.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nothing {
            return write!(f, "{NOTHING_KEY},!{NOTHING_KEY}");
        }
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Keys and values
// ---------------------------------------------------------------------------------------------

const NAME_PART_CHARS: &str = "the name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const NAME_CHARS: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

/// A qualified name: `[prefix/]name`, the prefix a DNS-1123 subdomain.
fn check_key(key: &str) -> Result<(), &'static str> {
    let name = match key.split_once('/') {
        None => key,
        Some((prefix, name)) => {
            if name.contains('/') {
                return Err("a key may contain at most one '/'");
            }
            if prefix.is_empty() {
                return Err("the prefix before '/' must not be empty");
            }
            if !is_dns1123_subdomain(prefix) {
                return Err(
                    "the prefix must be a DNS-1123 subdomain (lowercase alphanumeric, '-' and '.', at most 253 characters)",
                );
            }
            name
        }
    };
    if name.is_empty() {
        return Err("the name part must not be empty");
    }
    if name.len() > 63 {
        return Err("the name part must be 63 characters or fewer");
    }
    if !is_label_name(name) {
        return Err(NAME_PART_CHARS);
    }
    Ok(())
}

/// A label value: empty, or like a key's name part.
fn check_value(value: &str) -> Result<(), &'static str> {
    if value.len() > 63 {
        return Err("must be 63 characters or fewer");
    }
    if !value.is_empty() && !is_label_name(value) {
        return Err(NAME_CHARS);
    }
    Ok(())
}

fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            match (b.first(), b.last()) {
                (Some(first), Some(last)) => {
                    is_lower_alnum(*first)
                        && is_lower_alnum(*last)
                        && b.iter().all(|c| is_lower_alnum(*c) || *c == b'-')
                }
                _ => false,
            }
        })
}

fn is_lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

// ---------------------------------------------------------------------------------------------
// The label selector string grammar
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    /// Any run of characters that are neither whitespace nor special; `in` and `notin` are
    /// keywords only where an operator is expected, so they stay usable as keys and values.
    Word(&'a str),
    Bang,
    Equals,
    DoubleEquals,
    NotEquals,
    Greater,
    Less,
    Open,
    Close,
    Comma,
    End,
}

impl Token<'_> {
    fn describe(self) -> Option<String> {
        let symbol = match self {
            Token::Word(w) => return Some(format!("{w:?}")),
            Token::End => return None,
            Token::Bang => "!",
            Token::Equals => "=",
            Token::DoubleEquals => "==",
            Token::NotEquals => "!=",
            Token::Greater => ">",
            Token::Less => "<",
            Token::Open => "(",
            Token::Close => ")",
            Token::Comma => ",",
        };
        Some(format!("'{symbol}'"))
    }
}

/// Kubernetes' notion of whitespace in selectors.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Tokens with their byte offsets; always ends with `End`.
fn lex(input: &str) -> Vec<(Token<'_>, usize)> {
    let bytes = input.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if is_space(b) {
            i += 1;
            continue;
        }
        let next = bytes.get(i + 1).copied();
        let (token, len) = match (b, next) {
            (b'=', Some(b'=')) => (Token::DoubleEquals, 2),
            (b'!', Some(b'=')) => (Token::NotEquals, 2),
            (b'=', _) => (Token::Equals, 1),
            (b'!', _) => (Token::Bang, 1),
            (b'>', _) => (Token::Greater, 1),
            (b'<', _) => (Token::Less, 1),
            (b'(', _) => (Token::Open, 1),
            (b')', _) => (Token::Close, 1),
            (b',', _) => (Token::Comma, 1),
            _ => {
                let end = bytes[i..]
                    .iter()
                    .position(|&c| is_space(c) || is_special(c))
                    .map_or(bytes.len(), |n| i + n);
                // Whitespace and special characters are ASCII, so `end` is a char boundary.
                (Token::Word(&input[i..end]), end - i)
            }
        };
        out.push((token, i));
        i += len;
    }
    out.push((Token::End, input.len()));
    out
}

/// Character position of a byte offset, for messages.
fn char_position(input: &str, byte: usize) -> usize {
    input[..byte].chars().count()
}

struct LabelParser<'a> {
    input: &'a str,
    tokens: Vec<(Token<'a>, usize)>,
    next: usize,
}

impl<'a> LabelParser<'a> {
    fn new(input: &'a str) -> LabelParser<'a> {
        LabelParser {
            input,
            tokens: lex(input),
            next: 0,
        }
    }

    fn peek(&self) -> (Token<'a>, usize) {
        self.tokens[self.next]
    }

    fn advance(&mut self) -> (Token<'a>, usize) {
        let t = self.tokens[self.next];
        if t.0 != Token::End {
            self.next += 1;
        }
        t
    }

    fn error(&self, at: usize, problem: SelectorProblem) -> SelectorError {
        SelectorError::Label {
            input: self.input.to_string(),
            position: char_position(self.input, at),
            problem,
        }
    }

    fn expected(&self, expected: &'static str, (token, at): (Token<'_>, usize)) -> SelectorError {
        let found = token.describe();
        self.error(at, SelectorProblem::Expected { expected, found })
    }

    fn parse(mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut requirements = Vec::new();
        match self.peek().0 {
            Token::End => return Ok(requirements),
            Token::Word(_) | Token::Bang => {}
            _ => return Err(self.expected("a label key, '!' or end of input", self.peek())),
        }
        loop {
            requirements.push(self.requirement()?);
            match self.advance() {
                (Token::End, _) => return Ok(requirements),
                (Token::Comma, _) => match self.peek().0 {
                    Token::Word(_) | Token::Bang => {}
                    _ => return Err(self.expected("a label key or '!' after ','", self.peek())),
                },
                other => return Err(self.expected("',' or end of input", other)),
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        let negated = self.peek().0 == Token::Bang;
        if negated {
            self.advance();
        }
        let (key, key_at) = match self.advance() {
            (Token::Word(w), at) => (w, at),
            other => return Err(self.expected("a label key", other)),
        };
        let bare = matches!(self.peek().0, Token::End | Token::Comma);
        // `!key` is complete by itself: whatever follows is the caller's to reject.
        let operator = if negated {
            Operator::DoesNotExist
        } else if bare {
            Operator::Exists
        } else {
            match self.advance() {
                (Token::Word("in"), _) => Operator::In,
                (Token::Word("notin"), _) => Operator::NotIn,
                (Token::Equals | Token::DoubleEquals, _) => Operator::Equals,
                (Token::NotEquals, _) => Operator::NotEquals,
                (Token::Greater, _) => Operator::Gt,
                (Token::Less, _) => Operator::Lt,
                other => {
                    return Err(self.expected(
                        "'=', '==', '!=', 'in', 'notin', '>', '<', ',' or end of input",
                        other,
                    ));
                }
            }
        };
        let values = match operator {
            Operator::Exists | Operator::DoesNotExist => Vec::new(),
            Operator::In | Operator::NotIn => self.value_list()?,
            _ => vec![self.exact_value()?],
        };
        let (texts, positions): (Vec<String>, Vec<usize>) = values
            .into_iter()
            .map(|(v, at)| (v.to_string(), at))
            .unzip();
        build(key.to_string(), operator, texts).map_err(|(problem, blame, _)| {
            let at = match blame {
                Blame::Key => key_at,
                Blame::Value(i) => positions[i],
            };
            self.error(at, problem)
        })
    }

    /// After `=`, `!=`, `>` or `<`: a value, or nothing (the empty value) before `,` or the end.
    fn exact_value(&mut self) -> Result<(&'a str, usize), SelectorError> {
        match self.peek() {
            (Token::End | Token::Comma, at) => Ok(("", at)),
            (Token::Word(w), at) => {
                self.advance();
                Ok((w, at))
            }
            other => Err(self.expected("a value", other)),
        }
    }

    /// `( v, v, ... )` after `in` / `notin`. Empty entries (`()`, `(a,)`, `(,a)`, `(a,,b)`)
    /// stand for the empty value, as in Kubernetes.
    fn value_list(&mut self) -> Result<Vec<(&'a str, usize)>, SelectorError> {
        match self.advance() {
            (Token::Open, _) => {}
            other => return Err(self.expected("'('", other)),
        }
        let mut values = Vec::new();
        // Whether the previous item was a separator (or the opening parenthesis), so an item
        // is due; a separator then means an empty value.
        let mut due = true;
        loop {
            match self.advance() {
                (Token::Word(w), at) if due => {
                    values.push((w, at));
                    due = false;
                }
                (Token::Comma, at) => {
                    if due {
                        values.push(("", at));
                    }
                    due = true;
                }
                (Token::Close, at) => {
                    if due {
                        values.push(("", at));
                    }
                    return Ok(values);
                }
                other if due => return Err(self.expected("a value, ',' or ')'", other)),
                other => return Err(self.expected("',' or ')'", other)),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Manifest forms
// ---------------------------------------------------------------------------------------------

impl LabelSelector {
    /// `matchLabels` ∧ `matchExpressions` (operators In, NotIn, Exists, DoesNotExist). An
    /// empty `LabelSelector` matches everything.
    pub fn to_selector(&self) -> Result<Selector, SelectorError> {
        let mut requirements =
            Vec::with_capacity(self.match_labels.len() + self.match_expressions.len());
        for (key, value) in &self.match_labels {
            requirements.push(Requirement::new(
                key.clone(),
                Operator::Equals,
                vec![value.clone()],
            )?);
        }
        for expr in &self.match_expressions {
            let operator = match expr.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(SelectorError::Requirement {
                        key: expr.key.clone(),
                        problem: SelectorProblem::UnknownOperator {
                            operator: other.to_string(),
                            supported: "In, NotIn, Exists, DoesNotExist",
                        },
                    });
                }
            };
            requirements.push(Requirement::new(
                expr.key.clone(),
                operator,
                expr.values.clone(),
            )?);
        }
        Ok(Selector::new(requirements))
    }

    /// For fields where Kubernetes reads a missing selector as "select nothing" (the
    /// `labelSelector` of a pod affinity or anti-affinity term, a topology spread
    /// constraint): `None` gives `Selector::nothing()`, while a present but empty selector
    /// still matches everything.
    pub fn to_selector_or_nothing(
        selector: Option<&LabelSelector>,
    ) -> Result<Selector, SelectorError> {
        selector.map_or_else(|| Ok(Selector::nothing()), LabelSelector::to_selector)
    }
}

impl NodeSelectorRequirement {
    /// A `matchExpressions` entry as a requirement: In, NotIn, Exists, DoesNotExist, and Gt /
    /// Lt with exactly one integer value.
    pub fn to_requirement(&self) -> Result<Requirement, SelectorError> {
        Requirement::new(
            self.key.clone(),
            self.label_operator()?,
            self.values.clone(),
        )
    }

    /// Whether this `matchExpressions` entry holds for a node's labels; validates it on the
    /// way but does not copy it, so it can be used straight from a pod spec.
    pub fn matches_labels(&self, labels: &BTreeMap<String, String>) -> Result<bool, SelectorError> {
        let operator = self.label_operator()?;
        let bound = check(&self.key, operator, &self.values).map_err(|(problem, _)| {
            SelectorError::Requirement {
                key: self.key.clone(),
                problem,
            }
        })?;
        let label = labels.get(self.key.as_str()).map(String::as_str);
        Ok(operator_holds(
            operator,
            label,
            |v| self.values.iter().any(|x| x == v),
            bound,
        ))
    }

    /// Whether this `matchFields` entry holds for a node named `node_name`. As in
    /// Kubernetes, the only field is `metadata.name` and the operators are In and NotIn, each
    /// with exactly one value.
    pub fn matches_node_name(&self, node_name: &str) -> Result<bool, SelectorError> {
        let fail = |problem| SelectorError::Requirement {
            key: self.key.clone(),
            problem,
        };
        if self.key != "metadata.name" {
            return Err(fail(SelectorProblem::UnsupportedField {
                field: self.key.clone(),
            }));
        }
        let operator = match self.operator.as_str() {
            "In" => Operator::In,
            "NotIn" => Operator::NotIn,
            other => {
                return Err(fail(SelectorProblem::UnknownOperator {
                    operator: other.to_string(),
                    supported: "In, NotIn",
                }));
            }
        };
        let [value] = self.values.as_slice() else {
            return Err(fail(SelectorProblem::ValueCount {
                operator,
                needs: "exactly one value",
                got: self.values.len(),
            }));
        };
        Ok((value == node_name) == (operator == Operator::In))
    }

    /// Whether one node selector term (`matchExpressions` and `matchFields`) holds for a node,
    /// with Kubernetes' rule that a term with neither matches no node. A term's terms are
    /// ORed by the caller; an invalid entry is an error rather than a silent mismatch.
    pub fn term_matches(
        match_expressions: &[NodeSelectorRequirement],
        match_fields: &[NodeSelectorRequirement],
        node_name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<bool, SelectorError> {
        if match_expressions.is_empty() && match_fields.is_empty() {
            return Ok(false);
        }
        // Validate everything before answering, so a bad entry is reported even when an
        // earlier one already rules the node out.
        let mut holds = true;
        for expr in match_expressions {
            holds &= expr.matches_labels(labels)?;
        }
        for field in match_fields {
            holds &= field.matches_node_name(node_name)?;
        }
        Ok(holds)
    }

    fn label_operator(&self) -> Result<Operator, SelectorError> {
        Ok(match self.operator.as_str() {
            "In" => Operator::In,
            "NotIn" => Operator::NotIn,
            "Exists" => Operator::Exists,
            "DoesNotExist" => Operator::DoesNotExist,
            "Gt" => Operator::Gt,
            "Lt" => Operator::Lt,
            other => {
                return Err(SelectorError::Requirement {
                    key: self.key.clone(),
                    problem: SelectorProblem::UnknownOperator {
                        operator: other.to_string(),
                        supported: "In, NotIn, Exists, DoesNotExist, Gt, Lt",
                    },
                });
            }
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Field selectors
// ---------------------------------------------------------------------------------------------

impl FieldSelector {
    /// Parses `field=value`, `field==value` and `field!=value` terms separated by commas.
    /// Values may be empty and may hold `,`, `=` and `\` escaped with a backslash (`\,`, `\=`,
    /// `\\`), as in Kubernetes; empty terms are skipped. Unlike Kubernetes, whitespace around
    /// field names and values is ignored: neither can hold any.
    pub fn parse(s: &str) -> Result<FieldSelector, SelectorError> {
        let error = |at: usize, problem| SelectorError::Field {
            input: s.to_string(),
            position: char_position(s, at),
            problem,
        };
        let mut terms = Vec::new();
        for (start, part) in split_unescaped_commas(s) {
            let trimmed = part.trim_start();
            if trimmed.trim_end().is_empty() {
                continue;
            }
            let part_at = start + (part.len() - trimmed.len());
            let Some((op_at, op_len, negated)) = find_field_operator(trimmed) else {
                let end = part_at + trimmed.trim_end().len();
                return Err(error(
                    end,
                    SelectorProblem::Expected {
                        expected: "'=', '==' or '!='",
                        found: None,
                    },
                ));
            };
            let field = trimmed[..op_at].trim_end();
            if field.is_empty() {
                return Err(error(
                    part_at,
                    SelectorProblem::Expected {
                        expected: "a field path",
                        found: Some(format!("'{}'", &trimmed[op_at..op_at + op_len])),
                    },
                ));
            }
            let raw_value = &trimmed[op_at + op_len..];
            let value_at =
                part_at + op_at + op_len + (raw_value.len() - raw_value.trim_start().len());
            let value = unescape(raw_value.trim())
                .map_err(|(offset, problem)| error(value_at + offset, problem))?;
            terms.push(FieldTerm {
                field: field.to_string(),
                negated,
                value,
            });
        }
        terms.sort();
        Ok(FieldSelector { terms })
    }

    /// `get` returns the value of a field path for the object being tested
    /// (see `Object::field`); a missing field compares as the empty string.
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.terms.iter().all(|t| {
            let actual = get(&t.field);
            let actual = actual.as_deref().unwrap_or("");
            (actual == t.value) != t.negated
        })
    }

    /// The field paths this selector mentions, so a server can reject unsupported ones.
    pub fn fields(&self) -> Vec<&str> {
        let mut fields: Vec<&str> = self.terms.iter().map(|t| t.field.as_str()).collect();
        fields.dedup();
        fields
    }

    /// True for the selector that matches everything.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The value `field` must equal for this selector to match, if it says so, so a caller
    /// can look objects up (by node name, say) instead of scanning.
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.terms
            .iter()
            .find(|t| !t.negated && t.field == field)
            .map(|t| t.value.as_str())
    }
}

impl std::str::FromStr for FieldSelector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FieldSelector::parse(s)
    }
}

impl fmt::Display for FieldSelector {
    /// The canonical form (`==` printed as `=`, values escaped), which parses back to an
    /// equal selector.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(&t.field)?;
            f.write_str(if t.negated { "!=" } else { "=" })?;
            for c in t.value.chars() {
                if matches!(c, '\\' | ',' | '=') {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// The comma-separated parts of a field selector with their byte offsets; a backslash keeps
/// the next character from splitting.
fn split_unescaped_commas(s: &str) -> Vec<(usize, &str)> {
    let bytes = s.as_bytes();
    let mut parts = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b',' => {
                parts.push((start, &s[start..i]));
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    parts.push((start, &s[start..]));
    parts
}

/// The first unescaped operator in a term: (offset, length, negated).
fn find_field_operator(term: &str) -> Option<(usize, usize, bool)> {
    let bytes = term.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1)) {
            (b'\\', _) => i += 2,
            (b'!', Some(b'=')) => return Some((i, 2, true)),
            (b'=', Some(b'=')) => return Some((i, 2, false)),
            (b'=', _) => return Some((i, 1, false)),
            _ => i += 1,
        }
    }
    None
}

/// Undoes `\\`, `\,` and `\=`; anything else after a backslash, and a bare `=`, is an
/// error at its offset (a bare `,` never gets here: it separates terms).
fn unescape(raw: &str) -> Result<String, (usize, SelectorProblem)> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.char_indices();
    while let Some((at, c)) = chars.next() {
        if c == '=' {
            return Err((at, SelectorProblem::Unescaped { character: c }));
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some((_, e @ ('\\' | ',' | '='))) => out.push(e),
            other => {
                let sequence = match other {
                    Some((_, e)) => format!("\\{e}"),
                    None => "\\".to_string(),
                };
                return Err((at, SelectorProblem::InvalidEscape { sequence }));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn every_operator_against_present_and_absent_keys() {
        let web = labels(&[
            ("app", "web"),
            ("tier", "front"),
            ("replicas", "5"),
            ("x", "abc"),
        ]);
        let none = labels(&[]);
        // (selector, matches `web`, matches no labels)
        let cases = [
            ("", true, true),
            ("app=web", true, false),
            ("app==web", true, false),
            ("app=db", false, false),
            ("app!=db", true, true),
            ("app!=web", false, true),
            ("app in (web,db)", true, false),
            ("app in (db,cache)", false, false),
            ("app notin (web,db)", false, true),
            ("app notin (db)", true, true),
            ("app", true, false),
            ("!app", false, true),
            ("missing", false, false),
            ("!missing", true, true),
            ("replicas>4", true, false),
            ("replicas>5", false, false),
            ("replicas<6", true, false),
            ("replicas<5", false, false),
            ("replicas>0", true, false),
            ("replicas>004", true, false),
            // A label that is not an integer never satisfies Gt or Lt.
            ("x>1", false, false),
            ("x<1", false, false),
            ("app=web,tier=front", true, false),
            ("app=web,tier=back", false, false),
            ("app=web,!missing,tier in (front),replicas>1", true, false),
            // Same key twice: both must hold.
            ("app=web,app=db", false, false),
            // The empty value matches only a present, empty label.
            ("app=", false, false),
            ("app!=", true, true),
        ];
        for (text, want_web, want_none) in cases {
            let sel = Selector::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(sel.matches(&web), want_web, "{text:?} against web labels");
            assert_eq!(sel.matches(&none), want_none, "{text:?} against no labels");
        }
    }

    #[test]
    fn empty_label_values_and_signed_integers() {
        let empty = labels(&[("a", ""), ("n", "+7"), ("m", "-3")]);
        let cases = [
            ("a=", true),
            ("a in ()", true),
            ("a in (,x)", true),
            ("a in (x)", false),
            ("a notin ()", false),
            ("a", true),
            ("n>6", true),
            ("n<7", false),
            ("m<2", true),
            ("m>0", false),
        ];
        for (text, want) in cases {
            let sel = Selector::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(sel.matches(&empty), want, "{text:?}");
        }
    }

    #[test]
    fn canonical_display_round_trips() {
        // (input, canonical form)
        let cases = [
            ("", ""),
            ("   ", ""),
            ("app=web", "app=web"),
            ("app == web", "app=web"),
            ("app!=web", "app!=web"),
            (" env  in(qa , prod,qa) ", "env in (prod,qa)"),
            ("env notin (b,a)", "env notin (a,b)"),
            ("env in ()", "env in ()"),
            ("env in (a,)", "env in (,a)"),
            ("env in (,,a,,b,)", "env in (,a,b)"),
            ("app", "app"),
            ("! app", "!app"),
            ("n > 5", "n>5"),
            ("n<05", "n<05"),
            ("app=", "app="),
            ("z=1,a=2,m", "a=2,m,z=1"),
            ("b=2,a!=1,b!=3", "a!=1,b=2,b!=3"),
            (
                "example.com/app=web,in=notin",
                "example.com/app=web,in=notin",
            ),
            ("x in (in, notin)", "x in (in,notin)"),
            ("\tapp\n=\rweb", "app=web"),
        ];
        for (input, canonical) in cases {
            let sel = Selector::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(sel.to_string(), canonical, "display of {input:?}");
            let again = Selector::parse(canonical).unwrap();
            assert_eq!(again, sel, "round trip of {input:?}");
            assert_eq!(again.to_string(), canonical);
        }
    }

    #[test]
    fn parse_builds_the_expected_requirements() {
        let sel = Selector::parse("tier notin (b,a,b), !legacy, app==web, n>10").unwrap();
        let got: Vec<(&str, Operator, Vec<&str>)> = sel
            .requirements()
            .iter()
            .map(|r| {
                let values = r.values().iter().map(String::as_str).collect();
                (r.key(), r.operator(), values)
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("app", Operator::Equals, vec!["web"]),
                ("legacy", Operator::DoesNotExist, vec![]),
                ("n", Operator::Gt, vec!["10"]),
                ("tier", Operator::NotIn, vec!["a", "b"]),
            ]
        );
    }

    #[test]
    fn syntax_errors_say_where_and_what() {
        // (input, position, expected, found)
        let cases: [(&str, usize, &str, Option<&str>); 16] = [
            ("env in (prod", 12, "',' or ')'", None),
            ("env in prod", 7, "'('", Some("\"prod\"")),
            ("env in (a b)", 10, "',' or ')'", Some("\"b\"")),
            ("env in (a,=)", 10, "a value, ',' or ')'", Some("'='")),
            (
                "a b",
                2,
                "'=', '==', '!=', 'in', 'notin', '>', '<', ',' or end of input",
                Some("\"b\""),
            ),
            ("a=b c", 4, "',' or end of input", Some("\"c\"")),
            ("a=b,", 4, "a label key or '!' after ','", None),
            ("a=b,,c", 4, "a label key or '!' after ','", Some("','")),
            (",a", 0, "a label key, '!' or end of input", Some("','")),
            ("=a", 0, "a label key, '!' or end of input", Some("'='")),
            ("!", 1, "a label key", None),
            ("!=a", 0, "a label key, '!' or end of input", Some("'!='")),
            ("!a=b", 2, "',' or end of input", Some("'='")),
            ("a=(b)", 2, "a value", Some("'('")),
            ("a>>1", 2, "a value", Some("'>'")),
            ("a in (b))", 8, "',' or end of input", Some("')'")),
        ];
        for (input, position, expected, found) in cases {
            let err = Selector::parse(input).expect_err(input);
            let want = SelectorError::Label {
                input: input.to_string(),
                position,
                problem: SelectorProblem::Expected {
                    expected,
                    found: found.map(String::from),
                },
            };
            assert_eq!(err, want, "{input:?}");
        }
        assert_eq!(
            Selector::parse("env in (prod").unwrap_err().to_string(),
            "invalid label selector \"env in (prod\": expected ',' or ')' at position 12"
        );
        assert_eq!(
            Selector::parse("a=b c").unwrap_err().to_string(),
            "invalid label selector \"a=b c\": expected ',' or end of input, found \"c\" at position 4"
        );
    }

    #[test]
    fn invalid_keys_and_values_are_reported_at_their_position() {
        // (input, position, problem kind)
        let cases = [
            ("Bad/app=x", 0, "key"),
            ("-app=x", 0, "key"),
            ("app-=x", 0, "key"),
            ("a/b/c", 0, "key"),
            ("/app", 0, "key"),
            ("example.com/", 0, "key"),
            ("ok=1,éa=x", 5, "key"),
            ("app=-web", 4, "value"),
            ("app in (ok, bad$)", 12, "value"),
            ("app=é,b=c", 4, "value"),
            ("n>x", 2, "integer"),
            ("n<1.5", 2, "integer"),
            ("n>", 2, "integer"),
            ("n>99999999999999999999", 2, "integer"),
            // The bound is a label value too, so it cannot carry a sign (as in Kubernetes).
            ("n>-1", 2, "value"),
            ("n<+1", 2, "value"),
        ];
        for (input, position, kind) in cases {
            let err = Selector::parse(input).expect_err(input);
            let SelectorError::Label {
                position: got,
                problem,
                ..
            } = &err
            else {
                panic!("{input:?}: {err:?}");
            };
            assert_eq!(*got, position, "{input:?}: {err}");
            let kind_ok = match kind {
                "key" => matches!(problem, SelectorProblem::InvalidKey { .. }),
                "value" => matches!(problem, SelectorProblem::InvalidValue { .. }),
                "integer" => matches!(problem, SelectorProblem::NotInteger { .. }),
                _ => unreachable!(),
            };
            assert!(kind_ok, "{input:?}: {err}");
        }
    }

    #[test]
    fn key_and_value_rules() {
        let long_name = "a".repeat(63);
        let too_long_name = "a".repeat(64);
        let long_prefix = format!("{}.com", "a".repeat(249));
        let too_long_prefix = format!("{}.com", "a".repeat(250));
        let keys_ok = [
            "a",
            "A9",
            "a.b_c-d",
            "example.com/name",
            "k8s.io/Name_1",
            "1-2.x/y",
            long_name.as_str(),
        ];
        for key in keys_ok {
            assert_eq!(check_key(key), Ok(()), "{key:?}");
        }
        let with_long_prefix = format!("{long_prefix}/x");
        assert_eq!(check_key(&with_long_prefix), Ok(()));
        let keys_bad = [
            "".to_string(),
            too_long_name,
            "_a".to_string(),
            "a_".to_string(),
            "a b".to_string(),
            "Example.com/x".to_string(),
            "exa_mple.com/x".to_string(),
            "-example.com/x".to_string(),
            "example..com/x".to_string(),
            "example.com./x".to_string(),
            "a/b/c".to_string(),
            "/x".to_string(),
            "x/".to_string(),
            format!("{too_long_prefix}/x"),
        ];
        for key in &keys_bad {
            assert!(check_key(key).is_err(), "{key:?}");
        }
        for value in ["", "a", "a.b-c_d", "A1", &"v".repeat(63)] {
            assert_eq!(check_value(value), Ok(()), "{value:?}");
        }
        for value in ["-a", "a-", ".", "a b", "a/b", &"v".repeat(64)] {
            assert!(check_value(value).is_err(), "{value:?}");
        }
    }

    #[test]
    fn requirement_new_checks_value_counts() {
        let ok = [
            (Operator::Equals, vec!["a"]),
            (Operator::NotEquals, vec![""]),
            (Operator::In, vec!["a", "b"]),
            (Operator::NotIn, vec!["a"]),
            (Operator::Exists, vec![]),
            (Operator::DoesNotExist, vec![]),
            (Operator::Gt, vec!["4"]),
            (Operator::Lt, vec!["0"]),
        ];
        for (op, values) in ok {
            Requirement::new("k", op, strings(&values)).unwrap_or_else(|e| panic!("{op:?}: {e}"));
        }
        let bad = [
            (Operator::Equals, vec![], "exactly one value"),
            (Operator::Equals, vec!["a", "b"], "exactly one value"),
            (Operator::NotEquals, vec![], "exactly one value"),
            (Operator::In, vec![], "at least one value"),
            (Operator::NotIn, vec![], "at least one value"),
            (Operator::Exists, vec!["a"], "no values"),
            (Operator::DoesNotExist, vec![""], "no values"),
            (Operator::Gt, vec![], "exactly one value"),
            (Operator::Lt, vec!["1", "2"], "exactly one value"),
        ];
        for (op, values, needs) in bad {
            let err = Requirement::new("k", op, strings(&values)).expect_err("count");
            let want = SelectorError::Requirement {
                key: "k".to_string(),
                problem: SelectorProblem::ValueCount {
                    operator: op,
                    needs,
                    got: values.len(),
                },
            };
            assert_eq!(err, want);
        }
        let err = Requirement::new("k", Operator::Gt, strings(&["1e3"])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid selector requirement on key \"k\": operator Gt needs an integer value, got \"1e3\""
        );
    }

    #[test]
    fn everything_nothing_and_label_maps() {
        let some = labels(&[("a", "1")]);
        let none = labels(&[]);
        assert!(Selector::everything().matches(&some) && Selector::everything().matches(&none));
        assert!(Selector::everything().is_everything());
        assert_eq!(Selector::parse("").unwrap(), Selector::everything());
        assert!(!Selector::nothing().matches(&some) && !Selector::nothing().matches(&none));
        assert!(Selector::nothing().is_nothing() && !Selector::nothing().is_everything());
        // Printed, "nothing" stays a selector that matches nothing.
        let printed = Selector::parse(&Selector::nothing().to_string()).unwrap();
        let nothing_key = labels(&[(NOTHING_KEY, "")]);
        assert!(
            !printed.matches(&some) && !printed.matches(&none) && !printed.matches(&nothing_key)
        );

        let map = labels(&[("tier", "front"), ("app", "web")]);
        let sel = Selector::from_labels(&map).unwrap();
        assert_eq!(sel.to_string(), "app=web,tier=front");
        assert!(sel.matches(&labels(&[("app", "web"), ("tier", "front"), ("x", "y")])));
        assert!(!sel.matches(&labels(&[("app", "web")])));
        assert!(Selector::from_labels(&none).unwrap().is_everything());
        assert!(Selector::from_labels(&labels(&[("bad key", "x")])).is_err());
    }

    #[test]
    fn exact_match_lookup() {
        let sel = Selector::parse("a=1,b in (2),c in (3,4),d!=5,e").unwrap();
        assert_eq!(sel.requires_exact_match("a"), Some("1"));
        assert_eq!(sel.requires_exact_match("b"), Some("2"));
        assert_eq!(sel.requires_exact_match("c"), None);
        assert_eq!(sel.requires_exact_match("d"), None);
        assert_eq!(sel.requires_exact_match("e"), None);
        assert_eq!(sel.requires_exact_match("z"), None);
    }

    fn expr(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.to_string(),
            operator: operator.to_string(),
            values: strings(values),
        }
    }

    #[test]
    fn label_selector_conversion() {
        let ls = LabelSelector {
            match_labels: labels(&[("app", "web")]),
            match_expressions: vec![
                expr("tier", "In", &["front", "edge"]),
                expr("env", "NotIn", &["dev"]),
                expr("gpu", "Exists", &[]),
                expr("legacy", "DoesNotExist", &[]),
            ],
        };
        let sel = ls.to_selector().unwrap();
        assert_eq!(
            sel.to_string(),
            "app=web,env notin (dev),gpu,!legacy,tier in (edge,front)"
        );
        assert!(sel.matches(&labels(&[("app", "web"), ("tier", "edge"), ("gpu", "")])));
        assert!(!sel.matches(&labels(&[("app", "web"), ("tier", "edge")])));
        assert!(!sel.matches(&labels(&[
            ("app", "web"),
            ("tier", "edge"),
            ("gpu", "1"),
            ("env", "dev")
        ])));

        assert!(
            LabelSelector::default()
                .to_selector()
                .unwrap()
                .is_everything()
        );
        let empty = LabelSelector::default();
        let any = labels(&[("x", "y")]);
        assert!(
            LabelSelector::to_selector_or_nothing(Some(&empty))
                .unwrap()
                .matches(&any)
        );
        let missing = LabelSelector::to_selector_or_nothing(None).unwrap();
        assert!(missing.is_nothing() && !missing.matches(&any));

        let bad = [
            (expr("a", "Gt", &["1"]), "unknown operator"),
            (expr("a", "in", &["1"]), "unknown operator"),
            (expr("a", "In", &[]), "at least one value"),
            (expr("a", "NotIn", &[]), "at least one value"),
            (expr("a", "Exists", &["x"]), "no values"),
            (expr("a", "DoesNotExist", &["x"]), "no values"),
            (expr("a b", "Exists", &[]), "invalid key"),
            (expr("a", "In", &["ok", "-bad"]), "invalid value"),
        ];
        for (e, message) in bad {
            let ls = LabelSelector {
                match_labels: BTreeMap::new(),
                match_expressions: vec![e.clone()],
            };
            let err = ls.to_selector().expect_err(&e.operator).to_string();
            assert!(err.contains(message), "{e:?}: {err}");
        }
        let bad_label = LabelSelector {
            match_labels: labels(&[("app", "no way")]),
            match_expressions: Vec::new(),
        };
        assert!(matches!(
            bad_label.to_selector(),
            Err(SelectorError::Requirement {
                problem: SelectorProblem::InvalidValue { .. },
                ..
            })
        ));
    }

    fn node_req(key: &str, operator: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.to_string(),
            operator: operator.to_string(),
            values: strings(values),
        }
    }

    #[test]
    fn node_selector_requirements() {
        let node = labels(&[("arch", "arm64"), ("cores", "4"), ("zone", "b")]);
        // (requirement, matches `node`, matches no labels)
        let cases = [
            (node_req("arch", "In", &["amd64", "arm64"]), true, false),
            (node_req("arch", "NotIn", &["arm64"]), false, true),
            (node_req("gpu", "Exists", &[]), false, false),
            (node_req("gpu", "DoesNotExist", &[]), true, true),
            (node_req("cores", "Gt", &["3"]), true, false),
            (node_req("cores", "Gt", &["4"]), false, false),
            (node_req("cores", "Lt", &["8"]), true, false),
            (node_req("zone", "Lt", &["8"]), false, false),
        ];
        for (req, want_node, want_none) in cases {
            let compiled = req
                .to_requirement()
                .unwrap_or_else(|e| panic!("{req:?}: {e}"));
            assert_eq!(compiled.matches(&node), want_node, "{req:?}");
            assert_eq!(compiled.matches(&labels(&[])), want_none, "{req:?}");
            assert_eq!(req.matches_labels(&node), Ok(want_node), "{req:?}");
            assert_eq!(req.matches_labels(&labels(&[])), Ok(want_none), "{req:?}");
        }
        let bad = [
            (node_req("cores", "Gt", &[]), "exactly one value"),
            (node_req("cores", "Gt", &["1", "2"]), "exactly one value"),
            (node_req("cores", "Lt", &["four"]), "needs an integer value"),
            (node_req("cores", "Gt", &["1.5"]), "needs an integer value"),
            (node_req("cores", "Gt", &["-1"]), "invalid value"),
            (node_req("arch", "In", &[]), "at least one value"),
            (node_req("arch", "Exists", &["x"]), "no values"),
            (node_req("arch", "Equals", &["x"]), "unknown operator"),
            (node_req("", "Exists", &[]), "invalid key"),
        ];
        for (req, message) in bad {
            let err = req.to_requirement().expect_err(&req.operator).to_string();
            assert!(err.contains(message), "{req:?}: {err}");
            let err = req
                .matches_labels(&node)
                .expect_err(&req.operator)
                .to_string();
            assert!(err.contains(message), "{req:?}: {err}");
        }
    }

    #[test]
    fn node_match_fields() {
        let cases = [
            (node_req("metadata.name", "In", &["edge-1"]), "edge-1", true),
            (
                node_req("metadata.name", "In", &["edge-1"]),
                "edge-2",
                false,
            ),
            (
                node_req("metadata.name", "NotIn", &["edge-1"]),
                "edge-1",
                false,
            ),
            (
                node_req("metadata.name", "NotIn", &["edge-1"]),
                "edge-2",
                true,
            ),
        ];
        for (req, name, want) in cases {
            assert_eq!(req.matches_node_name(name), Ok(want), "{req:?} on {name}");
        }
        let bad = [
            (node_req("metadata.uid", "In", &["x"]), "unsupported field"),
            (node_req("metadata.name", "Exists", &[]), "unknown operator"),
            (node_req("metadata.name", "Gt", &["1"]), "unknown operator"),
            (node_req("metadata.name", "In", &[]), "exactly one value"),
            (
                node_req("metadata.name", "In", &["a", "b"]),
                "exactly one value",
            ),
        ];
        for (req, message) in bad {
            let err = req.matches_node_name("a").expect_err(&req.key).to_string();
            assert!(err.contains(message), "{req:?}: {err}");
        }
    }

    #[test]
    fn node_selector_terms() {
        let node = labels(&[("arch", "arm64")]);
        let arm = [node_req("arch", "In", &["arm64"])];
        let amd = [node_req("arch", "In", &["amd64"])];
        let named = [node_req("metadata.name", "In", &["edge-1"])];
        let term = NodeSelectorRequirement::term_matches;
        // A term with neither expressions nor fields matches no node.
        assert_eq!(term(&[], &[], "edge-1", &node), Ok(false));
        assert_eq!(term(&arm, &[], "edge-1", &node), Ok(true));
        assert_eq!(term(&amd, &[], "edge-1", &node), Ok(false));
        assert_eq!(term(&[], &named, "edge-1", &node), Ok(true));
        assert_eq!(term(&[], &named, "edge-2", &node), Ok(false));
        assert_eq!(term(&arm, &named, "edge-1", &node), Ok(true));
        assert_eq!(term(&arm, &named, "edge-2", &node), Ok(false));
        assert_eq!(term(&amd, &named, "edge-1", &node), Ok(false));
        // A bad entry is an error even after a failed one.
        let bad_after = [amd[0].clone(), node_req("arch", "Gt", &["x"])];
        assert!(term(&bad_after, &[], "edge-1", &node).is_err());
    }

    #[test]
    fn field_selectors() {
        let pod = |field: &str| match field {
            "metadata.name" => Some("web-1".to_string()),
            "spec.nodeName" => Some("edge-1".to_string()),
            "status.phase" => Some("Running".to_string()),
            _ => None,
        };
        // (selector, matches `pod`)
        let cases = [
            ("", true),
            ("metadata.name=web-1", true),
            ("metadata.name==web-1", true),
            ("metadata.name!=web-1", false),
            ("metadata.name=web-2", false),
            ("spec.nodeName=edge-1,status.phase!=Failed", true),
            ("spec.nodeName=edge-1,status.phase=Failed", false),
            // A missing field compares as the empty string.
            ("spec.unknown=", true),
            ("spec.unknown!=", false),
            ("spec.unknown=x", false),
            ("spec.unknown!=x", true),
            (" status.phase = Running , ", true),
            (",,metadata.name=web-1,,", true),
        ];
        for (text, want) in cases {
            let sel = FieldSelector::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(sel.matches(pod), want, "{text:?}");
        }

        let sel = FieldSelector::parse(
            "status.phase!=Failed,spec.nodeName==edge-1,status.phase!=Unknown",
        )
        .unwrap();
        assert_eq!(sel.fields(), vec!["spec.nodeName", "status.phase"]);
        assert_eq!(sel.requires_exact_match("spec.nodeName"), Some("edge-1"));
        assert_eq!(sel.requires_exact_match("status.phase"), None);
        assert!(!sel.is_empty() && FieldSelector::parse(" ").unwrap().is_empty());
    }

    #[test]
    fn field_selector_display_and_escapes() {
        // (input, canonical, value of field `f` that matches)
        let cases = [
            ("f==a", "f=a", "a"),
            ("f=", "f=", ""),
            (r"f=a\,b", r"f=a\,b", "a,b"),
            (r"f=a\=b\\c", r"f=a\=b\\c", r"a=b\c"),
            ("f=x!y", "f=x!y", "x!y"),
            (r"f!=x!\=y", r"f!=x!\=y", "other"),
        ];
        for (input, canonical, value) in cases {
            let sel = FieldSelector::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(sel.to_string(), canonical, "{input:?}");
            assert_eq!(FieldSelector::parse(canonical).unwrap(), sel, "{input:?}");
            assert!(sel.matches(|_| Some(value.to_string())), "{input:?}");
        }
        let escaped = FieldSelector::parse(r"f!=x!\=y").unwrap();
        assert!(!escaped.matches(|_| Some("x!=y".to_string())));
        let sel = FieldSelector::parse("b!=2,a=1,b=3").unwrap();
        assert_eq!(sel.to_string(), "a=1,b=3,b!=2");
        assert_eq!(FieldSelector::parse(&sel.to_string()).unwrap(), sel);
    }

    #[test]
    fn field_selector_errors() {
        // (input, position, problem)
        let cases = [
            (
                "metadata.name",
                13,
                SelectorProblem::Expected {
                    expected: "'=', '==' or '!='",
                    found: None,
                },
            ),
            (
                "a=1, =x",
                5,
                SelectorProblem::Expected {
                    expected: "a field path",
                    found: Some("'='".to_string()),
                },
            ),
            (
                r"a=x\y",
                3,
                SelectorProblem::InvalidEscape {
                    sequence: r"\y".to_string(),
                },
            ),
            ("f=a=b", 3, SelectorProblem::Unescaped { character: '=' }),
            ("f==x!=y", 5, SelectorProblem::Unescaped { character: '=' }),
            (
                "a=x\\",
                3,
                SelectorProblem::InvalidEscape {
                    sequence: "\\".to_string(),
                },
            ),
        ];
        for (input, position, problem) in cases {
            let err = FieldSelector::parse(input).expect_err(input);
            let want = SelectorError::Field {
                input: input.to_string(),
                position,
                problem,
            };
            assert_eq!(err, want, "{input:?}");
        }
        assert_eq!(
            FieldSelector::parse("metadata.name")
                .unwrap_err()
                .to_string(),
            "invalid field selector \"metadata.name\": expected '=', '==' or '!=' at position 13"
        );
    }
}
