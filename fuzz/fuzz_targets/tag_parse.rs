//! Tags and tag patterns from any text. The input is `<text>` or
//! `<text>\n<probe>`: both parts are parsed as a tag and as a pattern, and
//! the first part's pattern is matched against the probe's tag.
//!
//! A parsed tag is its own string form, re-parses equal, and its prefixes are
//! well-formed tag prefixes, shortest first. A pattern matches a tag exactly
//! as NATS subjects do (checked against a token-by-token reference).

#![no_main]

use libfuzzer_sys::fuzz_target;
use vigia_domain::{Tag, TagPattern};

/// Bounds of the tag grammar (tag.rs): 2 to 8 tokens of 1 to 64 bytes.
const MIN_TOKENS: usize = 2;
const MAX_TOKENS: usize = 8;
const MAX_TOKEN_LEN: usize = 64;

/// Tags every pattern is also matched against.
const PROBES: [&str; 4] = ["brasil.sudeste.sensor01", "brasil.sul", "a.b.c.d.e.f.g.h", "plant1.area3.EQ-12495"];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (first, probe) = text.split_once('\n').unwrap_or((text, ""));
    let pattern = check_pattern(first);
    check_pattern(probe);
    let tags = [check_tag(first), check_tag(probe)];
    let probes = PROBES.iter().map(|p| Tag::parse(p).unwrap());
    if let Some(pattern) = pattern {
        for tag in tags.into_iter().flatten().chain(probes) {
            assert_eq!(pattern.matches(&tag), reference_match(pattern.as_str(), tag.as_str()), "{pattern:?} ~ {tag:?}");
        }
    }
});

fn token_ok(token: &str) -> bool {
    (1..=MAX_TOKEN_LEN).contains(&token.len())
        && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn check_tag(s: &str) -> Option<Tag> {
    let tokens: Vec<&str> = s.split('.').collect();
    let grammar = (MIN_TOKENS..=MAX_TOKENS).contains(&tokens.len()) && tokens.iter().all(|t| token_ok(t));
    let tag = match Tag::parse(s) {
        Ok(tag) => tag,
        Err(e) => {
            assert!(!grammar, "`{s}` follows the grammar but is refused: {e}");
            assert!(!e.to_string().is_empty());
            return None;
        }
    };
    assert!(grammar, "`{s}` breaks the grammar but is accepted");
    assert_eq!(tag.as_str(), s);
    assert_eq!(tag.to_string(), s);
    assert_eq!(Tag::parse(tag.as_str()).as_ref(), Ok(&tag), "round trip through the string form");
    assert_eq!(s.parse::<Tag>().as_ref(), Ok(&tag));
    assert_eq!(tag.depth(), tokens.len());
    assert_eq!(tag.root(), tokens[0]);

    let prefixes: Vec<&str> = tag.prefixes().collect();
    assert_eq!(prefixes.len(), tag.depth(), "one prefix per token");
    assert_eq!(prefixes[0], tag.root());
    assert_eq!(prefixes.last().copied(), Some(s), "the last prefix is the tag itself");
    for (i, prefix) in prefixes.iter().enumerate() {
        assert_eq!(prefix.split('.').count(), i + 1, "prefixes shortest first");
        assert!(prefix.split('.').all(token_ok), "prefix `{prefix}` has only valid tokens");
        assert!(s.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('.')));
        if i + 1 >= MIN_TOKENS {
            assert!(Tag::parse(prefix).is_ok(), "prefix `{prefix}` of two tokens or more is a tag");
        }
        if i + 1 < MAX_TOKENS {
            let below = TagPattern::parse(&format!("{prefix}.>")).expect("prefix.> is a pattern");
            assert_eq!(below.matches(&tag), i + 1 < tag.depth(), "`{prefix}.>` matches what is strictly below");
        }
    }
    let literal = TagPattern::parse(s).expect("a tag is a pattern");
    assert!(literal.matches(&tag), "a tag matches itself as a pattern");
    assert!(TagPattern::parse(">").unwrap().matches(&tag));
    Some(tag)
}

fn check_pattern(s: &str) -> Option<TagPattern> {
    let tokens: Vec<&str> = s.split('.').collect();
    let grammar = tokens.len() <= MAX_TOKENS
        && tokens.iter().enumerate().all(|(i, t)| {
            *t == "*"
                || (*t == ">" && i == tokens.len() - 1)
                || (!t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
        });
    match TagPattern::parse(s) {
        Ok(p) => {
            assert!(grammar, "`{s}` breaks the pattern grammar but is accepted");
            assert_eq!(p.as_str(), s);
            assert_eq!(TagPattern::parse(p.as_str()).as_ref(), Ok(&p));
            Some(p)
        }
        Err(e) => {
            assert!(!grammar, "`{s}` follows the pattern grammar but is refused: {e}");
            assert!(!e.to_string().is_empty());
            None
        }
    }
}

/// NATS matching, token by token: `*` is one token, a final `>` one or more.
fn reference_match(pattern: &str, tag: &str) -> bool {
    fn go(p: &[&str], t: &[&str]) -> bool {
        match (p.split_first(), t.split_first()) {
            (Some((&">", [])), Some(_)) => true,
            (Some((&"*", p)), Some((_, t))) => go(p, t),
            (Some((a, p)), Some((b, t))) => a == b && go(p, t),
            (None, None) => true,
            _ => false,
        }
    }
    go(&pattern.split('.').collect::<Vec<_>>(), &tag.split('.').collect::<Vec<_>>())
}
