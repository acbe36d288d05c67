//! Field types whose documented schema and whose check in the service are one definition,
//! so that the published document can never be looser than the service (clients and
//! fuzzers are generated from it).
//!
//! Each is a string in a request; handlers check it with [`Validator`](super::Validator),
//! which reports every invalid field at once.

use std::sync::OnceLock;

use regex::Regex;
use serde::{Deserialize, Serialize};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{Object, ObjectBuilder, Schema, Type};

/// A string rule: its length in characters and a pattern (the same regular expression in the
/// document and here; written so that ECMA-262, which JSON Schema uses, and the `regex`
/// crate read it alike).
pub struct Rule {
    pub min_length: usize,
    pub max_length: usize,
    pub pattern: &'static str,
    /// What a person reads when a value breaks the rule.
    pub message: &'static str,
}

impl Rule {
    pub fn allows(&self, value: &str, compiled: &'static OnceLock<Regex>) -> bool {
        let length = value.chars().count();
        let regex = compiled.get_or_init(|| Regex::new(self.pattern).expect("a field pattern compiles"));
        (self.min_length..=self.max_length).contains(&length) && regex.is_match(value)
    }

    pub fn schema(&self, description: &str, example: &str) -> Object {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(self.min_length))
            .max_length(Some(self.max_length))
            .pattern(Some(self.pattern))
            .description(Some(description))
            .examples([serde_json::json!(example)])
            .build()
    }
}

/// Control characters: C0, DEL and C1.
macro_rules! not_control {
    () => {
        r"\u0000-\u001F\u007F-\u009F"
    };
}

/// A name a person gives something — a workgroup, a site, a scanner, an API token, a
/// person: 1–200 characters, no control characters, not only spaces. Stored trimmed.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Name(pub String);

impl Name {
    pub const RULE: Rule = Rule {
        min_length: 1,
        max_length: 200,
        pattern: concat!("^[^", not_control!(), r"]*[^\s", not_control!(), "][^", not_control!(), "]*$"),
        message: "must be 1–200 characters, not only spaces, without control characters",
    };

    pub fn allows(value: &str) -> bool {
        static COMPILED: OnceLock<Regex> = OnceLock::new();
        Self::RULE.allows(value, &COMPILED)
    }
}

impl std::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl utoipa::PartialSchema for Name {
    fn schema() -> RefOr<Schema> {
        let description = "A name given by a person: 1–200 characters, not only spaces, no control characters; \
                           stored without leading and trailing spaces.";
        RefOr::T(Schema::Object(Self::RULE.schema(description, "North Pit")))
    }
}

impl utoipa::ToSchema for Name {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_as_documented() {
        let valid = Name::allows;
        assert!(valid("North Pit") && valid(" padded ") && valid("Ünïcödé ✓") && valid(&"x".repeat(200)));
        assert!(!valid("") && !valid("   ") && !valid(&"x".repeat(201)));
        assert!(!valid("tab\there") && !valid("nul\0") && !valid("del\u{7f}") && !valid("c1\u{85}"));
    }
}
