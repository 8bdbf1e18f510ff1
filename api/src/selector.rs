//! Label and field selectors: the `?labelSelector=` and `?fieldSelector=` query syntax, the
//! `metav1.LabelSelector` object form, and matching both against objects.
//!
//! The grammar and the validation follow `k8s.io/apimachinery/pkg/labels` and `pkg/fields`, so
//! a selector kube-apiserver accepts is accepted here and one it rejects is rejected with a
//! message that names the offending part. The field labels each kind supports follow the
//! `SelectableFields` functions of kube-apiserver's registries.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::Value;

/// Why a selector could not be parsed or is not supported for a kind.
///
/// Every message names the part of the input at fault, so it can be returned verbatim as the
/// message of a 400 BadRequest `Status`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The label selector string does not follow the grammar.
    #[error("found '{found}', expected: {expected}")]
    Syntax {
        /// The token found where something else was expected (empty at the end of input).
        found: String,
        /// What the grammar allows at that point.
        expected: &'static str,
    },
    /// A label key is not a qualified name.
    #[error("invalid label key \"{key}\": {reason}")]
    InvalidKey {
        /// The key as written.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A label value is too long or has characters labels cannot hold.
    #[error("invalid label value \"{value}\" for key \"{key}\": {reason}")]
    InvalidValue {
        /// The key the value belongs to.
        key: String,
        /// The value as written.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A requirement's operator and values do not fit together (`in ()` with no values, …).
    #[error("invalid requirement for key \"{key}\": {reason}")]
    InvalidRequirement {
        /// The key of the requirement.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `matchExpressions` operator other than In, NotIn, Exists and DoesNotExist.
    #[error("\"{operator}\" is not a valid label selector operator")]
    InvalidOperator {
        /// The operator as written.
        operator: String,
    },
    /// A `metav1.LabelSelector` object whose JSON does not have the expected shape.
    #[error("invalid label selector object: {0}")]
    InvalidObject(String),
    /// A field selector term with no `=`, `==` or `!=`.
    #[error("invalid field selector: '{selector}'; can't understand '{term}'")]
    FieldTerm {
        /// The whole selector.
        selector: String,
        /// The term that could not be split.
        term: String,
    },
    /// A field selector value with a backslash before something other than `\`, `,` or `=`.
    #[error("invalid field selector: invalid escape sequence: {0}")]
    FieldEscape(String),
    /// A field selector value with a bare `,` or `=` (those must be escaped).
    #[error("invalid field selector: unescaped character in value: '{0}'")]
    FieldUnescaped(char),
    /// A field the kind cannot be selected by; the message is kube-apiserver's.
    #[error("field label not supported: {0}")]
    UnsupportedField(String),
}

/// The operator of one label requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// `key=value`: the label is present with that value.
    Equals,
    /// `key==value`: the same as [`Operator::Equals`], kept apart to print it back as written.
    DoubleEquals,
    /// `key!=value`: the label is absent or has another value.
    NotEquals,
    /// `key in (a,b)`: the label is present with one of the values.
    In,
    /// `key notin (a,b)`: the label is absent or has none of the values.
    NotIn,
    /// `key`: the label is present.
    Exists,
    /// `!key`: the label is absent.
    DoesNotExist,
    /// `key>n`: the label is present and an integer greater than `n`.
    GreaterThan,
    /// `key<n`: the label is present and an integer less than `n`.
    LessThan,
}

/// One comma-separated term of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The label key.
    pub key: String,
    /// How the label is compared.
    pub operator: Operator,
    /// The values, sorted and without duplicates; empty for Exists and DoesNotExist.
    pub values: Vec<String>,
}

impl Requirement {
    /// Builds a requirement, checking the key, the values and that they fit the operator,
    /// as `labels.NewRequirement` does.
    pub fn new(key: &str, operator: Operator, values: Vec<String>) -> Result<Self, SelectorError> {
        validate_key(key)?;
        let invalid = |reason: &str| SelectorError::InvalidRequirement {
            key: key.to_owned(),
            reason: reason.to_owned(),
        };
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => {
                return Err(invalid(
                    "for 'in', 'notin' operators, values set can't be empty",
                ));
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals
                if values.len() != 1 =>
            {
                return Err(invalid(
                    "exact-match compatibility requires one single value",
                ));
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                return Err(invalid(
                    "values set must be empty for exists and does not exist",
                ));
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    return Err(invalid(
                        "for 'Gt', 'Lt' operators, exactly one value is required",
                    ));
                }
                if values[0].parse::<i64>().is_err() {
                    return Err(invalid(
                        "for 'Gt', 'Lt' operators, the value must be an integer",
                    ));
                }
            }
            _ => {}
        }
        for value in &values {
            validate_value(key, value)?;
        }
        let values: BTreeSet<String> = values.into_iter().collect();
        Ok(Self {
            key: key.to_owned(),
            operator,
            values: values.into_iter().collect(),
        })
    }

    /// Whether the labels satisfy this requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let label = labels.get(&self.key);
        let has_value = |v: &String| self.values.iter().any(|x| x == v);
        match self.operator {
            Operator::Equals | Operator::DoubleEquals | Operator::In => {
                label.is_some_and(has_value)
            }
            Operator::NotEquals | Operator::NotIn => !label.is_some_and(has_value),
            Operator::Exists => label.is_some(),
            Operator::DoesNotExist => label.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                // A label that is not an integer matches neither, as upstream.
                let (Some(actual), Some(bound)) = (
                    label.and_then(|l| l.parse::<i64>().ok()),
                    self.values.first().and_then(|v| v.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    actual > bound
                } else {
                    actual < bound
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = self.values.first().map_or("", String::as_str);
        match self.operator {
            Operator::Equals => write!(f, "{}={first}", self.key),
            Operator::DoubleEquals => write!(f, "{}=={first}", self.key),
            Operator::NotEquals => write!(f, "{}!={first}", self.key),
            Operator::GreaterThan => write!(f, "{}>{first}", self.key),
            Operator::LessThan => write!(f, "{}<{first}", self.key),
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
            Operator::In => write!(f, "{} in ({})", self.key, self.values.join(",")),
            Operator::NotIn => write!(f, "{} notin ({})", self.key, self.values.join(",")),
        }
    }
}

/// A parsed label selector: all requirements must hold.
///
/// Two selectors have no requirements: [`LabelSelector::everything`] (an empty query string, or
/// the empty object `{}`) matches every object, while [`LabelSelector::nothing`] (a null or
/// absent `metav1.LabelSelector`) matches none. Kubernetes gives those two different meanings:
/// a PodDisruptionBudget or NetworkPolicy with `selector: {}` selects all pods, one with no
/// selector at all selects none.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    nothing: bool,
}

impl LabelSelector {
    /// The selector that matches every object.
    pub fn everything() -> Self {
        Self::default()
    }

    /// The selector that matches no object (a null `metav1.LabelSelector`).
    pub fn nothing() -> Self {
        Self {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// Parses the `?labelSelector=` syntax: comma-separated `k=v`, `k==v`, `k!=v`,
    /// `k in (a,b)`, `k notin (a)`, `k`, `!k`, `k>n`, `k<n`, with whitespace between tokens.
    pub fn parse(selector: &str) -> Result<Self, SelectorError> {
        let tokens = lex(selector);
        let mut parser = Parser { tokens, pos: 0 };
        let mut requirements = parser.selector()?;
        // Sorted by key as upstream, so the printed form is canonical.
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self {
            requirements,
            nothing: false,
        })
    }

    /// Converts a `metav1.LabelSelector` object (`matchLabels`, `matchExpressions`).
    ///
    /// `null` gives [`LabelSelector::nothing`]; `{}` (no labels, no expressions) gives
    /// [`LabelSelector::everything`]. Keys, values and operators are validated as
    /// `metav1.LabelSelectorAsSelector` does.
    pub fn from_object(selector: &Value) -> Result<Self, SelectorError> {
        let object = match selector {
            Value::Null => return Ok(Self::nothing()),
            Value::Object(object) => object,
            other => {
                return Err(SelectorError::InvalidObject(format!(
                    "expected an object, got {}",
                    json_type(other)
                )));
            }
        };
        let mut requirements = Vec::new();
        match object.get("matchLabels") {
            None | Some(Value::Null) => {}
            Some(Value::Object(labels)) => {
                for (key, value) in labels {
                    let Some(value) = value.as_str() else {
                        return Err(SelectorError::InvalidObject(format!(
                            "matchLabels[{key}] must be a string"
                        )));
                    };
                    requirements.push(Requirement::new(
                        key,
                        Operator::Equals,
                        vec![value.to_owned()],
                    )?);
                }
            }
            Some(_) => {
                return Err(SelectorError::InvalidObject(
                    "matchLabels must be an object".into(),
                ));
            }
        }
        match object.get("matchExpressions") {
            None | Some(Value::Null) => {}
            Some(Value::Array(expressions)) => {
                for (i, expression) in expressions.iter().enumerate() {
                    requirements.push(expression_requirement(i, expression)?);
                }
            }
            Some(_) => {
                return Err(SelectorError::InvalidObject(
                    "matchExpressions must be a list".into(),
                ));
            }
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self {
            requirements,
            nothing: false,
        })
    }

    /// An equality selector for a plain label map, such as a Service's or a
    /// ReplicationController's `spec.selector`. Not validated, as `labels.SelectorFromSet`;
    /// an empty map gives [`LabelSelector::everything`].
    pub fn from_set(set: &BTreeMap<String, String>) -> Self {
        Self {
            requirements: set
                .iter()
                .map(|(key, value)| Requirement {
                    key: key.clone(),
                    operator: Operator::Equals,
                    values: vec![value.clone()],
                })
                .collect(),
            nothing: false,
        }
    }

    /// Whether the labels satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Whether the object's `metadata.labels` satisfy every requirement.
    pub fn matches_object(&self, obj: &Value) -> bool {
        self.matches(&object_labels(obj))
    }

    /// Whether this selector matches everything (it has no requirements).
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// Whether this selector matches nothing (made from a null `metav1.LabelSelector`).
    pub fn matches_nothing(&self) -> bool {
        self.nothing
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }
}

impl fmt::Display for LabelSelector {
    /// The canonical string form, parseable again; empty for both everything and nothing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, requirement) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

/// The string labels of an object; labels whose value is not a string are skipped.
pub fn object_labels(obj: &Value) -> BTreeMap<String, String> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// One `matchExpressions` entry as a requirement.
fn expression_requirement(index: usize, expression: &Value) -> Result<Requirement, SelectorError> {
    let shape =
        |what: &str| SelectorError::InvalidObject(format!("matchExpressions[{index}]: {what}"));
    let key = expression
        .get("key")
        .and_then(Value::as_str)
        .ok_or_else(|| shape("key must be a string"))?;
    let operator = match expression.get("operator").and_then(Value::as_str) {
        Some("In") => Operator::In,
        Some("NotIn") => Operator::NotIn,
        Some("Exists") => Operator::Exists,
        Some("DoesNotExist") => Operator::DoesNotExist,
        Some(other) => {
            return Err(SelectorError::InvalidOperator {
                operator: other.to_owned(),
            });
        }
        None => return Err(shape("operator must be a string")),
    };
    let values = match expression.get("values") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(values)) => values
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| shape("values must be strings"))?,
        Some(_) => return Err(shape("values must be a list")),
    };
    Requirement::new(key, operator, values)
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

// ---------------------------------------------------------------------------------------------
// Label selector lexer and parser.

/// A token of the label selector syntax. Words are all identifiers: `in` and `notin` are
/// keywords only where an operator is expected, so `in in (in)` is a valid requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    Bang,
    Equals,
    DoubleEquals,
    NotEquals,
    Greater,
    Less,
    OpenParen,
    CloseParen,
    Comma,
    End,
}

impl Token {
    /// The token as the user wrote it, for error messages.
    fn text(&self) -> &str {
        match self {
            Token::Ident(s) => s,
            Token::Bang => "!",
            Token::Equals => "=",
            Token::DoubleEquals => "==",
            Token::NotEquals => "!=",
            Token::Greater => ">",
            Token::Less => "<",
            Token::OpenParen => "(",
            Token::CloseParen => ")",
            Token::Comma => ",",
            Token::End => "",
        }
    }
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Splits the selector into tokens; always ends with [`Token::End`].
fn lex(input: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = input.chars().peekable();
    while let Some(&c) = chars.peek() {
        if is_space(c) {
            chars.next();
            continue;
        }
        if is_special(c) {
            chars.next();
            let next = chars.peek().copied();
            let token = match (c, next) {
                ('=', Some('=')) => {
                    chars.next();
                    Token::DoubleEquals
                }
                ('!', Some('=')) => {
                    chars.next();
                    Token::NotEquals
                }
                ('=', _) => Token::Equals,
                ('!', _) => Token::Bang,
                ('>', _) => Token::Greater,
                ('<', _) => Token::Less,
                ('(', _) => Token::OpenParen,
                (')', _) => Token::CloseParen,
                _ => Token::Comma,
            };
            tokens.push(token);
            continue;
        }
        let mut word = String::new();
        while let Some(&c) = chars.peek() {
            if is_space(c) || is_special(c) {
                break;
            }
            word.push(c);
            chars.next();
        }
        tokens.push(Token::Ident(word));
    }
    tokens.push(Token::End);
    tokens
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        // The lexer always ends with End and the parser never consumes past it.
        self.tokens.get(self.pos).unwrap_or(&Token::End)
    }

    fn next(&mut self) -> Token {
        let token = self.peek().clone();
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
        token
    }

    fn syntax(found: &Token, expected: &'static str) -> SelectorError {
        SelectorError::Syntax {
            found: found.text().to_owned(),
            expected,
        }
    }

    fn selector(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut requirements = Vec::new();
        loop {
            match self.peek() {
                Token::End => return Ok(requirements),
                Token::Ident(_) | Token::Bang => requirements.push(self.requirement()?),
                other => return Err(Self::syntax(other, "!, identifier, or 'end of string'")),
            }
            match self.next() {
                Token::End => return Ok(requirements),
                Token::Comma => match self.peek() {
                    Token::Ident(_) | Token::Bang => {}
                    other => return Err(Self::syntax(other, "identifier after ','")),
                },
                other => return Err(Self::syntax(&other, "',' or 'end of string'")),
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        let negated = *self.peek() == Token::Bang;
        if negated {
            self.next();
        }
        let key = match self.next() {
            Token::Ident(key) => key,
            other => return Err(Self::syntax(&other, "identifier")),
        };
        validate_key(&key)?;
        if matches!(self.peek(), Token::End | Token::Comma) || negated {
            // `!key` takes no operator; anything after it is caught by the caller as a
            // missing ',' (upstream reports it the same way).
            let operator = if negated {
                Operator::DoesNotExist
            } else {
                Operator::Exists
            };
            return Requirement::new(&key, operator, Vec::new());
        }
        let operator = match self.next() {
            Token::Ident(word) if word == "in" => Operator::In,
            Token::Ident(word) if word == "notin" => Operator::NotIn,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::NotEquals => Operator::NotEquals,
            Token::Greater => Operator::GreaterThan,
            Token::Less => Operator::LessThan,
            other => return Err(Self::syntax(&other, "in, notin, =, ==, !=, gt, lt")),
        };
        let values = match operator {
            Operator::In | Operator::NotIn => self.set_values()?,
            _ => vec![self.exact_value()?],
        };
        Requirement::new(&key, operator, values)
    }

    /// The value after `=`, `==`, `!=`, `>` or `<`; nothing there means the empty value.
    fn exact_value(&mut self) -> Result<String, SelectorError> {
        if matches!(self.peek(), Token::End | Token::Comma) {
            return Ok(String::new());
        }
        match self.next() {
            Token::Ident(value) => Ok(value),
            other => Err(Self::syntax(&other, "identifier")),
        }
    }

    /// `(a,b,c)`: empty entries (`()`, `(a,)`, `(,a)`, `(a,,b)`) stand for the empty value.
    fn set_values(&mut self) -> Result<Vec<String>, SelectorError> {
        match self.next() {
            Token::OpenParen => {}
            other => return Err(Self::syntax(&other, "'('")),
        }
        let mut values = Vec::new();
        // Whether the previous token was a value (so a comma ends it) or a separator (so a
        // comma or ')' there means an empty value).
        let mut after_value = false;
        loop {
            match self.next() {
                Token::Ident(value) if !after_value => {
                    values.push(value);
                    after_value = true;
                }
                Token::Comma => {
                    if !after_value {
                        values.push(String::new());
                    }
                    after_value = false;
                }
                Token::CloseParen => {
                    if !after_value {
                        values.push(String::new());
                    }
                    return Ok(values);
                }
                other if after_value => return Err(Self::syntax(&other, "',' or ')'")),
                other => return Err(Self::syntax(&other, "',', ')' or identifier")),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Validation of label keys and values (`IsQualifiedName`, `IsValidLabelValue`).

const NAME_MAX: usize = 63;
const PREFIX_MAX: usize = 253;
const NAME_CHARS: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

/// A label name part or value: `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`.
fn is_label_name(s: &str) -> bool {
    let bytes = s.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// A DNS-1123 subdomain: dot-separated lowercase labels of `[a-z0-9]([-a-z0-9]*[a-z0-9])?`.
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= PREFIX_MAX
        && s.split('.').all(|label| {
            let bytes = label.as_bytes();
            match (bytes.first(), bytes.last()) {
                (Some(first), Some(last)) => {
                    (first.is_ascii_lowercase() || first.is_ascii_digit())
                        && (last.is_ascii_lowercase() || last.is_ascii_digit())
                        && bytes
                            .iter()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
                }
                _ => false,
            }
        })
}

/// Checks a label key: an optional DNS subdomain prefix and `/`, then a name of at most 63
/// characters.
pub fn validate_key(key: &str) -> Result<(), SelectorError> {
    let invalid = |reason: String| SelectorError::InvalidKey {
        key: key.to_owned(),
        reason,
    };
    let name = match key.split_once('/') {
        Some((prefix, name)) => {
            if name.contains('/') {
                return Err(invalid(
                    "a qualified name must consist of an optional DNS subdomain prefix, '/' and a name".into(),
                ));
            }
            if prefix.is_empty() {
                return Err(invalid("prefix part must be non-empty".into()));
            }
            if !is_dns_subdomain(prefix) {
                return Err(invalid(format!(
                    "prefix part \"{prefix}\" must be a lowercase DNS subdomain of at most {PREFIX_MAX} characters"
                )));
            }
            name
        }
        None => key,
    };
    if name.is_empty() {
        return Err(invalid("name part must be non-empty".into()));
    }
    if name.len() > NAME_MAX {
        return Err(invalid(format!(
            "name part must be no more than {NAME_MAX} characters"
        )));
    }
    if !is_label_name(name) {
        return Err(invalid(format!("name part {NAME_CHARS}")));
    }
    Ok(())
}

/// Checks a label value: empty, or at most 63 characters of the label name alphabet.
pub fn validate_value(key: &str, value: &str) -> Result<(), SelectorError> {
    let invalid = |reason: String| SelectorError::InvalidValue {
        key: key.to_owned(),
        value: value.to_owned(),
        reason,
    };
    if value.len() > NAME_MAX {
        return Err(invalid(format!(
            "must be no more than {NAME_MAX} characters"
        )));
    }
    if !value.is_empty() && !is_label_name(value) {
        return Err(invalid(format!("a valid label {NAME_CHARS}")));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Field selectors.

/// The operator of one field requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOperator {
    /// `f=v` or `f==v`.
    Equals,
    /// `f!=v`.
    NotEquals,
}

/// One comma-separated term of a field selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    /// The field label, such as `spec.nodeName`.
    pub field: String,
    /// How the field is compared.
    pub operator: FieldOperator,
    /// The value, unescaped.
    pub value: String,
}

/// A parsed field selector: all terms must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

/// Fields every kind can be selected by.
const META_FIELDS: &[&str] = &["metadata.name", "metadata.namespace"];

const POD_FIELDS: &[&str] = &[
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
];

const CORE_EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];

const EVENTS_V1_FIELDS: &[&str] = &[
    "regarding.kind",
    "regarding.namespace",
    "regarding.name",
    "regarding.uid",
    "regarding.apiVersion",
    "regarding.resourceVersion",
    "regarding.fieldPath",
    "reason",
    "reportingController",
    "source",
    "type",
];

/// The field labels a kind supports beyond `metadata.name` and `metadata.namespace`, as the
/// kind's registry in kube-apiserver lists them. Custom resources get none here.
fn kind_fields(group: &str, kind: &str) -> &'static [&'static str] {
    match (group, kind) {
        ("", "Pod") => POD_FIELDS,
        ("", "Event") => CORE_EVENT_FIELDS,
        ("events.k8s.io", "Event") => EVENTS_V1_FIELDS,
        ("", "Secret") => &["type"],
        ("", "Namespace") => &["status.phase"],
        ("", "Node") => &["spec.unschedulable"],
        ("", "Service") => &["spec.clusterIP", "spec.type"],
        ("", "ReplicationController") | ("apps", "ReplicaSet") => &["status.replicas"],
        ("batch", "Job") => &["status.successful"],
        ("certificates.k8s.io", "CertificateSigningRequest") => &["spec.signerName"],
        _ => &[],
    }
}

impl FieldSelector {
    /// Parses the `?fieldSelector=` syntax: comma-separated `f=v`, `f==v`, `f!=v`. In values,
    /// `\,`, `\=` and `\\` stand for `,`, `=` and `\`; a bare `,` or `=` in a value is an error.
    /// Whitespace is part of the field or value, as upstream (so `a = b` names the field `a `).
    pub fn parse(selector: &str) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for term in split_terms(selector) {
            if term.is_empty() {
                continue;
            }
            let Some((field, operator, raw)) = split_term(term) else {
                return Err(SelectorError::FieldTerm {
                    selector: selector.to_owned(),
                    term: term.to_owned(),
                });
            };
            requirements.push(FieldRequirement {
                field: field.to_owned(),
                operator,
                value: unescape_value(raw)?,
            });
        }
        requirements.sort_by(|a, b| a.field.cmp(&b.field));
        Ok(Self { requirements })
    }

    /// Whether the selector has no terms (it matches everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The terms, sorted by field.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// The value the term on `field` requires with `=`, if there is one; lets a list be
    /// narrowed to one name or one node before matching.
    pub fn requires_exact(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.operator == FieldOperator::Equals)
            .map(|r| r.value.as_str())
    }

    /// Rejects fields the kind cannot be selected by, with kube-apiserver's message
    /// (`field label not supported: <field>`).
    pub fn check_supported(&self, group: &str, kind: &str) -> Result<(), SelectorError> {
        let allowed = kind_fields(group, kind);
        match self.requirements.iter().find(|r| {
            !META_FIELDS.contains(&r.field.as_str()) && !allowed.contains(&r.field.as_str())
        }) {
            Some(unsupported) => Err(SelectorError::UnsupportedField(unsupported.field.clone())),
            None => Ok(()),
        }
    }

    /// Whether the object satisfies every term. A missing field reads as `""` (so
    /// `spec.nodeName=` selects unscheduled pods), booleans as `true`/`false` and counts as
    /// decimal numbers, with the defaults a typed object would have.
    pub fn matches(&self, obj: &Value, kind: &str) -> bool {
        self.requirements.iter().all(|r| {
            let actual = field_value(obj, kind, &r.field);
            match r.operator {
                FieldOperator::Equals => actual == r.value,
                FieldOperator::NotEquals => actual != r.value,
            }
        })
    }
}

impl fmt::Display for FieldSelector {
    /// The canonical string form with values escaped again.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let op = match r.operator {
                FieldOperator::Equals => "=",
                FieldOperator::NotEquals => "!=",
            };
            write!(f, "{}{op}", r.field)?;
            for c in r.value.chars() {
                if matches!(c, '\\' | ',' | '=') {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// Splits on commas not preceded by a backslash, keeping escapes in the terms.
fn split_terms(selector: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in selector.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push(&selector[start..i]);
            start = i + 1;
        }
    }
    terms.push(&selector[start..]);
    terms
}

/// Splits a term at the first operator; the field part has no escaping, so the first
/// `!=`, `==` or `=` is the operator.
fn split_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (op, operator) in [
            ("!=", FieldOperator::NotEquals),
            ("==", FieldOperator::Equals),
            ("=", FieldOperator::Equals),
        ] {
            if let Some(value) = rest.strip_prefix(op) {
                return Some((&term[..i], operator, value));
            }
        }
    }
    None
}

fn unescape_value(raw: &str) -> Result<String, SelectorError> {
    let mut value = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => value.push(e),
                Some(other) => return Err(SelectorError::FieldEscape(format!("\\{other}"))),
                None => return Err(SelectorError::FieldEscape("\\".into())),
            },
            ',' | '=' => return Err(SelectorError::FieldUnescaped(c)),
            c => value.push(c),
        }
    }
    Ok(value)
}

/// Reads a dotted path from the object.
fn lookup<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(obj, |v, part| v.get(part))
}

/// A scalar as the string a field selector compares against; `null` and missing read as `""`.
fn scalar_text(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn non_empty(value: Option<&Value>) -> Option<String> {
    Some(scalar_text(value)).filter(|s| !s.is_empty())
}

/// The value of one field label of an object. Most labels are the JSON path of the field;
/// the exceptions are spelled out here, each as kube-apiserver computes it from the typed
/// object (where an absent boolean is `false` and an absent count is `0`).
fn field_value(obj: &Value, kind: &str, field: &str) -> String {
    let events_v1 = kind == "Event"
        && obj["apiVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("events.k8s.io/"));
    match (kind, field) {
        ("Pod", "spec.hostNetwork") | ("Node", "spec.unschedulable") => lookup(obj, field)
            .and_then(Value::as_bool)
            .unwrap_or(false)
            .to_string(),
        ("ReplicaSet" | "ReplicationController", "status.replicas")
        | ("Job", "status.successful") => {
            non_empty(lookup(obj, field)).unwrap_or_else(|| "0".into())
        }
        // The first of podIPs is the primary IP; the singular field mirrors it.
        ("Pod", "status.podIP") => non_empty(obj.pointer("/status/podIPs/0/ip"))
            .unwrap_or_else(|| scalar_text(lookup(obj, field))),
        ("Event", "source") => {
            let component = if events_v1 {
                obj.pointer("/deprecatedSource/component")
            } else {
                obj.pointer("/source/component")
            };
            non_empty(component).unwrap_or_else(|| scalar_text(obj.get("reportingController")))
        }
        ("Event", "reportingComponent") => scalar_text(obj.get("reportingController")),
        _ => scalar_text(lookup(obj, field)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// Parses and checks the selector against label sets expected to match and not to.
    fn check(selector: &str, matching: &[&[(&str, &str)]], not_matching: &[&[(&str, &str)]]) {
        let parsed = LabelSelector::parse(selector).unwrap_or_else(|e| panic!("{selector:?}: {e}"));
        for set in matching {
            assert!(
                parsed.matches(&labels(set)),
                "{selector:?} should match {set:?}"
            );
        }
        for set in not_matching {
            assert!(
                !parsed.matches(&labels(set)),
                "{selector:?} should not match {set:?}"
            );
        }
    }

    #[test]
    fn equality_operators() {
        check("app=web", &[&[("app", "web")]], &[&[("app", "db")], &[]]);
        check(
            "app==web",
            &[&[("app", "web"), ("x", "y")]],
            &[&[("app", "db")]],
        );
        check("app!=web", &[&[("app", "db")], &[]], &[&[("app", "web")]]);
        check("app=", &[&[("app", "")]], &[&[("app", "x")], &[]]);
    }

    #[test]
    fn set_operators() {
        check(
            "env in (prod, staging)",
            &[&[("env", "prod")], &[("env", "staging")]],
            &[&[("env", "dev")], &[]],
        );
        check(
            "env notin (prod)",
            &[&[("env", "dev")], &[]],
            &[&[("env", "prod")]],
        );
        check("env in ()", &[&[("env", "")]], &[&[("env", "x")]]);
        check(
            "env in (a,)",
            &[&[("env", "a")], &[("env", "")]],
            &[&[("env", "b")]],
        );
        check("in in (in)", &[&[("in", "in")]], &[]);
    }

    #[test]
    fn existence_and_comparison() {
        check("app", &[&[("app", "")], &[("app", "x")]], &[&[]]);
        check("!app", &[&[]], &[&[("app", "x")]]);
        check(
            "n>3",
            &[&[("n", "4")]],
            &[&[("n", "3")], &[("n", "x")], &[]],
        );
        check("n<3", &[&[("n", "-1")]], &[&[("n", "3")]]);
    }

    #[test]
    fn several_terms_and_whitespace() {
        check(
            " app = web ,\ttier in (fe,be), !canary ",
            &[&[("app", "web"), ("tier", "fe")]],
            &[
                &[("app", "web"), ("tier", "fe"), ("canary", "1")],
                &[("app", "web")],
            ],
        );
        check("", &[&[], &[("a", "b")]], &[]);
    }

    #[test]
    fn prefixed_keys() {
        check(
            "app.kubernetes.io/name=nginx",
            &[&[("app.kubernetes.io/name", "nginx")]],
            &[],
        );
        check("!node-role.kubernetes.io/control-plane", &[&[]], &[]);
    }

    #[test]
    fn canonical_string_is_sorted_and_reparses() {
        let s = LabelSelector::parse("z, b in (y,x,x), !c, a==1").unwrap();
        assert_eq!(s.to_string(), "a==1,b in (x,y),!c,z");
        assert_eq!(LabelSelector::parse(&s.to_string()).unwrap(), s);
    }

    #[test]
    fn syntax_errors_name_the_token() {
        let cases = [
            ("a in b", "found 'b', expected: '('"),
            ("a,", "found '', expected: identifier after ','"),
            ("a b", "found 'b', expected: in, notin, =, ==, !=, gt, lt"),
            ("a=b c", "found 'c', expected: ',' or 'end of string'"),
            (
                "=a",
                "found '=', expected: !, identifier, or 'end of string'",
            ),
            ("a in (b c)", "found 'c', expected: ',' or ')'"),
            ("a=(b)", "found '(', expected: identifier"),
            ("!a=b", "found '=', expected: ',' or 'end of string'"),
            ("a (b)", "found '(', expected: in, notin, =, ==, !=, gt, lt"),
        ];
        for (input, message) in cases {
            let err = LabelSelector::parse(input).expect_err(input);
            assert_eq!(err.to_string(), message, "{input:?}");
        }
    }

    #[test]
    fn invalid_keys_and_values() {
        let err = LabelSelector::parse("a@b=c").unwrap_err();
        assert!(
            matches!(&err, SelectorError::InvalidKey { key, .. } if key == "a@b"),
            "{err}"
        );
        let err = LabelSelector::parse("Example.com/a=b").unwrap_err();
        assert!(
            err.to_string().contains("prefix part \"Example.com\""),
            "{err}"
        );
        let err = LabelSelector::parse(&format!("{}=b", "k".repeat(64))).unwrap_err();
        assert!(err.to_string().contains("no more than 63"), "{err}");
        let err = LabelSelector::parse("a=-b").unwrap_err();
        assert!(
            matches!(&err, SelectorError::InvalidValue { value, .. } if value == "-b"),
            "{err}"
        );
        let err = LabelSelector::parse(&format!("a={}", "v".repeat(64))).unwrap_err();
        assert!(err.to_string().contains("no more than 63"), "{err}");
        assert!(LabelSelector::parse("a/b/c").is_err());
        assert!(LabelSelector::parse("/a").is_err());
        assert!(LabelSelector::parse("n>x").is_err());
        assert!(LabelSelector::parse("a_b.c-d=E_f.g-h").is_ok());
    }

    #[test]
    fn matches_object_reads_metadata_labels() {
        let s = LabelSelector::parse("app=web").unwrap();
        assert!(s.matches_object(&json!({"metadata": {"labels": {"app": "web"}}})));
        assert!(!s.matches_object(&json!({"metadata": {}})));
        assert!(!s.matches_object(&json!({"metadata": {"labels": {"app": 1}}})));
        assert!(LabelSelector::everything().matches_object(&json!({})));
    }

    #[test]
    fn object_form_null_matches_nothing_and_empty_matches_everything() {
        let nothing = LabelSelector::from_object(&Value::Null).unwrap();
        assert!(nothing.matches_nothing() && !nothing.is_empty());
        assert!(!nothing.matches(&labels(&[])));
        let everything = LabelSelector::from_object(&json!({})).unwrap();
        assert!(everything.is_empty());
        assert!(everything.matches(&labels(&[("a", "b")])));
        let also = LabelSelector::from_object(&json!({"matchLabels": {}, "matchExpressions": []}))
            .unwrap();
        assert!(also.is_empty());
    }

    #[test]
    fn object_form_labels_and_expressions() {
        let s = LabelSelector::from_object(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["fe", "be"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "zone", "operator": "NotIn", "values": ["a"]},
                {"key": "team", "operator": "Exists", "values": []},
            ],
        }))
        .unwrap();
        assert_eq!(
            s.to_string(),
            "app=web,!canary,team,tier in (be,fe),zone notin (a)"
        );
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "fe"), ("team", "x")])));
        assert!(!s.matches(&labels(&[
            ("app", "web"),
            ("tier", "fe"),
            ("team", "x"),
            ("zone", "a")
        ])));
    }

    #[test]
    fn object_form_errors() {
        let bad = [
            json!({"matchExpressions": [{"key": "a", "operator": "Like", "values": ["x"]}]}),
            json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}),
            json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
            json!({"matchExpressions": [{"operator": "Exists"}]}),
            json!({"matchExpressions": {}}),
            json!({"matchLabels": {"a": 1}}),
            json!({"matchLabels": {"a b": "c"}}),
            json!("app=web"),
        ];
        for selector in bad {
            assert!(LabelSelector::from_object(&selector).is_err(), "{selector}");
        }
        let err = LabelSelector::from_object(
            &json!({"matchExpressions": [{"key": "a", "operator": "Like"}]}),
        );
        assert_eq!(
            err.unwrap_err().to_string(),
            "\"Like\" is not a valid label selector operator"
        );
    }

    #[test]
    fn from_set_is_an_equality_selector() {
        let s = LabelSelector::from_set(&labels(&[("app", "web")]));
        assert!(s.matches(&labels(&[("app", "web"), ("x", "y")])));
        assert!(!s.matches(&labels(&[("app", "db")])));
        assert!(LabelSelector::from_set(&BTreeMap::new()).is_empty());
    }

    fn pod() -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "default"},
            "spec": {"restartPolicy": "Always", "schedulerName": "default-scheduler"},
            "status": {"phase": "Pending", "podIPs": [{"ip": "10.0.0.5"}]},
        })
    }

    #[test]
    fn field_selector_parses_operators_and_escapes() {
        let s = FieldSelector::parse(
            r"metadata.name==a\,b\=c\\d,spec.nodeName!=n1,status.phase=Running",
        )
        .unwrap();
        let r = s.requirements();
        assert_eq!(r.len(), 3);
        assert_eq!(
            (r[0].field.as_str(), r[0].operator, r[0].value.as_str()),
            ("metadata.name", FieldOperator::Equals, r"a,b=c\d")
        );
        assert_eq!(
            (r[1].field.as_str(), r[1].operator),
            ("spec.nodeName", FieldOperator::NotEquals)
        );
        assert_eq!(s.requires_exact("status.phase"), Some("Running"));
        assert_eq!(FieldSelector::parse(&s.to_string()).unwrap(), s);
        assert!(FieldSelector::parse("").unwrap().is_empty());
        assert!(FieldSelector::parse(",,").unwrap().is_empty());
    }

    #[test]
    fn field_selector_errors() {
        assert_eq!(
            FieldSelector::parse("a=b,nonsense")
                .unwrap_err()
                .to_string(),
            "invalid field selector: 'a=b,nonsense'; can't understand 'nonsense'"
        );
        assert_eq!(
            FieldSelector::parse(r"a=b\x").unwrap_err().to_string(),
            r"invalid field selector: invalid escape sequence: \x"
        );
        assert_eq!(
            FieldSelector::parse("a=b=c").unwrap_err(),
            SelectorError::FieldUnescaped('=')
        );
        assert!(FieldSelector::parse(r"a=b\").is_err());
    }

    #[test]
    fn field_selector_missing_fields_compare_empty() {
        let unscheduled = FieldSelector::parse("spec.nodeName=").unwrap();
        assert!(unscheduled.matches(&pod(), "Pod"));
        let mut scheduled = pod();
        scheduled["spec"]["nodeName"] = json!("node-1");
        assert!(!unscheduled.matches(&scheduled, "Pod"));
        assert!(
            FieldSelector::parse("spec.nodeName=node-1")
                .unwrap()
                .matches(&scheduled, "Pod")
        );
        assert!(
            FieldSelector::parse("spec.nodeName!=")
                .unwrap()
                .matches(&scheduled, "Pod")
        );
    }

    #[test]
    fn field_selector_pod_fields() {
        let p = pod();
        for (selector, expected) in [
            ("metadata.name=web-1,metadata.namespace=default", true),
            ("status.phase=Pending", true),
            ("status.phase!=Pending", false),
            ("status.podIP=10.0.0.5", true),
            ("spec.hostNetwork=false", true),
            ("spec.hostNetwork=true", false),
            (
                "spec.restartPolicy=Always,spec.schedulerName=default-scheduler",
                true,
            ),
        ] {
            assert_eq!(
                FieldSelector::parse(selector).unwrap().matches(&p, "Pod"),
                expected,
                "{selector}"
            );
        }
    }

    #[test]
    fn field_selector_typed_defaults() {
        let node = json!({"metadata": {"name": "n1"}, "spec": {}});
        assert!(
            FieldSelector::parse("spec.unschedulable=false")
                .unwrap()
                .matches(&node, "Node")
        );
        let cordoned = json!({"metadata": {"name": "n1"}, "spec": {"unschedulable": true}});
        assert!(
            FieldSelector::parse("spec.unschedulable=true")
                .unwrap()
                .matches(&cordoned, "Node")
        );
        let rs = json!({"status": {}});
        assert!(
            FieldSelector::parse("status.replicas=0")
                .unwrap()
                .matches(&rs, "ReplicaSet")
        );
        let rs = json!({"status": {"replicas": 3}});
        assert!(
            FieldSelector::parse("status.replicas=3")
                .unwrap()
                .matches(&rs, "ReplicaSet")
        );
        let job = json!({"status": {"succeeded": 1}});
        assert!(
            FieldSelector::parse("status.successful=0")
                .unwrap()
                .matches(&job, "Job")
        );
    }

    #[test]
    fn field_selector_events() {
        let core = json!({
            "apiVersion": "v1",
            "involvedObject": {"kind": "Pod", "name": "web-1", "uid": "u1"},
            "reason": "Scheduled",
            "reportingController": "default-scheduler",
            "type": "Normal",
        });
        let s = FieldSelector::parse(
            "involvedObject.kind=Pod,involvedObject.name=web-1,involvedObject.uid=u1",
        )
        .unwrap();
        assert!(s.matches(&core, "Event"));
        // No source.component: the reporting controller stands in, as upstream.
        assert!(
            FieldSelector::parse("source=default-scheduler")
                .unwrap()
                .matches(&core, "Event")
        );
        assert!(
            FieldSelector::parse("reportingComponent=default-scheduler")
                .unwrap()
                .matches(&core, "Event")
        );
        let v1 = json!({
            "apiVersion": "events.k8s.io/v1",
            "regarding": {"kind": "Node", "name": "n1"},
            "reportingController": "kubelet",
            "deprecatedSource": {"component": "kubelet-n1"},
        });
        assert!(
            FieldSelector::parse("regarding.kind=Node,source=kubelet-n1")
                .unwrap()
                .matches(&v1, "Event")
        );
    }

    #[test]
    fn field_selector_supported_fields_per_kind() {
        let supported = [
            (
                "",
                "Pod",
                "spec.nodeName=a,status.phase=Running,metadata.name=x",
            ),
            ("", "ConfigMap", "metadata.namespace=default"),
            (
                "",
                "Event",
                "involvedObject.name=x,source=kubelet,reportingComponent=x",
            ),
            (
                "events.k8s.io",
                "Event",
                "regarding.name=x,reportingController=y",
            ),
            ("", "Secret", "type=kubernetes.io/tls"),
            ("", "Namespace", "status.phase=Active"),
            ("", "Node", "spec.unschedulable=false"),
            ("apps", "ReplicaSet", "status.replicas=0"),
            ("", "ReplicationController", "status.replicas=0"),
            ("batch", "Job", "status.successful=1"),
            ("example.com", "Widget", "metadata.name=w"),
        ];
        for (group, kind, selector) in supported {
            let s = FieldSelector::parse(selector).unwrap();
            assert_eq!(s.check_supported(group, kind), Ok(()), "{kind}: {selector}");
        }
        let unsupported = [
            ("", "ConfigMap", "data.key=x", "data.key"),
            ("apps", "Deployment", "status.replicas=1", "status.replicas"),
            (
                "events.k8s.io",
                "Event",
                "involvedObject.name=x",
                "involvedObject.name",
            ),
            (
                "",
                "Pod",
                "spec.nodeName=a,spec.containers=x",
                "spec.containers",
            ),
        ];
        for (group, kind, selector, field) in unsupported {
            let err = FieldSelector::parse(selector)
                .unwrap()
                .check_supported(group, kind)
                .unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("field label not supported: {field}")
            );
        }
    }
}
