//! Tags are sensor identities and NATS subjects at once: `brasil.sudeste.sensor01`.
//!
//! A `Tag` is parsed once at the edge and passed around validated. Its
//! prefixes (`brasil`, `brasil.sudeste`, `brasil.sudeste.sensor01`) are the
//! keys of the hierarchical counters.

use std::fmt;

/// Fewest tokens in a tag: a root alone is a region, never a sensor.
pub(crate) const MIN_TOKENS: usize = 2;
/// Most tokens in a tag.
pub(crate) const MAX_TOKENS: usize = 8;
/// Longest token we accept; keeps record ids and subjects bounded.
pub(crate) const MAX_TOKEN_LEN: usize = 64;

/// A validated sensor tag: 2 to 8 dot-separated tokens of `[A-Za-z0-9_-]`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag(String);

/// Why a string is not a tag; the message says how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    #[error("a tag needs {MIN_TOKENS} to {MAX_TOKENS} dot-separated tokens, got {0}")]
    TokenCount(usize),
    #[error("token {index} is empty: tags look like `brasil.sudeste.sensor01`")]
    EmptyToken { index: usize },
    #[error("token {index} is longer than {MAX_TOKEN_LEN} characters")]
    TokenTooLong { index: usize },
    #[error("token {index} has `{ch}`: use only letters, digits, `_` and `-`")]
    BadChar { index: usize, ch: char },
}

/// Whether `tag` is `prefix` or lies below it, token by token:
/// `brasil.sul.s1` is under `brasil.sul`, `brasil.sulista.s1` is not.
pub fn is_under(tag: &str, prefix: &str) -> bool {
    tag.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

fn token_char_ok(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// What is wrong with `s` as a tag, token by token; `Ok` for a tag.
fn check_tokens(s: &str) -> Result<(), TagError> {
    let count = s.split('.').count();
    if !(MIN_TOKENS..=MAX_TOKENS).contains(&count) {
        return Err(TagError::TokenCount(count));
    }
    for (index, token) in s.split('.').enumerate() {
        if token.is_empty() {
            return Err(TagError::EmptyToken { index });
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(TagError::TokenTooLong { index });
        }
        if let Some(ch) = token.chars().find(|c| !token_char_ok(*c)) {
            return Err(TagError::BadChar { index, ch });
        }
    }
    Ok(())
}

/// Whether `s` is a valid tag, in one pass: what [`check_tokens`] accepts.
fn is_tag(s: &[u8]) -> bool {
    let (mut tokens, mut len) = (1, 0);
    for &b in s {
        if b == b'.' {
            if len == 0 {
                return false;
            }
            tokens += 1;
            len = 0;
        } else if token_char_ok(char::from(b)) {
            len += 1;
            if len > MAX_TOKEN_LEN {
                return false;
            }
        } else {
            return false;
        }
    }
    len > 0 && (MIN_TOKENS..=MAX_TOKENS).contains(&tokens)
}

impl Tag {
    /// Parses and validates a tag.
    pub fn parse(s: &str) -> Result<Tag, TagError> {
        // Every message's subject is parsed: one pass over the bytes for a
        // good tag, and the token-by-token walk only to name what is wrong.
        if !is_tag(s.as_bytes()) {
            check_tokens(s)?;
        }
        Ok(Tag(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first token: the root the stream captures (`brasil`).
    pub fn root(&self) -> &str {
        self.0.split_once('.').map_or(&self.0, |(root, _)| root)
    }

    pub fn depth(&self) -> usize {
        self.0.split('.').count()
    }

    /// Every prefix, shortest first, ending with the tag itself.
    pub fn prefixes(&self) -> impl Iterator<Item = &str> + '_ {
        self.0.match_indices('.').map(|(i, _)| &self.0[..i]).chain(std::iter::once(self.0.as_str()))
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tag({})", self.0)
    }
}

impl std::str::FromStr for Tag {
    type Err = TagError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tag::parse(s)
    }
}

impl AsRef<str> for Tag {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for Tag {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Tag {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Tag::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A NATS-style subject pattern over tags: `brasil.sudeste.*`, `brasil.>`, `>`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TagPattern(String);

impl TagPattern {
    /// Parses a pattern: tokens as in tags, `*` for one token, `>` last for one or more.
    pub fn parse(s: &str) -> Result<TagPattern, TagError> {
        let tokens: Vec<&str> = s.split('.').collect();
        if tokens.len() > MAX_TOKENS {
            return Err(TagError::TokenCount(tokens.len()));
        }
        for (index, token) in tokens.iter().enumerate() {
            match *token {
                "*" => {}
                ">" if index == tokens.len() - 1 => {}
                "" => return Err(TagError::EmptyToken { index }),
                t => {
                    if let Some(ch) = t.chars().find(|c| !token_char_ok(*c)) {
                        return Err(TagError::BadChar { index, ch });
                    }
                }
            }
        }
        Ok(TagPattern(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, tag: &Tag) -> bool {
        let mut pattern = self.0.split('.');
        let mut tokens = tag.as_str().split('.');
        loop {
            match (pattern.next(), tokens.next()) {
                (Some(">"), Some(_)) => return true,
                (Some("*"), Some(_)) => {}
                (Some(p), Some(t)) if p == t => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }
}

impl fmt::Display for TagPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TagPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TagPattern({})", self.0)
    }
}

impl serde::Serialize for TagPattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for TagPattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TagPattern::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn under_goes_token_by_token() {
        assert!(is_under("brasil.sul.s1", "brasil.sul"));
        assert!(is_under("brasil.sul", "brasil.sul"));
        assert!(is_under("brasil.sul.s1", "brasil"));
        assert!(!is_under("brasil.sulista.s1", "brasil.sul"));
        assert!(!is_under("brasil", "brasil.sul"));
        assert!(!is_under("chile.sul.s1", "brasil"));
    }

    #[test]
    fn prefixes_shortest_first() {
        let tag = Tag::parse("brasil.sudeste.sensor01").unwrap();
        let p: Vec<_> = tag.prefixes().collect();
        assert_eq!(p, ["brasil", "brasil.sudeste", "brasil.sudeste.sensor01"]);
        assert_eq!(tag.root(), "brasil");
        assert_eq!(tag.depth(), 3);
    }

    #[test]
    fn rejects_bad_tags() {
        let check = |s: &str, e: TagError| assert_eq!(Tag::parse(s), Err(e), "{s}");
        check("brasil", TagError::TokenCount(1));
        check("a.b.c.d.e.f.g.h.i", TagError::TokenCount(9));
        check("brasil..x", TagError::EmptyToken { index: 1 });
        check("brasil.sul.sensor 1", TagError::BadChar { index: 2, ch: ' ' });
        check("brasil.*", TagError::BadChar { index: 1, ch: '*' });
        check("brasil.>", TagError::BadChar { index: 1, ch: '>' });
        assert!(Tag::parse("plant1.area3.EQ-12495").is_ok());
        assert!(Tag::parse("meters.lab.device_7").is_ok());
    }

    #[test]
    fn patterns_match_like_nats() {
        let tag = Tag::parse("brasil.sudeste.sensor01").unwrap();
        for (p, want) in [
            (">", true),
            ("brasil.>", true),
            ("brasil.sudeste.>", true),
            ("brasil.sudeste.sensor01.>", false),
            ("brasil.*", false),
            ("brasil.*.*", true),
            ("brasil.sudeste.sensor01", true),
            ("brasil.sul.>", false),
            ("*.sudeste.*", true),
        ] {
            assert_eq!(TagPattern::parse(p).unwrap().matches(&tag), want, "{p}");
        }
        assert!(TagPattern::parse("brasil.>.x").is_err());
    }

    proptest! {
        #[test]
        fn valid_tags_round_trip(tokens in prop::collection::vec("[A-Za-z0-9_-]{1,12}", 2..=8)) {
            let s = tokens.join(".");
            let tag = Tag::parse(&s).unwrap();
            prop_assert_eq!(tag.as_str(), s.as_str());
            prop_assert_eq!(tag.prefixes().count(), tokens.len());
            prop_assert_eq!(tag.prefixes().last().unwrap(), s.as_str());
            let root = TagPattern::parse(&format!("{}.>", tokens[0])).unwrap();
            prop_assert!(root.matches(&tag));
        }

        #[test]
        fn the_one_pass_check_agrees_with_the_token_walk(s in "[ab.*_ é-]{0,24}|[ab]{62,67}(\\.[ab]{62,67}){0,2}") {
            prop_assert_eq!(is_tag(s.as_bytes()), check_tokens(&s).is_ok(), "{:?}", s);
        }

        #[test]
        fn parse_never_panics_and_accepts_only_the_grammar(s in "\\PC{0,40}") {
            if let Ok(tag) = Tag::parse(&s) {
                prop_assert!((MIN_TOKENS..=MAX_TOKENS).contains(&tag.depth()));
                prop_assert!(tag.as_str().split('.').all(|t| !t.is_empty() && t.chars().all(token_char_ok)));
            }
        }
    }
}
